"""The notification outbox: `enqueue` adds a row per channel the user chose in the transaction
that ends a job (a job whose end rolls back notifies nothing); `deliver_due` sends the due rows
after it, outside any job's transaction, and records every attempt. A failed attempt is retried
after `notify_backoff_s`, doubling each time, up to `notify_max_attempts`; then it is given up.

Rows are claimed with a compare-and-set on their due time, pushed back by a lease, so two
senders never post the same attempt.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy import update
from sqlmodel import Session, col, select

from cluster.settings import Settings
from db.models import (
    Job,
    JobStatus,
    Notification,
    NotificationChannel,
    NotificationDelivery,
    NotificationPreference,
    NotificationState,
    User,
)
from db.session import session_scope
from db.types import utcnow
from pipeline.mail import MailUnavailable, compose, send
from pipeline.notify import webhooks

log = logging.getLogger(__name__)
BATCH = 50
ERROR_LENGTH = 255
SUBJECTS = {
    JobStatus.succeeded: "Your job finished",
    JobStatus.failed: "Your job failed",
    JobStatus.cancelled: "Your job was cancelled",
}


def enqueue(session: Session, job: Job, event: JobStatus) -> None:
    """Queues the notifications of `job`'s end on the channels its owner chose; the caller
    commits (the job state machine does, with the job's end)."""
    preference = session.get(NotificationPreference, job.user_id)
    if preference is None:
        return
    channels = [NotificationChannel.webhook] if preference.webhook_url else []
    channels += [NotificationChannel.email] if preference.email else []
    for channel in channels:
        session.add(Notification(user_id=job.user_id, job_id=job.id, channel=channel, event=event))


def deliver_due(settings: Settings, now: datetime | None = None) -> int:
    """Sends up to `BATCH` due notifications; returns how many were attempted."""
    url = settings.resolved_database_url
    claimed = _claim(url, now or utcnow(), _lease(settings))
    for notification_id in claimed:
        try:
            _attempt(settings, notification_id)
        except Exception:
            log.exception("notification %s: the attempt was not recorded", notification_id)
    return len(claimed)


def _lease(settings: Settings) -> timedelta:
    return timedelta(seconds=2 * settings.notify_timeout_s + 60)


def _claim(url: str, now: datetime, lease: timedelta) -> list[uuid.UUID]:
    claimed = []
    with session_scope(url) as session:
        due = session.exec(
            select(Notification.id, Notification.next_attempt_at)
            .where(
                Notification.state == NotificationState.pending,
                col(Notification.next_attempt_at) <= now,
            )
            .order_by(col(Notification.next_attempt_at))
            .limit(BATCH)
        ).all()
        for notification_id, due_at in due:
            result = session.execute(
                update(Notification)
                .where(
                    col(Notification.id) == notification_id,
                    col(Notification.state) == NotificationState.pending,
                    col(Notification.next_attempt_at) == due_at,
                )
                .values(next_attempt_at=now + lease)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(notification_id)
    return claimed


def _attempt(settings: Settings, notification_id: uuid.UUID) -> None:
    url = settings.resolved_database_url
    with session_scope(url) as session:
        notification = session.get(Notification, notification_id)
        if notification is None:
            return
        job = session.get(Job, notification.job_id)
        preference = session.get(NotificationPreference, notification.user_id)
        user = session.get(User, notification.user_id)
    status_code, error = None, None
    try:
        if job is None or preference is None or user is None:
            error = "the job or the account is gone"
        elif notification.channel == NotificationChannel.webhook:
            status_code, error = _post(settings, notification, job, preference)
        else:
            _mail(settings, notification, job, user, preference)
    except (webhooks.UnsafeWebhook, MailUnavailable) as refused:
        error = refused.detail
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"
    _record(settings, notification, status_code, error)


def _post(
    settings: Settings, notification: Notification, job: Job, preference: NotificationPreference
) -> tuple[int | None, str | None]:
    if not preference.webhook_url or not preference.webhook_secret:
        return None, "no webhook is registered"
    body = json.dumps(payload(notification, job), separators=(",", ":")).encode()
    sent_at = int(utcnow().timestamp())
    status_code = webhooks.post(
        settings, preference.webhook_url, preference.webhook_secret, body, sent_at
    )
    return status_code, None if 200 <= status_code < 300 else f"the receiver answered {status_code}"


def payload(notification: Notification, job: Job) -> dict[str, object]:
    """The JSON a webhook receives: the event, and the job as the jobs API shows its state."""
    return {
        "id": str(notification.id),
        "type": f"job.{notification.event}",
        "created_at": notification.created_at.isoformat(),
        "data": {
            "job": {
                "id": str(job.id),
                "type": job.type,
                "status": str(job.status),
                "project_id": str(job.project_id) if job.project_id else None,
                "error": job.error,
                "completed_at": job.completed_at.isoformat() if job.completed_at else None,
            }
        },
    }


def _mail(
    settings: Settings,
    notification: Notification,
    job: Job,
    user: User,
    preference: NotificationPreference,
) -> None:
    if not preference.email:
        raise MailUnavailable("email notifications were turned off")
    event = JobStatus(notification.event)
    lines = [f"Your {job.type} job {job.id} {event.value}."]
    if job.error and event == JobStatus.failed:
        lines.append(f"Reason: {job.error}")
    send(settings, compose(settings, user.email, SUBJECTS[event], "\n".join(lines)))


def _record(
    settings: Settings, notification: Notification, status_code: int | None, error: str | None
) -> None:
    attempt = notification.attempts + 1
    now = utcnow()
    values: dict[str, object] = {"attempts": attempt}
    if error is None:
        values["state"] = NotificationState.delivered
    elif attempt >= settings.notify_max_attempts:
        values["state"] = NotificationState.failed
    else:
        delay = settings.notify_backoff_s * 2 ** (attempt - 1)
        values["next_attempt_at"] = now + timedelta(seconds=delay)
    with session_scope(settings.resolved_database_url) as session:
        session.execute(
            update(Notification).where(col(Notification.id) == notification.id).values(**values)
        )
        session.add(
            NotificationDelivery(
                notification_id=notification.id,
                user_id=notification.user_id,
                attempt=attempt,
                status_code=status_code,
                error=error[:ERROR_LENGTH] if error else None,
                created_at=now,
            )
        )
    if error is not None:
        log.warning("notification %s attempt %d failed: %s", notification.id, attempt, error)
