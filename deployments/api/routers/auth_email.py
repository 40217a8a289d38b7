"""Email verification and password reset: ask for a mail, then confirm with its token.

The mail goes out after the answer (a background task), so a reset request takes the same time
whether the address has an account or not; a mail the server refuses is logged. Without
`STUDIO_SMTP_URL` both requests answer 503.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage

from fastapi import APIRouter, BackgroundTasks, status
from pydantic import BaseModel, Field

from cluster.settings import Settings
from deployments.api import accounts
from deployments.api.deps import CurrentUser, SessionDep, SettingsDep
from deployments.api.problems import problem_responses
from deployments.api.routers.users import Email, NewPassword
from pipeline.fields import StrictInput
from pipeline.mail import MailUnavailable, send

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/users", tags=["users"], responses=problem_responses(422, 429))

# 503 while email is not configured (STUDIO_SMTP_URL).
MAIL_UNAVAILABLE = problem_responses(503)


class Accepted(BaseModel):
    detail: str


class TokenConfirmation(StrictInput):
    token: str = Field(min_length=1, max_length=200, description="The token from the mail.")


class ResetRequest(StrictInput):
    email: Email


class ResetConfirmation(StrictInput):
    token: str = Field(min_length=1, max_length=200, description="The token from the mail.")
    new_password: NewPassword


def send_later(background: BackgroundTasks, settings: Settings, message: EmailMessage) -> None:
    """Sends the mail after the answer; a mail the server refuses is logged."""
    background.add_task(_send_quietly, settings, message)


def _send_quietly(settings: Settings, message: EmailMessage) -> None:
    try:
        send(settings, message)
    except MailUnavailable as error:
        log.error("mail to %s not sent: %s", message["To"], error.detail)


@router.post(
    "/verify-email",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 409) | MAIL_UNAVAILABLE,
    summary="Mail a link that verifies the signed-in user's email",
)
def request_verification(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, background: BackgroundTasks
) -> Accepted:
    send_later(background, settings, accounts.request_email_verification(session, settings, user))
    return Accepted(detail=f"a verification link is on its way to {user.email}")


@router.post(
    "/verify-email/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(400),
    summary="Verify the email with the token from the mail (works once)",
)
def confirm_verification(body: TokenConfirmation, session: SessionDep) -> None:
    accounts.confirm_email_verification(session, body.token)


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    responses=MAIL_UNAVAILABLE,
    summary="Mail a password reset link (the answer is the same for unknown addresses)",
)
def request_reset(
    body: ResetRequest, session: SessionDep, settings: SettingsDep, background: BackgroundTasks
) -> Accepted:
    message = accounts.request_password_reset(session, settings, body.email)
    if message is not None:
        send_later(background, settings, message)
    return Accepted(detail="if an account has this email, a reset link is on its way")


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(400, 403),
    summary="Set a new password with the token from the mail (works once; ends every login)",
)
def confirm_reset(body: ResetConfirmation, session: SessionDep) -> None:
    accounts.confirm_password_reset(session, body.token, body.new_password)
