"""Google sign-in and YouTube channel linking: start, callback, unlink.

`start` answers Google's authorization URL and sets a short-lived HttpOnly cookie that binds the
flow to this browser; the callback (where Google sends the browser back) must carry it, so a
link started by someone else cannot be completed in a victim's browser. Linking a channel and
connecting Google sign-in to an account need the signed-in user at `start`: the callback comes
from Google without the studio's bearer token. A Google sign-up receives its plan's monthly
credits, as a registration does.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from cluster.settings import Settings
from deployments.api.accounts import (
    TokenPair,
    exchange_sign_in_code,
    issue_sign_in_code,
    issue_tokens,
)
from deployments.api.deps import CurrentUser, SessionDep, SettingsDep, authenticate, bearer
from deployments.api.problems import problem_responses
from deployments.web.session import set_session_cookie
from pipeline.fields import StrictInput
from pipeline.jobs import submission as jobs
from pipeline.publish.google_oauth import (
    SIGNED_IN_PURPOSES,
    STATE_TTL,
    OAuthRejected,
    Purpose,
    begin_authorization,
    complete_authorization,
    connect_sign_in,
    link_channel,
    sign_in,
    unlink_channel,
)

router = APIRouter(tags=["auth"])

# 503 while Google sign-in is not configured (no client id and secret), or Google did not answer.
GOOGLE_UNAVAILABLE = problem_responses(503)

BINDING_COOKIE = "studio_google_flow"
PAGES_COOKIE = "studio_google_page"
CALLBACK_PATH = "/api/auth/google"


class SignInCode(StrictInput):
    code: str = Field(min_length=1, max_length=4096, description="The `code` of the redirect.")


class AuthorizationUrl(BaseModel):
    authorization_url: str


class ChannelLinked(BaseModel):
    linked: bool = True
    email: str | None
    scopes: list[str]


class GoogleConnected(BaseModel):
    """The signed-in account now also signs in with this Google account."""

    connected: bool = True
    email: str | None


@router.get("/api/auth/google/start", responses=problem_responses(401, 422) | GOOGLE_UNAVAILABLE)
def start(
    purpose: Purpose,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AuthorizationUrl:
    """Google's authorization URL for sign-in, or (signed in) for linking a YouTube channel
    (`link`) or for signing in with Google from now on (`connect`)."""
    signed_in = purpose in SIGNED_IN_PURPOSES
    user = authenticate(session, settings, credentials)[0] if signed_in else None
    begun = begin_authorization(session, settings, purpose, user)
    set_flow_cookies(response, request, settings, begun.binding, None)
    return AuthorizationUrl(authorization_url=begun.url)


def set_flow_cookies(
    response: Response, request: Request, settings: Settings, binding: str, page: str | None
) -> None:
    """The cookies a callback must see: the binding of the flow to this browser and, for a
    flow started from the web studio's pages, the page to go back to (`films`, or the
    project whose publish page linked the channel); the callback then answers the pages' way:
    a cookie session, never tokens in a URL."""
    root = request.scope.get("root_path", "")
    options: dict[str, Any] = {
        "max_age": int(STATE_TTL.total_seconds()),
        "httponly": True,
        "secure": settings.public_url.startswith("https://"),
        "samesite": "lax",
    }
    response.set_cookie(BINDING_COOKIE, binding, path=root + CALLBACK_PATH, **options)
    if page is None:
        response.delete_cookie(PAGES_COOKIE, path=root + CALLBACK_PATH + "/callback")
    else:
        response.set_cookie(PAGES_COOKIE, page, path=root + CALLBACK_PATH + "/callback", **options)


def _clear_flow_cookies(response: Response, request: Request) -> None:
    root = request.scope.get("root_path", "")
    response.delete_cookie(BINDING_COOKIE, path=root + CALLBACK_PATH)
    response.delete_cookie(PAGES_COOKIE, path=root + CALLBACK_PATH + "/callback")


@router.get(
    "/api/auth/google/callback",
    response_model=TokenPair | ChannelLinked | GoogleConnected,
    responses={
        303: {
            "description": "Signed in, with a frontend configured: to it with `?code=`; a flow"
            " started from the web studio's pages: back to them, with a cookie session"
        },
        **problem_responses(400, 409, 422),
        **GOOGLE_UNAVAILABLE,
    },
)
def callback(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    state: Annotated[str, Query(max_length=200)],
    code: Annotated[str | None, Query(max_length=2000)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> TokenPair | ChannelLinked | GoogleConnected | RedirectResponse:
    """Where Google sends the browser back: signs in (the studio's token pair, or with
    `STUDIO_FRONTEND_URL` a redirect there with a one-time code for `exchange`, or started
    from the web studio's pages a cookie session and back to them; 409 when an
    account with the email exists unverified: sign in with its password and connect Google),
    or finishes linking the channel or connecting Google sign-in."""
    if code is None:
        raise OAuthRejected(f"Google did not authorize the studio ({error or 'no code'})")
    grant = complete_authorization(
        session, settings, state=state, code=code, binding=request.cookies.get(BINDING_COOKIE)
    )
    page = request.cookies.get(PAGES_COOKIE)
    _clear_flow_cookies(response, request)
    if grant.purpose is Purpose.signin:
        user, created = sign_in(session, grant)
        if created:
            jobs.on_user_registered(settings, user)
        if page is not None:
            pair = issue_tokens(session, settings, user, family_id=uuid.uuid4())
            signed_in = _back_to_pages(request, page)
            set_session_cookie(signed_in, request, settings, pair.refresh_token)
            return signed_in
        if settings.frontend_url:
            code = issue_sign_in_code(session, settings, user)
            target = f"{settings.frontend_url}?{urlencode({'code': code})}"
            redirect = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
            _clear_flow_cookies(redirect, request)
            return redirect
        return issue_tokens(session, settings, user, family_id=uuid.uuid4())
    if grant.purpose is Purpose.connect:
        connected = connect_sign_in(session, grant)
        if page is not None:
            return _back_to_pages(request, page)
        return GoogleConnected(email=connected.email)
    account = link_channel(session, settings, grant)
    if page is not None:
        return _back_to_pages(request, page)
    return ChannelLinked(email=account.email, scopes=account.scopes)


def _back_to_pages(request: Request, page: str) -> RedirectResponse:
    """303 to the web studio: the publish page of the project `page` names, else the films."""
    try:
        target = request.url_for("publish_page", project_id=str(uuid.UUID(page))).path
    except ValueError:
        target = request.url_for("films_page").path
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    _clear_flow_cookies(response, request)
    return response


@router.post(
    "/api/auth/google/exchange",
    responses=problem_responses(401, 422),
    summary="Trade the one-time code of a Google sign-in's redirect for the login's tokens",
)
def exchange(body: SignInCode, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """A frontend's half of Google sign-in (`STUDIO_FRONTEND_URL`): the code works once, for a
    minute; presented again, the login it started is revoked."""
    return exchange_sign_in_code(session, settings, body.code)


@router.delete(
    "/api/youtube/link",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404) | GOOGLE_UNAVAILABLE,
)
def unlink(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> None:
    """Revokes the channel's authorisation at Google and forgets its tokens."""
    unlink_channel(session, settings, user)
