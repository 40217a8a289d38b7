"""Accounts and sessions: registration, login, refresh-token rotation with reuse detection, logout.

A login starts a refresh-token *family*. Each refresh marks the presented token used and issues
the next one in the family; presenting a used token again means it was copied, so the whole
family is revoked and whoever holds any of its tokens must log in again.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import jwt
from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cluster.settings import Settings
from db.models import RefreshToken, User
from db.types import utcnow
from deployments.api.problems import Forbidden, Unauthorized
from deployments.api.security import (
    create_access_token,
    create_token,
    decode_token,
    hash_password,
    needs_rehash,
    verify_password,
)
from pipeline.errors import Conflict


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


def register(session: Session, email: str, password: str, full_name: str | None) -> User:
    if session.exec(select(User).where(User.email == email)).first() is not None:
        raise Conflict("an account with this email already exists")
    user = User(email=email, password_hash=hash_password(password), full_name=full_name)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("an account with this email already exists") from None
    return user


def login(session: Session, settings: Settings, email: str, password: str) -> TokenPair:
    user = session.exec(select(User).where(User.email == email)).first()
    if not verify_password(user.password_hash if user else None, password) or user is None:
        raise Unauthorized("incorrect email or password")
    if not user.is_active:
        raise Unauthorized("this account is suspended")
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.add(user)
    return issue_tokens(session, settings, user, family_id=uuid.uuid4())


def issue_tokens(
    session: Session, settings: Settings, user: User, family_id: uuid.UUID
) -> TokenPair:
    row = RefreshToken(
        user_id=user.id,
        family_id=family_id,
        expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_s),
    )
    session.add(row)
    session.commit()
    refresh = create_token(settings, "refresh", user.id, row.expires_at, row.id, fam=str(family_id))
    return TokenPair(
        access_token=create_access_token(settings, user.id, user.role),
        refresh_token=refresh,
        expires_in=settings.access_token_ttl_s,
    )


def refresh(session: Session, settings: Settings, token: str) -> TokenPair:
    row = _refresh_row(session, settings, token)
    if row.revoked_at is not None:
        raise Unauthorized("refresh token revoked: log in again")
    claimed = session.exec(
        update(RefreshToken)
        .where(
            col(RefreshToken.id) == row.id,
            col(RefreshToken.used_at).is_(None),
            col(RefreshToken.revoked_at).is_(None),
        )
        .values(used_at=utcnow())
    )
    if claimed.rowcount != 1:
        _revoke_family(session, row.family_id)
        session.commit()
        raise Unauthorized("refresh token reused: every session of this login is revoked")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        session.commit()
        raise Unauthorized("the account of this token is deleted or suspended")
    return issue_tokens(session, settings, user, row.family_id)


def logout(session: Session, settings: Settings, token: str) -> None:
    """Revokes the login the refresh token belongs to; logging out twice is not an error."""
    row = _refresh_row(session, settings, token)
    _revoke_family(session, row.family_id)
    session.commit()


def revoke_all(session: Session, user: User) -> None:
    session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == user.id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


def change_password(session: Session, user: User, current: str, new: str) -> None:
    """Also ends every login of the user: whoever had the old password loses their sessions."""
    if not verify_password(user.password_hash, current):
        raise Forbidden("the current password is incorrect")
    user.password_hash = hash_password(new)
    revoke_all(session, user)


def _refresh_row(session: Session, settings: Settings, token: str) -> RefreshToken:
    try:
        claims = decode_token(settings, token, "refresh")
        token_id = uuid.UUID(claims["jti"])
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("invalid or expired refresh token") from None
    row = session.get(RefreshToken, token_id)
    if row is None or str(row.user_id) != claims["sub"]:
        raise Unauthorized("invalid or expired refresh token")
    return row


def _revoke_family(session: Session, family_id: uuid.UUID) -> None:
    session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
