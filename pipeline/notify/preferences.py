"""What a user asked to be told when a job ends, and the record of what was sent.

Registering a webhook makes a new signing secret, returned once to be shown to the user;
registering again (a new address) replaces the secret. Email is only offered where the studio
can send it (`STUDIO_SMTP_URL`).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from cluster.settings import Settings
from db.models import NotificationDelivery, NotificationPreference
from db.types import utcnow
from pipeline.mail import mail_configured
from pipeline.notify.webhooks import check_url

SECRET_PREFIX = "whsec_"


def read(session: Session, user_id: uuid.UUID) -> NotificationPreference:
    """The user's choice; nothing chosen yet reads as no webhook and no email."""
    return session.get(NotificationPreference, user_id) or NotificationPreference(user_id=user_id)


def register_webhook(session: Session, settings: Settings, user_id: uuid.UUID, url: str) -> str:
    """Sets the user's webhook to `url` (refused with `UnsafeWebhook` if it may not receive)
    and returns its new signing secret; the caller commits."""
    preference = read(session, user_id)
    preference.webhook_url = check_url(settings, url)
    preference.webhook_secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    _save(session, preference)
    return preference.webhook_secret


def remove_webhook(session: Session, user_id: uuid.UUID) -> None:
    preference = read(session, user_id)
    preference.webhook_url = preference.webhook_secret = None
    _save(session, preference)


def set_email(
    session: Session, settings: Settings, user_id: uuid.UUID, enabled: bool
) -> NotificationPreference:
    """Turns email notifications on or off; on raises `MailUnavailable` without an SMTP server."""
    if enabled:
        mail_configured(settings)
    preference = read(session, user_id)
    preference.email = enabled
    return _save(session, preference)


def deliveries(user_id: uuid.UUID) -> SelectOfScalar[Any]:
    """The user's delivery attempts, newest first."""
    return (
        select(NotificationDelivery)
        .where(NotificationDelivery.user_id == user_id)
        .order_by(col(NotificationDelivery.created_at).desc(), col(NotificationDelivery.id))
    )


def _save(session: Session, preference: NotificationPreference) -> NotificationPreference:
    preference.updated_at = utcnow()
    session.add(preference)
    session.flush()
    return preference
