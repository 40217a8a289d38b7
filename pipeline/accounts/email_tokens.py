"""Tokens sent by email: proof that whoever holds them reads the account's inbox.

A token is 32 random bytes (URL-safe base64); only its sha256 is stored, so a copy of the
database opens nothing. It is single-use (a conditional update claims it, so two concurrent
uses cannot both succeed), expires (`email_verification_ttl_s`, `password_reset_ttl_s`), and
is bound to the address it was sent to: a token mailed before an email change does not verify
the new address. Issuing a token voids the user's earlier ones of the same purpose.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col

from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import EmailToken, EmailTokenPurpose, User
from db.types import utcnow


class TokenInvalid(StudioError):
    slug, status, title = "token-invalid", 400, "Link invalid or expired"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ttl(settings: Settings, purpose: EmailTokenPurpose) -> timedelta:
    if purpose is EmailTokenPurpose.verify_email:
        return timedelta(seconds=settings.email_verification_ttl_s)
    return timedelta(seconds=settings.password_reset_ttl_s)


def issue(session: Session, settings: Settings, user: User, purpose: EmailTokenPurpose) -> str:
    """A new token for `user` and `purpose` (committed); the plaintext exists only here."""
    now = utcnow()
    session.exec(delete(EmailToken).where(col(EmailToken.expires_at) < now))
    session.exec(
        delete(EmailToken).where(
            col(EmailToken.user_id) == user.id, col(EmailToken.purpose) == purpose
        )
    )
    token = secrets.token_urlsafe(32)
    session.add(
        EmailToken(
            token_hash=token_hash(token),
            user_id=user.id,
            purpose=purpose,
            email=user.email,
            expires_at=now + ttl(settings, purpose),
            created_at=now,
        )
    )
    session.commit()
    return token


def consume(session: Session, token: str, purpose: EmailTokenPurpose) -> User:
    """The user the token belongs to, marking the token used (not committed: the caller's
    change commits with it). Raises `TokenInvalid` for an unknown, used, expired or
    misdirected token, and for one sent to an address the account no longer has."""
    digest = token_hash(token)
    claimed = session.exec(
        update(EmailToken)
        .where(
            col(EmailToken.token_hash) == digest,
            col(EmailToken.purpose) == purpose,
            col(EmailToken.used_at).is_(None),
            col(EmailToken.expires_at) > utcnow(),
        )
        .values(used_at=utcnow())
    )
    row = session.get(EmailToken, digest) if claimed.rowcount == 1 else None
    user = session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or user.email.lower() != row.email.lower():
        session.rollback()
        raise TokenInvalid("this link is invalid, already used or expired: ask for a new one")
    return user
