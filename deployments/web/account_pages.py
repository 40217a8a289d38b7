"""Account pages: sign up, sign in, sign out, email verification, password reset. They call the
API's account functions (`deployments.api.accounts`); a refused form is shown again with what
was wrong and the status the API would answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from cluster.errors import StudioError
from deployments.api import accounts
from deployments.api.deps import SessionDep, SettingsDep, limit_login
from deployments.api.routers.auth_email import ResetConfirmation, ResetRequest, send_later
from deployments.api.routers.auth_google import set_flow_cookies
from deployments.api.routers.users import UserLogin, UserRegister
from deployments.web.session import (
    CheckedForm,
    OptionalSession,
    SignedIn,
    WebSession,
    anonymous_csrf,
    clear_session_cookie,
    set_session_cookie,
)
from deployments.web.templating import page, redirect
from pipeline.jobs import submission as jobs
from pipeline.publish.google_oauth import Purpose, begin_authorization

router = APIRouter(include_in_schema=False, tags=["web"])

FormText = Annotated[str, Form(max_length=4096)]


def problem_text(error: ValidationError) -> str:
    """A validation error as one sentence per field, for a form."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'form'}: {item['msg']}"
        for item in error.errors()
    )


def form_page(
    request: Request,
    found: WebSession | None,
    template: str,
    context: Mapping[str, object],
    status_code: int = 200,
) -> HTMLResponse:
    """A page with a form, its CSRF token bound to the session, or for a visitor without one
    to a pre-session cookie."""
    if found is not None:
        return page(
            request, template, {"session": found, "csrf": found.csrf, **context}, status_code
        )
    response = HTMLResponse()
    csrf = anonymous_csrf(request, response, request.app.state.settings)
    shown = page(request, template, {"csrf": csrf, **context}, status_code)
    for name, value in response.headers.items():
        if name == "set-cookie":
            shown.headers.append(name, value)
    return shown


def _signed_in(request: Request, settings: SettingsDep, pair: accounts.TokenPair) -> Response:
    response = redirect(request, "films_page")
    set_session_cookie(response, request, settings, pair.refresh_token)
    return response


@router.get("/sign-up", name="sign_up_page")
def sign_up_page(request: Request, found: OptionalSession) -> Response:
    if found is not None:
        return redirect(request, "films_page")
    return form_page(request, found, "sign_up.html", {})


@router.post("/sign-up", dependencies=[CheckedForm])
def sign_up(
    request: Request,
    found: OptionalSession,
    session: SessionDep,
    settings: SettingsDep,
    email: FormText,
    password: FormText,
    full_name: FormText = "",
) -> Response:
    fields = {"email": email, "password": password, "full_name": full_name or None}
    try:
        body = UserRegister.model_validate(fields)
        user = accounts.register(session, body.email, body.password, body.full_name)
    except ValidationError as error:
        return _refused(request, found, "sign_up.html", problem_text(error), 422, email)
    except StudioError as error:
        return _refused(request, found, "sign_up.html", error.detail, error.status, email)
    jobs.on_user_registered(settings, user)
    return _signed_in(request, settings, accounts.login(session, settings, body.email, password))


@router.get("/sign-in", name="sign_in_page")
def sign_in_page(request: Request, found: OptionalSession, notice: str = "") -> Response:
    if found is not None:
        return redirect(request, "films_page")
    return form_page(request, found, "sign_in.html", {"notice": notice[:200]})


@router.get("/sign-in/google", name="google_sign_in")
def google_sign_in(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """To Google's consent screen; the API's callback ends the flow in a cookie session and
    sends the browser to its films (`auth_google.set_flow_cookies`). A link, not a form: the
    flow is bound to this browser by its cookie, so a forged start signs no one in."""
    begun = begin_authorization(session, settings, Purpose.signin)
    response = RedirectResponse(begun.url, status_code=303)
    set_flow_cookies(response, request, settings, begun.binding, "films")
    return response


@router.post("/sign-in", dependencies=[CheckedForm])
def sign_in(
    request: Request,
    found: OptionalSession,
    session: SessionDep,
    settings: SettingsDep,
    email: FormText,
    password: FormText,
) -> Response:
    try:
        body = UserLogin.model_validate({"email": email, "password": password})
        limit_login(request, body.email)
        pair = accounts.login(session, settings, body.email, body.password)
    except ValidationError as error:
        return _refused(request, found, "sign_in.html", problem_text(error), 422, email)
    except StudioError as error:
        return _refused(request, found, "sign_in.html", error.detail, error.status, email)
    return _signed_in(request, settings, pair)


@router.post("/sign-out", dependencies=[CheckedForm])
def sign_out(
    request: Request, web: SignedIn, session: SessionDep, settings: SettingsDep
) -> Response:
    accounts.logout(session, settings, web.token)
    response = redirect(request, "sign_in_page", {"notice": "You are signed out."})
    clear_session_cookie(response, request, settings)
    return response


@router.get("/verify-email", name="verify_email_page")
def verify_email_page(
    request: Request, found: OptionalSession, token: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    """The mail's link; a button confirms (a GET never spends the token: mail scanners open
    links)."""
    return form_page(request, found, "verify_email.html", {"token": token})


@router.post("/verify-email", dependencies=[CheckedForm])
def verify_email(
    request: Request, found: OptionalSession, session: SessionDep, token: FormText
) -> HTMLResponse:
    try:
        accounts.confirm_email_verification(session, token[:200])
    except StudioError as error:
        context = {"token": token, "error": error.detail}
        return form_page(request, found, "verify_email.html", context, error.status)
    return form_page(request, found, "verify_email.html", {"verified": True})


@router.post("/verify-email/send", dependencies=[CheckedForm], name="send_verification")
def send_verification(
    request: Request,
    web: SignedIn,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    try:
        message = accounts.request_email_verification(session, settings, web.user)
    except StudioError as error:
        return _account_notice(request, error.detail)
    send_later(background, settings, message)
    return _account_notice(request, f"A verification link is on its way to {web.user.email}.")


def _account_notice(request: Request, notice: str) -> Response:
    return redirect(request, "credits_page", {"notice": notice})


@router.get("/reset-password", name="reset_password_page")
def reset_password_page(
    request: Request, found: OptionalSession, token: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    return form_page(request, found, "reset_password.html", {"token": token})


@router.post("/reset-password", dependencies=[CheckedForm])
def mail_reset_link(
    request: Request,
    found: OptionalSession,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    email: FormText,
) -> HTMLResponse:
    try:
        body = ResetRequest.model_validate({"email": email})
        message = accounts.request_password_reset(session, settings, body.email)
    except ValidationError as error:
        return _refused(request, found, "reset_password.html", problem_text(error), 422, email)
    except StudioError as error:
        return _refused(request, found, "reset_password.html", error.detail, error.status, email)
    if message is not None:
        send_later(background, settings, message)
    notice = "If an account has this email, a reset link is on its way."
    return form_page(request, found, "reset_password.html", {"notice": notice})


@router.post("/reset-password/confirm", dependencies=[CheckedForm])
def reset_password(
    request: Request,
    found: OptionalSession,
    session: SessionDep,
    token: FormText,
    new_password: FormText,
) -> Response:
    try:
        body = ResetConfirmation.model_validate({"token": token, "new_password": new_password})
        accounts.confirm_password_reset(session, body.token, body.new_password)
    except ValidationError as error:
        context = {"token": token, "error": problem_text(error)}
        return form_page(request, found, "reset_password.html", context, 422)
    except StudioError as error:
        context = {"token": token, "error": error.detail}
        return form_page(request, found, "reset_password.html", context, error.status)
    return redirect(request, "sign_in_page", {"notice": "Your password is set: sign in with it."})


def _refused(
    request: Request,
    found: WebSession | None,
    template: str,
    error: str,
    status_code: int,
    email: str,
) -> HTMLResponse:
    return form_page(request, found, template, {"error": error, "email": email[:320]}, status_code)
