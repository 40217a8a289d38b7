"""Google OAuth 2.0: sign-in with OpenID Connect, and linking a YouTube channel.

Both are the authorization-code flow with PKCE (S256) through google-auth-oauthlib. What a
callback must match is kept server-side in `oauth_states`, one row per started flow: a hash of
the `state` (primary key), the `nonce`, the PKCE `code_verifier` (sealed), the purpose, the user
who asked to link, a hash of a browser-binding cookie, and an expiry. A callback deletes its row
before anything else, so a forged state finds nothing and a replayed callback finds its row
gone; Google refuses a code it has seen, and PKCE refuses a code minted for another flow.

A table rather than a signed, sealed state token: single use needs server-side memory anyway
(a token alone can be replayed until it expires), and a row can be consumed atomically.

Sign-in asks for `openid email profile` online; linking asks for offline access (a refresh
token) with `prompt=consent` and the YouTube scopes: `youtube.upload`, `youtube` (playlists)
and `youtube.force-ssl`, which `captions.insert` requires.

The ID token is verified here (signature against the JWKS of `google_jwks_uri`, `aud`, `iss`,
`exp`, `nonce`). Sign-in joins a Google identity to an existing studio account with the same
email only when both Google and the studio have verified that email: otherwise whoever
registered the address with a password (perhaps not its owner: account pre-hijacking) would
share the account. The owner of an unverified account signs in with the password (or resets
it by email) and connects Google from the signed-in profile (`Purpose.connect`).

Linked channels keep their tokens sealed (`pipeline.publish.sealing`); `youtube_credentials`
gives google-auth credentials that write refreshed tokens back, sealed, and turn a refresh token
Google refuses (`invalid_grant`) into `RelinkRequired`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache, partial
from typing import Any

import httpx
import jwt
from google.auth.exceptions import RefreshError
from google.auth.transport import Request as AuthRequest
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2 import OAuth2Error
from sqlalchemy import delete
from sqlmodel import Session, col, select

from cluster.errors import StudioError
from cluster.settings import Settings
from db import addresses
from db.models import AuditLog, OAuthAccount, OAuthState, User
from db.session import session_scope
from db.types import utcnow
from pipeline.errors import Conflict, NotFound, RelinkRequired
from pipeline.publish.sealing import (
    OAuthTokens,
    TokenCipher,
    TokenUnreadable,
    open_tokens,
    redact_token_logs,
    seal_tokens,
)

STATE_TTL = timedelta(minutes=10)
YOUTUBE_PROVIDER = "youtube"
GOOGLE_PROVIDER = "google"
OPENID_SCOPES = [
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
]
YOUTUBE_SCOPES = [
    "https://www.googleapis.com/auth/youtube.upload",
    "https://www.googleapis.com/auth/youtube",
    "https://www.googleapis.com/auth/youtube.force-ssl",
]
RELINK = "Google no longer accepts the stored authorisation of your channel: relink your channel"

redact_token_logs()


class Purpose(StrEnum):
    signin = "signin"
    link = "link"
    connect = "connect"


SIGNED_IN_PURPOSES = (Purpose.link, Purpose.connect)
SCOPES = {
    Purpose.signin: OPENID_SCOPES,
    Purpose.connect: OPENID_SCOPES,
    Purpose.link: ["openid", "https://www.googleapis.com/auth/userinfo.email", *YOUTUBE_SCOPES],
}


class OAuthRejected(StudioError):
    slug, status, title = "oauth-rejected", 400, "Google authorization rejected"


class GoogleUnavailable(StudioError):
    slug, status, title = "google-unavailable", 503, "Google unavailable"


class SignInWithPassword(StudioError):
    slug, status, title = "sign-in-with-password", 409, "Sign in with your password first"


@dataclass(frozen=True)
class AuthorizationStart:
    """Where to send the browser, and the value of the cookie that binds the flow to it."""

    url: str
    binding: str = field(repr=False)


@dataclass(frozen=True)
class GoogleGrant:
    """A completed flow: the verified ID token claims and what Google granted."""

    purpose: Purpose
    user_id: uuid.UUID | None
    claims: dict[str, Any]
    scopes: list[str]
    tokens: OAuthTokens
    expires_at: datetime | None


def redirect_uri(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + "/api/auth/google/callback"


def begin_authorization(
    session: Session, settings: Settings, purpose: Purpose, user: User | None = None
) -> AuthorizationStart:
    """Records a new flow and returns Google's authorization URL for it. Linking a channel and
    connecting Google sign-in need `user`: the callback arrives from Google without the studio's
    bearer token."""
    if purpose in SIGNED_IN_PURPOSES and user is None:
        raise ValueError(f"{purpose} needs the signed-in user")
    flow = _flow(settings, purpose)
    state, nonce, binding = (secrets.token_urlsafe(32) for _ in range(3))
    if purpose is Purpose.link:
        options = {"access_type": "offline", "prompt": "consent"}
    elif purpose is Purpose.connect:
        options = {"access_type": "online", "prompt": "select_account"}
    else:
        options = {"access_type": "online", "prompt": "select_account"}
    url, _ = flow.authorization_url(state=state, nonce=nonce, **options)
    cipher = TokenCipher.from_settings(settings)
    state_hash = _digest(state)
    session.exec(delete(OAuthState).where(col(OAuthState.expires_at) < utcnow()))
    session.add(
        OAuthState(
            state_hash=state_hash,
            purpose=purpose,
            user_id=user.id if user else None,
            nonce=nonce,
            key_id=cipher.current,
            code_verifier=cipher.seal(flow.code_verifier, _state_aad(state_hash)),
            binding_hash=_digest(binding),
            expires_at=utcnow() + STATE_TTL,
        )
    )
    session.commit()
    return AuthorizationStart(url=url, binding=binding)


def complete_authorization(
    session: Session, settings: Settings, *, state: str, code: str, binding: str | None
) -> GoogleGrant:
    """Consumes the flow `state` names, exchanges `code` (with the PKCE verifier) and verifies
    the ID token. Any mismatch raises `OAuthRejected`; the flow is spent either way."""
    pending = _consume_state(session, state)
    if pending.expires_at < utcnow():
        raise OAuthRejected("this sign-in took too long: start again")
    if binding is None or not hmac.compare_digest(pending.binding_hash, _digest(binding)):
        raise OAuthRejected("this sign-in was started in another browser: start again")
    cipher = TokenCipher.from_settings(settings)
    verifier = cipher.open(pending.key_id, pending.code_verifier, _state_aad(pending.state_hash))
    purpose = Purpose(pending.purpose)
    flow = _flow(settings, purpose, code_verifier=verifier)
    try:
        token = flow.fetch_token(code=code)
    except Warning as changed:  # oauthlib: Google granted other scopes than requested
        token = changed.token  # type: ignore[attr-defined]
    except OAuth2Error as error:
        raise OAuthRejected(f"Google refused the authorization code ({error.error})") from None
    if "id_token" not in token:
        raise OAuthRejected("Google returned no ID token")
    claims = verify_id_token(settings, token["id_token"], pending.nonce)
    scope = token.get("scope") or []
    expires_at = token.get("expires_at")
    return GoogleGrant(
        purpose=purpose,
        user_id=pending.user_id,
        claims=claims,
        scopes=scope.split() if isinstance(scope, str) else list(scope),
        tokens=OAuthTokens(token["access_token"], token.get("refresh_token")),
        expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at else None,
    )


def verify_id_token(settings: Settings, id_token: str, nonce: str) -> dict[str, Any]:
    """The claims of a Google ID token whose signature, audience, issuer, expiry and nonce
    all check out."""
    issuer = settings.google_issuer
    try:
        key = _jwks(settings.google_jwks_uri).get_signing_key_from_jwt(id_token)
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key.key,
            algorithms=["RS256"],
            audience=settings.google_client_id,
            issuer=[issuer, issuer.removeprefix("https://")],
            options={"require": ["iss", "aud", "sub", "exp", "iat"]},
            leeway=30,
        )
    except jwt.PyJWTError as error:
        raise OAuthRejected(f"the ID token from Google is invalid: {error}") from None
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise OAuthRejected("the ID token's nonce does not belong to this sign-in")
    return claims


def sign_in(session: Session, grant: GoogleGrant) -> tuple[User, bool]:
    """The studio user of this Google identity, and whether it was created now. A Google
    identity seen before signs in its user; a new one needs an email Google verified, and
    joins the account with that email only if the studio verified it too (else
    `SignInWithPassword`); with no such account, a new one is made."""
    subject, email = grant.claims["sub"], grant.claims.get("email")
    known = session.exec(
        select(OAuthAccount).where(
            OAuthAccount.provider == GOOGLE_PROVIDER, OAuthAccount.subject == subject
        )
    ).first()
    if known is not None:
        user = session.get(User, known.user_id)
        if user is None or not user.is_active:
            raise OAuthRejected("this account is suspended")
        return user, False
    if not email or grant.claims.get("email_verified") is not True:
        raise OAuthRejected("Google has not verified the email of this account")
    try:
        email = addresses.normalise(email)
    except addresses.AddressInvalid as error:
        raise OAuthRejected(f"the email of this Google account: {error.detail}") from error
    user = session.exec(select(User).where(User.email == email)).first()
    created = user is None
    if user is None:
        user = User(email=email, email_verified=True, full_name=grant.claims.get("name"))
        session.add(user)
        session.flush()
    elif not user.is_active:
        raise OAuthRejected("this account is suspended")
    elif not user.email_verified:
        raise SignInWithPassword(
            "an account with this email exists but its email is not verified: sign in with "
            "its password (or reset the password by email), then connect Google from your profile"
        )
    account = OAuthAccount(
        user_id=user.id, provider=GOOGLE_PROVIDER, subject=subject, email=email, scopes=grant.scopes
    )
    session.add(account)
    session.add(_audit(user.id, "google.signin_linked", account, {"created": created}))
    session.commit()
    return user, created


def connect_sign_in(session: Session, grant: GoogleGrant) -> OAuthAccount:
    """Lets the signed-in user who started the flow sign in with this Google identity from now
    on. An identity already connected to another studio account is refused."""
    assert grant.user_id is not None
    subject = grant.claims["sub"]
    account = session.exec(
        select(OAuthAccount).where(
            OAuthAccount.provider == GOOGLE_PROVIDER, OAuthAccount.subject == subject
        )
    ).first()
    if account is not None and account.user_id != grant.user_id:
        raise Conflict("this Google account signs in to another studio account")
    if account is None:
        account = OAuthAccount(user_id=grant.user_id, provider=GOOGLE_PROVIDER, subject=subject)
    account.email = grant.claims.get("email")
    account.scopes = grant.scopes
    account.updated_at = utcnow()
    session.add(account)
    session.add(_audit(grant.user_id, "google.connect", account, {"email": account.email}))
    session.commit()
    return account


def link_channel(session: Session, settings: Settings, grant: GoogleGrant) -> OAuthAccount:
    """Stores the channel's tokens, sealed, for the user who started the flow. A user has one
    channel: linking another Google account replaces (and revokes) the previous one."""
    assert grant.user_id is not None
    missing = [scope for scope in YOUTUBE_SCOPES if scope not in grant.scopes]
    if missing:
        raise OAuthRejected(f"Google did not grant {', '.join(missing)}: allow YouTube access")
    subject = grant.claims["sub"]
    cipher = TokenCipher.from_settings(settings)
    account = session.exec(
        select(OAuthAccount).where(
            OAuthAccount.provider == YOUTUBE_PROVIDER, OAuthAccount.subject == subject
        )
    ).first()
    if account is not None and account.user_id != grant.user_id:
        raise Conflict("this YouTube channel is linked to another studio account")
    for previous in _youtube_accounts(session, grant.user_id):
        if previous.subject != subject:
            _forget(session, settings, cipher, previous, strict=False)
    refresh_token = grant.tokens.refresh_token
    if account is None:
        account = OAuthAccount(user_id=grant.user_id, provider=YOUTUBE_PROVIDER, subject=subject)
    elif refresh_token is None:
        refresh_token = open_tokens(cipher, account).refresh_token
    if refresh_token is None:
        raise OAuthRejected("Google returned no refresh token: remove the studio's access in "
                            "your Google account, then link again")  # fmt: skip
    account.email = grant.claims.get("email")
    account.scopes = grant.scopes
    account.expires_at = grant.expires_at
    account.updated_at = utcnow()
    seal_tokens(cipher, account, OAuthTokens(grant.tokens.access_token, refresh_token))
    session.add(account)
    session.add(_audit(grant.user_id, "youtube.link", account, {"email": account.email}))
    session.commit()
    return account


def unlink_channel(session: Session, settings: Settings, user: User) -> None:
    """Revokes the channel's grant at Google, then forgets it."""
    accounts = _youtube_accounts(session, user.id)
    if not accounts:
        raise NotFound("no YouTube channel is linked")
    cipher = TokenCipher.from_settings(settings)
    for account in accounts:
        _forget(session, settings, cipher, account, strict=True)
    session.commit()


def forget_user(session: Session, settings: Settings, user_id: uuid.UUID) -> None:
    """Revokes the user's channel grants at Google (as far as Google answers) and deletes every
    linked identity and pending flow of the user; the caller commits."""
    cipher = TokenCipher.from_settings(settings)
    for account in _youtube_accounts(session, user_id):
        _forget(session, settings, cipher, account, strict=False)
    session.exec(delete(OAuthAccount).where(col(OAuthAccount.user_id) == user_id))
    session.exec(delete(OAuthState).where(col(OAuthState.user_id) == user_id))


def linked_channel(session: Session, user_id: uuid.UUID) -> OAuthAccount | None:
    accounts = _youtube_accounts(session, user_id)
    return accounts[0] if accounts else None


class SealingCredentials(Credentials):  # type: ignore[misc]
    """google-auth user credentials that hand every refreshed token to `on_refresh` (which seals
    it into the row), and raise `RelinkRequired` when Google refuses the refresh token."""

    def __init__(self, *args: Any, on_refresh: Callable[[Credentials], None], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_refresh = on_refresh

    def refresh(self, request: AuthRequest) -> None:
        try:
            super().refresh(request)
        except RefreshError as error:
            if any("invalid_grant" in str(arg) for arg in error.args):
                raise RelinkRequired(RELINK) from None
            raise
        self._on_refresh(self)


def youtube_credentials(database_url: str, settings: Settings, user_id: uuid.UUID) -> Credentials:
    """Credentials for the user's linked channel; expired access tokens refresh themselves."""
    cipher = TokenCipher.from_settings(settings)
    with session_scope(database_url) as session:
        account = linked_channel(session, user_id)
        if account is None:
            raise RelinkRequired("no YouTube channel is linked: link your channel")
        tokens = open_tokens(cipher, account)
    secret = settings.google_client_secret
    return SealingCredentials(
        token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_uri=settings.google_token_uri,
        client_id=settings.google_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        scopes=account.scopes,
        expiry=account.expires_at.astimezone(UTC).replace(tzinfo=None)
        if account.expires_at
        else None,
        on_refresh=partial(_store_refreshed, database_url, cipher, account.id),
    )


def _store_refreshed(
    database_url: str, cipher: TokenCipher, account_id: uuid.UUID, credentials: Credentials
) -> None:
    with session_scope(database_url) as session:
        account = session.get(OAuthAccount, account_id)
        if account is None:
            return
        seal_tokens(cipher, account, OAuthTokens(credentials.token, credentials.refresh_token))
        expiry = credentials.expiry
        account.expires_at = expiry.replace(tzinfo=UTC) if expiry else None
        account.updated_at = utcnow()
        session.add(account)


def _forget(
    session: Session,
    settings: Settings,
    cipher: TokenCipher,
    account: OAuthAccount,
    *,
    strict: bool,
) -> None:
    """Revokes the account's grant and deletes the row. Google answering that the token is
    already invalid counts as revoked; any other failure raises when `strict`, so an unlink
    that Google did not confirm can be tried again. Tokens that no longer open cannot be
    revoked (the user can do it in their Google account), but the row still goes."""
    try:
        tokens = open_tokens(cipher, account)
    except TokenUnreadable:
        tokens = OAuthTokens()
    token = tokens.refresh_token or tokens.access_token
    if token is not None:
        try:
            response = httpx.post(settings.google_revoke_uri, data={"token": token}, timeout=15)
            revoked = response.is_success or _oauth_error(response) == "invalid_token"
        except httpx.HTTPError:
            revoked = False
        if not revoked and strict:
            raise GoogleUnavailable("Google did not confirm the revocation: try again")
    session.add(_audit(account.user_id, "youtube.unlink", account, {"email": account.email}))
    session.delete(account)


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        return str(response.json().get("error"))
    except ValueError:
        return None


def _youtube_accounts(session: Session, user_id: uuid.UUID) -> list[OAuthAccount]:
    return list(
        session.exec(
            select(OAuthAccount).where(
                OAuthAccount.provider == YOUTUBE_PROVIDER, OAuthAccount.user_id == user_id
            )
        ).all()
    )


def _consume_state(session: Session, state: str) -> OAuthState:
    pending = session.get(OAuthState, _digest(state))
    if pending is None:
        raise OAuthRejected("unknown or already used sign-in state")
    session.expunge(pending)
    deleted = session.exec(
        delete(OAuthState).where(col(OAuthState.state_hash) == pending.state_hash)
    )
    session.commit()
    if deleted.rowcount != 1:
        raise OAuthRejected("unknown or already used sign-in state")
    return pending


def _flow(settings: Settings, purpose: Purpose, code_verifier: str | None = None) -> Flow:
    if not settings.google_client_id or not settings.google_client_secret:
        raise GoogleUnavailable(
            "Google sign-in is not configured (STUDIO_GOOGLE_CLIENT_ID, "
            "STUDIO_GOOGLE_CLIENT_SECRET)"
        )
    config = {
        "web": {
            "client_id": settings.google_client_id,
            "client_secret": settings.google_client_secret.get_secret_value(),
            "auth_uri": settings.google_auth_uri,
            "token_uri": settings.google_token_uri,
            "redirect_uris": [redirect_uri(settings)],
        }
    }
    return Flow.from_client_config(
        config,
        scopes=SCOPES[purpose],
        redirect_uri=redirect_uri(settings),
        code_verifier=code_verifier,
        autogenerate_code_verifier=code_verifier is None,
    )


@lru_cache(maxsize=8)
def _jwks(uri: str) -> jwt.PyJWKClient:
    """One client per JWKS URL, caching Google's keys (refetched for an unknown `kid`)."""
    return jwt.PyJWKClient(uri, cache_keys=True, lifespan=3600, timeout=15)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _state_aad(state_hash: str) -> bytes:
    return f"oauth_states:{state_hash}:code_verifier".encode()


def _audit(
    actor: uuid.UUID, action: str, account: OAuthAccount, detail: dict[str, Any]
) -> AuditLog:
    return AuditLog(
        actor_id=actor,
        action=action,
        target_type="oauth_account",
        target_id=str(account.id),
        detail=detail,
    )
