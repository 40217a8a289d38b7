"""Password hashing and tokens.

Passwords: argon2id at the OWASP minimum (19 MiB, t=2, p=1). Hashing is slow on purpose and
holds a core while it runs, so it is only called from worker threads (sync routes), never on
the event loop, and at most `HASH_SLOTS` run at once so a burst of logins cannot take every
core and 19 MiB each.

Tokens: HS256 JWTs with the algorithm pinned and `exp iat iss aud sub jti typ` required. Access
tokens live `access_token_ttl_s` and carry the user's `token_version` in `ver` (a logout, a
reused refresh token or a new password bumps it, and the request's user row, loaded anyway,
refuses the older tokens at once); refresh tokens name their `RefreshToken` row in `jti`, which
is what makes them revocable and single-use; so do the one-time sign-in codes (`code`) that a
frontend exchanges for the first pair of a login. Access and refresh tokens carry `auth_time`,
when the login they descend from proved who the user is (a refresh keeps it), for actions that
need a recent login.

Keys rotate: the header's `kid` names the key that signed (a hash of it, not the key). The
signing key is `STUDIO_JWT_SECRET`; `STUDIO_JWT_PREVIOUS_SECRETS` still verify, so a new key
signs no one out. A token without a `kid` (issued before key ids) is tried against every key.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cluster.settings import Settings
from db.types import utcnow

HASH_SLOTS = 2
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti", "typ"]
TokenKind = Literal["access", "refresh", "code"]

_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_slots = threading.BoundedSemaphore(HASH_SLOTS)
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    with _slots:
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """A missing hash (unknown user, Google-only account) costs the same time as a wrong
    password, so response times do not tell which emails have accounts."""
    with _slots:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def key_id(key: bytes) -> str:
    """A stable, non-secret name for a signing key, sent as the JWT `kid`."""
    return "j" + hashlib.sha256(b"studio-jwt-key-id\0" + key).hexdigest()[:12]


def create_token(
    settings: Settings,
    kind: TokenKind,
    subject: uuid.UUID,
    expires_at: datetime,
    token_id: uuid.UUID | None = None,
    **claims: Any,
) -> str:
    payload = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(subject),
        "iat": utcnow(),
        "exp": expires_at,
        "jti": str(token_id or uuid.uuid4()),
        "typ": kind,
        **claims,
    }
    key = settings.jwt_key()
    return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": key_id(key)})


def create_access_token(
    settings: Settings,
    user_id: uuid.UUID,
    role: str,
    auth_time: datetime | None = None,
    version: int = 0,
) -> str:
    """`auth_time` defaults to now: the token is minted by a login. `version` is the user's
    `token_version`: the token is refused once a login of the user ends and bumps it."""
    now = utcnow()
    expires_at = now + timedelta(seconds=settings.access_token_ttl_s)
    auth_time = auth_time or now
    return create_token(
        settings,
        "access",
        user_id,
        expires_at,
        role=role,
        auth_time=int(auth_time.timestamp()),
        ver=version,
    )


def decode_token(settings: Settings, token: str, kind: TokenKind) -> dict[str, Any]:
    """The verified claims; raises `jwt.InvalidTokenError` on any defect, including a token of
    the other kind (a refresh token is never an access token) and an unknown `kid`."""
    keys = {key_id(key): key for key in settings.jwt_verify_keys()}
    kid = jwt.get_unverified_header(token).get("kid")
    if kid is not None and (not isinstance(kid, str) or kid not in keys):
        raise jwt.InvalidTokenError("the token was signed with an unknown key")
    candidates = [keys[kid]] if kid is not None else list(keys.values())
    for key in candidates[:-1]:
        try:
            return _decode(settings, token, kind, key)
        except jwt.InvalidSignatureError:
            continue
    return _decode(settings, token, kind, candidates[-1])


def _decode(settings: Settings, token: str, kind: TokenKind, key: bytes) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        options={"require": REQUIRED_CLAIMS},
    )
    if claims["typ"] != kind:
        raise jwt.InvalidTokenError(f"expected a {kind} token")
    return claims
