"""Email notifications go through the studio's SMTP sending (a local aiosmtpd server here):
one message per ended job to the account's address; without SMTP they cannot be turned on."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlmodel import select

from cluster.settings import Settings
from db.models import JobStatus, NotificationDelivery, User
from db.session import session_scope
from pipeline.mail import MailUnavailable
from pipeline.notify import outbox, preferences
from tests.accounts.conftest import Mailbox
from tests.notify.conftest import end_job, new_user


def test_a_failed_job_is_mailed_once(notify_settings: Settings, smtp: tuple[str, Mailbox]) -> None:
    settings = notify_settings.model_copy(update={"smtp_url": SecretStr(smtp[0])})
    url = settings.resolved_database_url
    user_id = new_user(url)
    with session_scope(url) as session:
        preferences.set_email(session, settings, user_id, True)
        user = session.get(User, user_id)
        assert user is not None
    end_job(url, user_id, JobStatus.failed)

    outbox.deliver_due(settings)
    outbox.deliver_due(settings)

    message = smtp[1].wait_for(user.email)
    assert message["Subject"] == "Your job failed"
    body = message.get_body(("plain",))
    assert body is not None and "Reason: boom" in body.get_content()
    assert len(smtp[1].to(user.email)) == 1
    with session_scope(url) as session:
        [delivery] = session.exec(
            select(NotificationDelivery).where(NotificationDelivery.user_id == user_id)
        ).all()
    assert delivery.error is None


def test_email_needs_smtp(notify_settings: Settings) -> None:
    url = notify_settings.resolved_database_url
    with pytest.raises(MailUnavailable), session_scope(url) as session:
        preferences.set_email(session, notify_settings, new_user(url), True)
