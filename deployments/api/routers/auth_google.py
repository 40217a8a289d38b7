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
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from deployments.api.accounts import (
    TokenPair,
    exchange_sign_in_code,
    issue_sign_in_code,
    issue_tokens,
)
from deployments.api.deps import CurrentUser, SessionDep, SettingsDep, authenticate, bearer
from deployments.api.problems import problem_responses
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
    response.set_cookie(
        BINDING_COOKIE,
        begun.binding,
        max_age=int(STATE_TTL.total_seconds()),
        path=CALLBACK_PATH,
        httponly=True,
        secure=settings.public_url.startswith("https://"),
        samesite="lax",
    )
    return AuthorizationUrl(authorization_url=begun.url)


@router.get(
    "/api/auth/google/callback",
    response_model=TokenPair | ChannelLinked | GoogleConnected,
    responses={
        303: {"description": "Signed in, with a frontend configured: to it with `?code=`"},
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
    `STUDIO_FRONTEND_URL` a redirect there with a one-time code for `exchange`; 409 when an
    account with the email exists unverified: sign in with its password and connect Google),
    or finishes linking the channel or connecting Google sign-in."""
    if code is None:
        raise OAuthRejected(f"Google did not authorize the studio ({error or 'no code'})")
    grant = complete_authorization(
        session, settings, state=state, code=code, binding=request.cookies.get(BINDING_COOKIE)
    )
    response.delete_cookie(BINDING_COOKIE, path=CALLBACK_PATH)
    if grant.purpose is Purpose.signin:
        user, created = sign_in(session, grant)
        if created:
            jobs.on_user_registered(settings, user)
        if settings.frontend_url:
            code = issue_sign_in_code(session, settings, user)
            target = f"{settings.frontend_url}?{urlencode({'code': code})}"
            redirect = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
            redirect.delete_cookie(BINDING_COOKIE, path=CALLBACK_PATH)
            return redirect
        return issue_tokens(session, settings, user, family_id=uuid.uuid4())
    if grant.purpose is Purpose.connect:
        connected = connect_sign_in(session, grant)
        return GoogleConnected(email=connected.email)
    account = link_channel(session, settings, grant)
    return ChannelLinked(email=account.email, scopes=account.scopes)


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
