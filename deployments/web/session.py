"""Cookie sessions and CSRF tokens of the web studio.

A session is a login: signing in calls the API's login (`deployments.api.accounts.login`) and
the session cookie holds that login's refresh token, which the pages never rotate. A request is
signed in while the token verifies, its row is neither revoked nor used (exchanged through the
API, it no longer names this session) and its user is active. Signing out revokes the login as
the API's logout does; a new password or a reset ends every login, sessions included. The
cookie is HttpOnly, SameSite=Lax and Secure when the studio is reached over HTTPS.

Every form carries a CSRF token bound to the session (an HMAC of the login's token id); forms
shown before signing in bind it to a random pre-session cookie instead. A POST whose token is
missing or wrong is refused with 403 before the route runs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request, Response
from sqlmodel import Session, col, select

from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import Plan, RefreshToken, User
from deployments.api import ratelimit
from deployments.api.deps import SessionDep, SettingsDep, released
from deployments.api.security import decode_token

SESSION_COOKIE = "studio_session"
ANONYMOUS_COOKIE = "studio_csrf"
CSRF_FIELD = "csrf_token"


class SignInRequired(StudioError):
    """A page that needs a session was asked for without one: the pages answer with a redirect
    to the sign-in page (`pages.install`)."""

    slug, status, title = "sign-in-required", 401, "Sign in required"


class CsrfRefused(StudioError):
    slug, status, title = "csrf-refused", 403, "Form refused"


@dataclass(frozen=True)
class WebSession:
    user: User
    plan: Plan
    token: str
    """The login's refresh token, as the cookie holds it."""
    csrf: str


def is_https(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or settings.public_url.startswith("https://")


def cookie_path(request: Request) -> str:
    return request.scope.get("root_path") or "/"


def set_session_cookie(
    response: Response, request: Request, settings: Settings, refresh_token: str
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        refresh_token,
        max_age=settings.refresh_token_ttl_s,
        path=cookie_path(request),
        secure=is_https(request, settings),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=cookie_path(request),
        secure=is_https(request, settings),
        httponly=True,
        samesite="lax",
    )


def csrf_token(settings: Settings, bound_to: str) -> str:
    """The form token of a session (its token id) or of a pre-session cookie."""
    key = settings.jwt_key()
    return hmac.new(key, b"studio-csrf\0" + bound_to.encode(), hashlib.sha256).hexdigest()


def _session_of(session: Session, settings: Settings, token: str) -> WebSession | None:
    try:
        claims = decode_token(settings, token, "refresh")
        token_id = uuid.UUID(claims["jti"])
        user_id = uuid.UUID(claims["sub"])
    except (jwt.InvalidTokenError, ValueError):
        return None
    found = session.exec(
        select(RefreshToken, User, Plan)
        .join(User, col(User.id) == col(RefreshToken.user_id))
        .join(Plan, col(Plan.code) == col(User.plan_code))
        .where(RefreshToken.id == token_id, RefreshToken.user_id == user_id)
    ).first()
    if found is None:
        return None
    row, user, plan = found
    if row.revoked_at is not None or row.used_at is not None or not user.is_active:
        return None
    return WebSession(user, plan, token, csrf_token(settings, str(token_id)))


def optional_session(
    request: Request, session: SessionDep, settings: SettingsDep
) -> WebSession | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 4096:
        return None
    return released(session, _session_of(session, settings, token))


OptionalSession = Annotated[WebSession | None, Depends(optional_session)]


async def web_session(request: Request, found: OptionalSession) -> WebSession:
    """The signed-in user's session, counted against their plan's rate limit, as API calls are."""
    if found is None:
        raise SignInRequired("sign in to see this page")
    await ratelimit.check(
        request.app.state.limiter,
        f"{request.app.state.limit_prefix}:user:{found.user.id}",
        found.plan.rate_limit_per_minute,
        f"on the {found.plan.code} plan",
    )
    return found


SignedIn = Annotated[WebSession, Depends(web_session)]


def anonymous_csrf(request: Request, response: Response, settings: Settings) -> str:
    """The form token of a visitor without a session, setting its cookie when new."""
    value = request.cookies.get(ANONYMOUS_COOKIE)
    if not value or len(value) != 64:
        value = secrets.token_hex(32)
        response.set_cookie(
            ANONYMOUS_COOKIE,
            value,
            path=cookie_path(request),
            secure=is_https(request, settings),
            httponly=True,
            samesite="lax",
        )
    return csrf_token(settings, value)


async def checked_form(request: Request, found: OptionalSession, settings: SettingsDep) -> None:
    """Refuses (403) a POST whose CSRF token is not the one its session, or its pre-session
    cookie, was given. Forms are read once: the route's `Form` fields reuse this parse."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if found is not None:
        expected: str | None = found.csrf
    else:
        anonymous = request.cookies.get(ANONYMOUS_COOKIE)
        expected = csrf_token(settings, anonymous) if anonymous else None
    if not isinstance(sent, str) or expected is None or not hmac.compare_digest(sent, expected):
        raise CsrfRefused("this form has expired or did not come from the studio: reload the page")


CheckedForm = Depends(checked_form)
