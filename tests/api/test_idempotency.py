"""Idempotency-Key: a retried purchase or render is answered, not repeated."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import select

from db.models import IdempotencyRecord
from db.session import session_scope
from tests.api.conftest import Account, Api, assert_problem, create_project
from tests.fakes.stripe import FakeStripe

pytestmark = pytest.mark.ray


def topup(client: httpx.Client, account: Account, key: str, credits: int) -> httpx.Response:
    return client.post(
        "/api/credits/topup",
        headers={**account.auth, "Idempotency-Key": key},
        json={"credits": credits},
    )


def available(client: httpx.Client, account: Account) -> int:
    return int(client.get("/api/credits/balance", headers=account.auth).json()["available"])


def pay(api: Api, fake: FakeStripe, checkout: httpx.Response) -> None:
    """The user pays the Checkout Session; Stripe's signed event reaches the studio."""
    for event in fake.pay(checkout.json()["id"]):
        fake.deliver(f"{api.url}/api/billing/webhook", event)


def test_a_replay_returns_the_first_response(
    api: Api, client: httpx.Client, account: Account, fake_stripe: FakeStripe
) -> None:
    before = available(client, account)

    first = topup(client, account, "topup-1", 100)
    replay = topup(client, account, "topup-1", 100)
    pay(api, fake_stripe, first)

    assert first.status_code == 200, first.text
    assert replay.status_code == 200
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert available(client, account) == before + 100


def test_the_same_key_with_another_body_is_refused(client: httpx.Client, account: Account) -> None:
    topup(client, account, "topup-2", 100)

    response = topup(client, account, "topup-2", 999)

    assert_problem(response, 422, "idempotency-key-reused")


def test_a_duplicate_while_the_first_is_in_progress_conflicts(
    api: Api, client: httpx.Client, account: Account
) -> None:
    topup(client, account, "topup-3", 100)
    with session_scope(api.database_url) as session:
        record = session.exec(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == account.id, IdempotencyRecord.key == "topup-3"
            )
        ).one()
        record.status_code, record.response = None, None
        session.add(record)

    response = topup(client, account, "topup-3", 100)

    assert_problem(response, 409, "idempotency-in-progress")
    assert response.headers["retry-after"] == "1"


def test_concurrent_duplicates_spend_once(
    api: Api, client: httpx.Client, account: Account, fake_stripe: FakeStripe
) -> None:
    before = available(client, account)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: topup(client, account, "topup-5", 50), range(4)))
    for checkout in {r.json()["id"]: r for r in responses if r.status_code == 200}.values():
        pay(api, fake_stripe, checkout)

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 409}
    assert available(client, account) == before + 50


def test_the_key_is_required_for_a_purchase(client: httpx.Client, account: Account) -> None:
    response = client.post("/api/credits/topup", headers=account.auth, json={"credits": 10})

    body = assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_a_replayed_render_is_the_same_job(client: httpx.Client, account: Account) -> None:
    project = create_project(client, account)
    headers = {**account.auth, "Idempotency-Key": "render-1"}

    first = client.post(f"/api/projects/{project['id']}/render", headers=headers, json={})
    replay = client.post(f"/api/projects/{project['id']}/render", headers=headers, json={})

    assert first.status_code == 202, first.text
    assert replay.status_code == 202
    assert replay.json()["id"] == first.json()["id"]
    jobs = client.get("/api/jobs", headers=account.auth).json()
    assert jobs["total"] == 1
