"""Job notifications: the user's webhook and email choice, and the record of every delivery."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import AnyUrl, BaseModel, ConfigDict, Field, UrlConstraints

from deployments.api.deps import CurrentUser, SessionDep, SettingsDep
from deployments.api.pagination import Page, PageDep, fetch_page
from deployments.api.problems import problem_responses
from pipeline.fields import StrictInput
from pipeline.notify import preferences
from pipeline.notify.webhooks import MAX_URL_LENGTH, SIGNATURE_HEADER

router = APIRouter(
    prefix="/api/notifications",
    tags=["notifications"],
    responses=problem_responses(401, 422, 429),
)

WebhookUrl = Annotated[
    AnyUrl, UrlConstraints(max_length=MAX_URL_LENGTH, allowed_schemes=["https", "http"])
]


class WebhookCreate(StrictInput):
    url: WebhookUrl = Field(
        description="An https:// address on the public internet that accepts a JSON POST."
    )


class EmailChoice(StrictInput):
    enabled: bool = Field(description="Email the account's address when a job ends.")


class NotificationsPublic(BaseModel):
    webhook_url: str | None
    email: bool


class WebhookCreated(BaseModel):
    url: str
    secret: str = Field(
        description=f"Shown once: verifies the `{SIGNATURE_HEADER}` header, "
        '`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.'
    )


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    notification_id: uuid.UUID
    attempt: int
    status_code: int | None = Field(description="The receiver's answer; none if unreached.")
    error: str | None
    created_at: datetime


@router.get("")
def read_notifications(user: CurrentUser, session: SessionDep) -> NotificationsPublic:
    preference = preferences.read(session, user.id)
    return NotificationsPublic(webhook_url=preference.webhook_url, email=preference.email)


@router.put("/webhook", status_code=status.HTTP_201_CREATED)
def register_webhook(
    body: WebhookCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    """Sets the webhook told of every job's end and makes its signing secret (a new one each
    time: the previous one stops signing)."""
    url = str(body.url)
    secret = preferences.register_webhook(session, settings, user.id, url)
    session.commit()
    return WebhookCreated(url=url, secret=secret)


@router.delete("/webhook", status_code=status.HTTP_204_NO_CONTENT)
def remove_webhook(user: CurrentUser, session: SessionDep) -> None:
    preferences.remove_webhook(session, user.id)
    session.commit()


@router.put("/email", responses=problem_responses(503))
def choose_email(
    body: EmailChoice, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> NotificationsPublic:
    preference = preferences.set_email(session, settings, user.id, body.enabled)
    session.commit()
    return NotificationsPublic(webhook_url=preference.webhook_url, email=preference.email)


@router.get("/deliveries")
def list_deliveries(user: CurrentUser, session: SessionDep, page: PageDep) -> Page[DeliveryPublic]:
    """Every attempt at telling the user of a job's end, newest first."""
    return fetch_page(session, preferences.deliveries(user.id), page, DeliveryPublic)
