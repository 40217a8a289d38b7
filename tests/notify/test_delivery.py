"""Job notifications end to end below the API, on SQLite and PostgreSQL: a job ending through
the state machine queues them in its own transaction, `deliver_due` posts them signed over real
HTTP to a local receiver, retries a failing one with doubling delays, then gives up, and
records every attempt."""

from __future__ import annotations

import json
import socket
import time
import uuid
from itertools import pairwise

import pytest
from sqlmodel import select

from cluster.settings import Settings
from db.models import (
    Job,
    JobStatus,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    NotificationState,
    User,
)
from db.session import session_scope
from pipeline.accounts.deletion import delete_account
from pipeline.lifecycle import transition
from pipeline.notify import outbox, preferences
from pipeline.storage import open_storage
from tests.notify.conftest import Receiver, end_job, new_user, verify


def with_webhook(settings: Settings, url: str) -> tuple[uuid.UUID, str]:
    user_id = new_user(settings.resolved_database_url)
    with session_scope(settings.resolved_database_url) as session:
        secret = preferences.register_webhook(session, settings, user_id, url)
    return user_id, secret


def notifications(database_url: str, job_id: uuid.UUID) -> list[Notification]:
    with session_scope(database_url) as session:
        return list(session.exec(select(Notification).where(Notification.job_id == job_id)))


def deliveries(database_url: str, user_id: uuid.UUID) -> list[NotificationDelivery]:
    with session_scope(database_url) as session:
        return list(session.exec(preferences.deliveries(user_id)))


def test_a_finished_job_posts_one_signed_delivery(
    notify_settings: Settings, receiver: Receiver
) -> None:
    url = notify_settings.resolved_database_url
    user_id, secret = with_webhook(notify_settings, receiver.url)
    job_id = end_job(url, user_id, JobStatus.succeeded)

    outbox.deliver_due(notify_settings)
    outbox.deliver_due(notify_settings)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert verify(secret, request.headers["Studio-Signature"], request.body)
    assert not verify("whsec_other", request.headers["Studio-Signature"], request.body)
    body = json.loads(request.body)
    assert body["type"] == "job.succeeded"
    assert body["data"]["job"]["id"] == str(job_id)
    [delivery] = deliveries(url, user_id)
    assert (delivery.attempt, delivery.status_code, delivery.error) == (1, 200, None)
    [notification] = notifications(url, job_id)
    assert notification.state == NotificationState.delivered


def test_every_final_state_notifies_once_and_nothing_else_does(
    notify_settings: Settings, receiver: Receiver
) -> None:
    url = notify_settings.resolved_database_url
    user_id, _ = with_webhook(notify_settings, receiver.url)
    for final in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled):
        end_job(url, user_id, final)
    with session_scope(url) as session:
        paused = Job(user_id=user_id, type="render")
        session.add(paused)
        session.flush()
        transition(session, paused, JobStatus.running)
        transition(session, paused, JobStatus.paused)

    outbox.deliver_due(notify_settings)

    kinds = sorted(json.loads(r.body)["type"] for r in receiver.requests)
    assert kinds == ["job.cancelled", "job.failed", "job.succeeded"]
    assert notifications(url, paused.id) == []


def test_a_rolled_back_end_notifies_nothing(notify_settings: Settings, receiver: Receiver) -> None:
    url = notify_settings.resolved_database_url
    user_id, _ = with_webhook(notify_settings, receiver.url)
    with session_scope(url) as session:
        job = Job(user_id=user_id, type="render", status=JobStatus.running)
        session.add(job)
    with pytest.raises(RuntimeError), session_scope(url) as session:
        loaded = session.get(Job, job.id)
        assert loaded is not None
        transition(session, loaded, JobStatus.succeeded)
        raise RuntimeError("the transaction that ends the job fails")

    outbox.deliver_due(notify_settings)

    assert notifications(url, job.id) == []
    assert receiver.requests == []


def test_a_failing_receiver_is_retried_with_backoff_then_given_up(
    notify_settings: Settings, receiver: Receiver
) -> None:
    receiver.status = 500
    url = notify_settings.resolved_database_url
    user_id, _ = with_webhook(notify_settings, receiver.url)
    job_id = end_job(url, user_id, JobStatus.failed)

    deadline = time.monotonic() + 10
    while notifications(url, job_id)[0].state == NotificationState.pending:
        assert time.monotonic() < deadline, "the notification was never given up"
        outbox.deliver_due(notify_settings)
        time.sleep(0.02)
    time.sleep(2.0)  # more than the next delay would be: nothing more is sent
    outbox.deliver_due(notify_settings)

    assert len(receiver.requests) == notify_settings.notify_max_attempts == 4
    times = [r.at for r in receiver.requests]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    for gap, delay in zip(gaps, (0.2, 0.4, 0.8), strict=True):
        assert delay <= gap < delay + 1.0
    [notification] = notifications(url, job_id)
    assert notification.state == NotificationState.failed
    recorded = sorted(deliveries(url, user_id), key=lambda d: d.attempt)
    assert [(d.attempt, d.status_code) for d in recorded] == [(n, 500) for n in range(1, 5)]
    assert recorded[0].error == "the receiver answered 500"


def test_an_unreachable_receiver_is_recorded_with_its_error(
    notify_settings: Settings, receiver: Receiver
) -> None:
    url = notify_settings.resolved_database_url
    closed = receiver.url.replace("/hooks/studio", "").rsplit(":", 1)[0] + ":9/hooks"
    user_id, _ = with_webhook(notify_settings, closed)
    end_job(url, user_id, JobStatus.succeeded)

    outbox.deliver_due(notify_settings)

    [delivery] = deliveries(url, user_id)
    assert delivery.status_code is None
    assert delivery.error is not None and delivery.error.startswith("ConnectError")


def test_the_address_is_checked_again_before_each_delivery(
    notify_settings: Settings, receiver: Receiver
) -> None:
    """A webhook accepted under one rule (here: loopback allowed) is not posted to once the
    rule refuses it, as when a host name comes to resolve to a private address."""
    url = notify_settings.resolved_database_url
    user_id, _ = with_webhook(notify_settings, receiver.url)
    end_job(url, user_id, JobStatus.succeeded)
    production = notify_settings.model_copy(update={"notify_allow_loopback": False})

    outbox.deliver_due(production)

    assert receiver.requests == []
    [delivery] = deliveries(url, user_id)
    assert delivery.error == "a webhook address must start with https://"


def test_no_preference_means_no_notification(notify_settings: Settings) -> None:
    url = notify_settings.resolved_database_url
    job_id = end_job(url, new_user(url), JobStatus.succeeded)
    assert notifications(url, job_id) == []
    with session_scope(url) as session:
        user_id = new_user(url)
        session.add(NotificationPreference(user_id=user_id))
    assert notifications(url, end_job(url, user_id, JobStatus.succeeded)) == []


def test_deleting_the_account_forgets_the_webhook_and_its_notifications(
    notify_settings: Settings, receiver: Receiver
) -> None:
    url = notify_settings.resolved_database_url
    user_id, _ = with_webhook(notify_settings, receiver.url)
    job_id = end_job(url, user_id, JobStatus.succeeded)
    outbox.deliver_due(notify_settings)

    with session_scope(url) as session:
        user = session.get(User, user_id)
        assert user is not None
        delete_account(session, notify_settings, open_storage(notify_settings), user)

    with session_scope(url) as session:
        assert session.get(NotificationPreference, user_id) is None
    assert notifications(url, job_id) == []
    assert deliveries(url, user_id) == []


def test_the_post_keeps_the_host_name_it_was_given(
    notify_settings: Settings, receiver: Receiver
) -> None:
    """The request goes to the address checked, with the registered host name in `Host`."""
    if socket.getaddrinfo("localhost", 80, proto=socket.IPPROTO_TCP)[0][4][0] != "127.0.0.1":
        pytest.skip("localhost resolves to ::1 first here; the receiver listens on 127.0.0.1")
    url = notify_settings.resolved_database_url
    by_name = receiver.url.replace("127.0.0.1", "localhost")
    user_id, _ = with_webhook(notify_settings, by_name)
    end_job(url, user_id, JobStatus.succeeded)

    outbox.deliver_due(notify_settings)

    [request] = receiver.requests
    assert request.headers["Host"] == by_name.split("/")[2]
