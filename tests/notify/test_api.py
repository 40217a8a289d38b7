"""The notifications routes on the whole app in process (FastAPI's TestClient, no Ray): a
webhook is registered once with its secret shown once, bad or unsafe addresses get 422 problem
documents, and each user sees only their own deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cluster.settings import Settings
from db.models import JobStatus
from deployments.api.security import create_access_token
from pipeline.notify import outbox
from tests.accounts.conftest import assert_problem, client_for
from tests.notify.conftest import Receiver, end_job, new_user, verify


@pytest.fixture
def api(notify_settings: Settings) -> Iterator[TestClient]:
    with client_for(notify_settings) as client:
        yield client


def signed_in(settings: Settings) -> tuple[uuid.UUID, dict[str, str]]:
    user_id = new_user(settings.resolved_database_url)
    token = create_access_token(settings, user_id, "user")
    return user_id, {"Authorization": f"Bearer {token}"}


def test_the_secret_is_shown_once(
    api: TestClient, notify_settings: Settings, receiver: Receiver
) -> None:
    _, auth = signed_in(notify_settings)

    created = api.put("/api/notifications/webhook", headers=auth, json={"url": receiver.url})

    assert created.status_code == 201, created.text
    assert created.json()["secret"].startswith("whsec_")
    shown = api.get("/api/notifications", headers=auth)
    assert shown.json() == {"webhook_url": receiver.url, "email": False}
    assert created.json()["secret"] not in shown.text
    assert api.delete("/api/notifications/webhook", headers=auth).status_code == 204
    assert api.get("/api/notifications", headers=auth).json()["webhook_url"] is None


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("not an address", "validation-error"),
        ("ftp://example.com/hook", "validation-error"),
        ("https://example.com/" + "a" * 2048, "validation-error"),
        ("https://10.0.0.1/hook", "unsafe-webhook"),
        ("https://169.254.169.254/latest/meta-data", "unsafe-webhook"),
        ("https://user:secret@93.184.215.14/hook", "unsafe-webhook"),
    ],
)
def test_bad_addresses_are_refused(
    api: TestClient, notify_settings: Settings, url: str, slug: str
) -> None:
    _, auth = signed_in(notify_settings)
    response = api.put("/api/notifications/webhook", headers=auth, json={"url": url})
    body = assert_problem(response, 422, slug)
    assert "secret" not in body["detail"]
    assert api.get("/api/notifications", headers=auth).json()["webhook_url"] is None


def test_deliveries_are_listed_for_their_owner_only(
    api: TestClient, notify_settings: Settings, receiver: Receiver
) -> None:
    owner_id, owner = signed_in(notify_settings)
    _, other = signed_in(notify_settings)
    created = api.put("/api/notifications/webhook", headers=owner, json={"url": receiver.url})
    end_job(notify_settings.resolved_database_url, owner_id, JobStatus.succeeded)

    outbox.deliver_due(notify_settings)

    [request] = receiver.requests
    assert verify(created.json()["secret"], request.headers["Studio-Signature"], request.body)
    listed = api.get("/api/notifications/deliveries", headers=owner).json()
    assert (listed["total"], listed["limit"], listed["offset"]) == (1, 20, 0)
    assert (listed["items"][0]["status_code"], listed["items"][0]["attempt"]) == (200, 1)
    assert api.get("/api/notifications/deliveries", headers=other).json()["total"] == 0
    assert api.get("/api/notifications/deliveries").status_code == 401


def test_email_without_smtp_is_unavailable(api: TestClient, notify_settings: Settings) -> None:
    _, auth = signed_in(notify_settings)
    response = api.put("/api/notifications/email", headers=auth, json={"enabled": True})
    assert_problem(response, 503, "mail-unavailable")
    response = api.put("/api/notifications/email", headers=auth, json={"enabled": "yes"})
    assert response.status_code == 422
