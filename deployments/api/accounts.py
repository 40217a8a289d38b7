"""Accounts and sessions: registration, login, refresh-token rotation with reuse detection, logout,
email verification, password reset by email, account deletion.

A login starts a refresh-token *family*. Each refresh marks the presented token used and issues
the next one in the family; presenting a used token again means it was copied, so the whole
family is revoked and whoever holds any of its tokens must log in again. Every token of a
family carries the login's `auth_time`.

Verification and reset mail single-use tokens (`pipeline.accounts.email_tokens`). A reset
request answers the same whether the address has an account or not, and its mail goes out
after the answer, so neither the answer nor its timing tells. Confirming a reset proves the
inbox: it sets the password, verifies the email and ends every login of the account, including
those of whoever registered the address before its owner did.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import jwt
from pydantic import BaseModel
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cluster.settings import Settings
from db.models import EmailTokenPurpose, RefreshToken, User
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
from pipeline.accounts import deletion, email_tokens
from pipeline.errors import Conflict
from pipeline.mail import compose, mail_configured
from pipeline.storage import Storage

LONG_AGO = datetime.fromtimestamp(0, UTC)
SIGN_IN_CODE_TTL = timedelta(seconds=60)


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
    session: Session,
    settings: Settings,
    user: User,
    family_id: uuid.UUID,
    auth_time: datetime | None = None,
) -> TokenPair:
    """A new pair in `family_id`; `auth_time` is the family's login (now for a new login)."""
    auth_time = auth_time or utcnow()
    row = RefreshToken(
        user_id=user.id,
        family_id=family_id,
        expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_s),
    )
    session.add(row)
    session.commit()
    refresh = create_token(
        settings,
        "refresh",
        user.id,
        row.expires_at,
        row.id,
        fam=str(family_id),
        auth_time=int(auth_time.timestamp()),
    )
    return TokenPair(
        access_token=create_access_token(
            settings, user.id, user.role, auth_time, user.token_version
        ),
        refresh_token=refresh,
        expires_in=settings.access_token_ttl_s,
    )


def issue_sign_in_code(session: Session, settings: Settings, user: User) -> str:
    """A one-time code for a new login of `user`, for a browser to carry to a frontend in a URL
    instead of tokens: it lives `SIGN_IN_CODE_TTL`, and `exchange_sign_in_code` trades it once
    for the login's first token pair. It names a `RefreshToken` row, the first of the login's
    family, so it is single-use and revocable like a refresh token, and is never one."""
    now = utcnow()
    row = RefreshToken(user_id=user.id, family_id=uuid.uuid4(), expires_at=now + SIGN_IN_CODE_TTL)
    session.add(row)
    session.commit()
    return create_token(
        settings, "code", user.id, row.expires_at, row.id, auth_time=int(now.timestamp())
    )


def exchange_sign_in_code(session: Session, settings: Settings, code: str) -> TokenPair:
    """The login's first pair for a code of `issue_sign_in_code`; a code presented again was
    copied, so the login it started is revoked."""
    try:
        claims = decode_token(settings, code, "code")
        row = session.get(RefreshToken, uuid.UUID(claims["jti"]))
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("invalid or expired sign-in code") from None
    if row is None or str(row.user_id) != claims["sub"]:
        raise Unauthorized("invalid or expired sign-in code")
    user = _claim_once(
        session, row,
        reused="sign-in code already used: sign in again",
        gone="the account of this code is deleted or suspended",
    )  # fmt: skip
    return issue_tokens(session, settings, user, row.family_id, auth_time_of(claims))


def refresh(session: Session, settings: Settings, token: str) -> TokenPair:
    row, auth_time = _refresh_row(session, settings, token)
    if row.revoked_at is not None:
        raise Unauthorized("refresh token revoked: log in again")
    user = _claim_once(
        session, row,
        reused="refresh token reused: every session of this login is revoked",
        gone="the account of this token is deleted or suspended",
    )  # fmt: skip
    # A token from before `auth_time` existed: its login's time is unknown, so never recent.
    return issue_tokens(session, settings, user, row.family_id, auth_time or LONG_AGO)


def _claim_once(session: Session, row: RefreshToken, *, reused: str, gone: str) -> User:
    """Marks `row` used, in one statement that only an unused, unrevoked row passes, and returns
    its active user. A row already used was copied: its whole login family is revoked."""
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
        _revoke_family(session, row.family_id, row.user_id)
        session.commit()
        raise Unauthorized(reused)
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        session.commit()
        raise Unauthorized(gone)
    return user


def logout(session: Session, settings: Settings, token: str) -> None:
    """Revokes the login the refresh token belongs to; logging out twice is not an error."""
    row, _ = _refresh_row(session, settings, token)
    _revoke_family(session, row.family_id, row.user_id)
    session.commit()


def revoke_all(session: Session, user: User) -> None:
    """Ends every login of the user: refresh tokens revoked, access tokens refused."""
    session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == user.id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    _bump_token_version(session, user.id)


def change_password(session: Session, user: User, current: str, new: str) -> None:
    """Also ends every login of the user: whoever had the old password loses their sessions."""
    if not verify_password(user.password_hash, current):
        raise Forbidden("the current password is incorrect")
    user.password_hash = hash_password(new)
    revoke_all(session, user)


def request_email_verification(session: Session, settings: Settings, user: User) -> EmailMessage:
    """The verification mail for the user's address, with a new token; the caller sends it."""
    mail_configured(settings)
    if user.email_verified:
        raise Conflict("your email is already verified")
    token = email_tokens.issue(session, settings, user, EmailTokenPurpose.verify_email)
    hours = settings.email_verification_ttl_s // 3600 or 1
    body = (
        "Confirm that this is your address for AI Film Studio:\n\n"
        f"{settings.public_url.rstrip('/')}/verify-email?token={token}\n\n"
        f"The link works once, within {hours} hour(s). If you did not ask, ignore this mail.\n"
    )
    return compose(settings, user.email, "Verify your email", body)


def confirm_email_verification(session: Session, token: str) -> User:
    user = email_tokens.consume(session, token, EmailTokenPurpose.verify_email)
    user.email_verified = True
    user.updated_at = utcnow()
    session.add(user)
    session.commit()
    return user


def request_password_reset(session: Session, settings: Settings, email: str) -> EmailMessage | None:
    """The reset mail for the account with `email`, or None when there is none (or it is
    suspended or deleted): the route answers the same either way."""
    mail_configured(settings)
    user = session.exec(select(User).where(func.lower(User.email) == email.lower())).first()
    if user is None or not user.is_active:
        return None
    token = email_tokens.issue(session, settings, user, EmailTokenPurpose.reset_password)
    minutes = settings.password_reset_ttl_s // 60 or 1
    body = (
        "Someone asked to reset the password of your AI Film Studio account. To choose a new "
        "password, open:\n\n"
        f"{settings.public_url.rstrip('/')}/reset-password?token={token}\n\n"
        f"The link works once, within {minutes} minutes. If it was not you, ignore this mail: "
        "your password stays as it is.\n"
    )
    return compose(settings, user.email, "Reset your password", body)


def confirm_password_reset(session: Session, token: str, new_password: str) -> None:
    """Sets the password, verifies the email (the token came through it) and ends every login."""
    user = email_tokens.consume(session, token, EmailTokenPurpose.reset_password)
    if not user.is_active:
        session.rollback()
        raise Forbidden("this account is suspended")
    user.password_hash = hash_password(new_password)
    user.email_verified = True
    user.updated_at = utcnow()
    session.add(user)
    revoke_all(session, user)
    session.commit()


def delete_account(
    session: Session,
    settings: Settings,
    storage: Storage,
    user: User,
    password: str | None,
    auth_time: datetime | None,
) -> None:
    """Deletes the account (`pipeline.accounts.deletion`) once the user has proved who they
    are: with the password when the account has one, else (Google-only accounts) with a login
    no older than `reauthentication_window_s`."""
    if user.password_hash is not None:
        if password is None or not verify_password(user.password_hash, password):
            raise Forbidden("deleting the account needs its current password")
    else:
        window = timedelta(seconds=settings.reauthentication_window_s)
        if auth_time is None or utcnow() - auth_time > window:
            raise Forbidden("sign in again to delete the account: your login is not recent")
    deletion.delete_account(session, settings, storage, user)


def auth_time_of(claims: dict[str, object]) -> datetime | None:
    """When the login behind a token's claims happened (None for tokens without it)."""
    value = claims.get("auth_time")
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


def _refresh_row(
    session: Session, settings: Settings, token: str
) -> tuple[RefreshToken, datetime | None]:
    try:
        claims = decode_token(settings, token, "refresh")
        token_id = uuid.UUID(claims["jti"])
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("invalid or expired refresh token") from None
    row = session.get(RefreshToken, token_id)
    if row is None or str(row.user_id) != claims["sub"]:
        raise Unauthorized("invalid or expired refresh token")
    return row, auth_time_of(claims)


def _revoke_family(session: Session, family_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Ends one login: its refresh tokens are revoked, and the user's access tokens are refused
    (they do not name their login, so all of them: other logins refresh once and go on)."""
    session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    _bump_token_version(session, user_id)


def _bump_token_version(session: Session, user_id: uuid.UUID) -> None:
    session.exec(
        update(User)
        .where(col(User.id) == user_id)
        .values(token_version=col(User.token_version) + 1)
        .execution_options(synchronize_session="fetch")
    )
