"""Billing over real HTTP (the ingress on Ray Serve, SQLite and PostgreSQL) against the fake
Stripe: a top-up from Checkout to the signed webhook, webhooks that must grant nothing, 20
concurrent deliveries, a subscription's invoices, the history, invoices and the admin refund."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlmodel import select

from db.models import AuditLog
from db.session import session_scope
from pipeline.ledger import store
from tests.api.conftest import Account, Api, assert_problem, insert_job
from tests.billing.conftest import monthly_credits, webhook_url
from tests.fakes.stripe import FakeStripe

pytestmark = pytest.mark.ray


def available(client: httpx.Client, account: Account) -> int:
    return int(client.get("/api/credits/balance", headers=account.auth).json()["available"])


def topup(client: httpx.Client, account: Account, credits: int, key: str) -> dict[str, Any]:
    response = client.post(
        "/api/credits/topup",
        headers={**account.auth, "Idempotency-Key": key},
        json={"credits": credits},
    )
    assert response.status_code == 200, response.text
    checkout: dict[str, Any] = response.json()
    return checkout


def pay(api: Api, fake: FakeStripe, checkout_id: str) -> list[httpx.Response]:
    """The user pays at Stripe; Stripe delivers its events to the studio."""
    return [fake.deliver(webhook_url(api), event) for event in fake.pay(checkout_id)]


def spend(api: Api, account: Account, credits: int) -> None:
    """A finished job that used `credits`."""
    job = insert_job(api, account.id)
    reservation = store.reserve(api.database_url, account.id, credits, f"job:{job.id}", job.id)
    store.capture(api.database_url, reservation.id, credits)


def test_a_topup_through_http_end_to_end(
    billing_api: Api, client: httpx.Client, account: Account, fake_stripe: FakeStripe
) -> None:
    before = available(client, account)

    checkout = topup(client, account, 500, "pack-1")
    assert checkout["url"].startswith(fake_stripe.url)
    assert available(client, account) == before, "a checkout alone grants nothing"
    (delivery,) = pay(billing_api, fake_stripe, checkout["id"])

    assert delivery.status_code == 200, delivery.text
    assert delivery.json()["outcome"].startswith("granted 500")
    assert available(client, account) == before + 500
    (payment,) = client.get("/api/billing/invoices", headers=account.auth).json()["items"]
    assert (payment["kind"], payment["credits"], payment["amount_cents"]) == ("topup", 500, 500)


def test_forged_stale_and_replayed_webhooks_grant_nothing(
    billing_api: Api, client: httpx.Client, account: Account, fake_stripe: FakeStripe
) -> None:
    before = available(client, account)
    (event,) = fake_stripe.pay(topup(client, account, 100, "pack-2")["id"])
    url = webhook_url(billing_api)
    tampered = dict(event, data={"object": {**event["data"]["object"], "metadata": {}}})

    forged = fake_stripe.deliver(url, event, secret="whsec_not_the_studios")
    stale = fake_stripe.deliver(url, event, timestamp=1_700_000_000)
    altered = fake_stripe.deliver(url, event, payload=json.dumps(tampered).encode())
    unsigned = httpx.post(url, json=event)
    genuine = fake_stripe.deliver(url, event)
    replayed = fake_stripe.deliver(url, event)

    for rejected in (forged, stale, altered, unsigned):
        assert_problem(rejected, 400, "webhook-rejected")
    assert genuine.json()["outcome"].startswith("granted 100")
    assert replayed.json()["outcome"] == "duplicate"
    assert available(client, account) == before + 100


def test_twenty_concurrent_deliveries_grant_once(
    billing_api: Api, client: httpx.Client, account: Account, fake_stripe: FakeStripe
) -> None:
    before = available(client, account)
    (event,) = fake_stripe.pay(topup(client, account, 1000, "pack-3")["id"])

    with ThreadPoolExecutor(20) as pool:
        deliveries = list(
            pool.map(lambda _: fake_stripe.deliver(webhook_url(billing_api), event), range(20))
        )

    assert [d.status_code for d in deliveries] == [200] * 20
    outcomes = [d.json()["outcome"] for d in deliveries]
    assert sum(o.startswith("granted") for o in outcomes) == 1
    assert outcomes.count("duplicate") == 19
    assert available(client, account) == before + 1000


def test_a_subscription_through_three_monthly_invoices_grants_three_times(
    billing_api: Api, client: httpx.Client, account: Account, fake_stripe: FakeStripe
) -> None:
    before = available(client, account)
    response = client.post("/api/billing/subscribe", headers=account.auth, json={"plan": "creator"})
    assert response.status_code == 200, response.text
    checkout_id = response.json()["id"]
    pay(billing_api, fake_stripe, checkout_id)
    subscription = fake_stripe.checkout_sessions[checkout_id]["subscription"]
    for _ in range(2):
        fake_stripe.deliver(webhook_url(billing_api), fake_stripe.renew(subscription))

    creator = monthly_credits(billing_api.database_url, "creator")
    assert available(client, account) == before + 3 * creator
    invoices = client.get("/api/billing/invoices", headers=account.auth).json()
    assert invoices["total"] == 3
    assert {i["plan_code"] for i in invoices["items"]} == {"creator"}
    again = client.post("/api/billing/subscribe", headers=account.auth, json={"plan": "studio"})
    assert_problem(again, 409, "conflict")
    portal = client.post("/api/billing/portal", headers=account.auth)
    assert portal.json()["url"].startswith(fake_stripe.url)


def test_the_history_shows_every_movement_with_its_job_or_payment(
    billing_api: Api, client: httpx.Client, account: Account, fake_stripe: FakeStripe
) -> None:
    pay(billing_api, fake_stripe, topup(client, account, 50, "pack-4")["id"])
    spend(billing_api, account, 30)

    response = client.get("/api/credits/history?limit=100", headers=account.auth)

    assert response.status_code == 200, response.text
    entries = response.json()["items"]
    kinds = {(e["kind"], e["account"]) for e in entries}
    assert {("grant", "available"), ("topup", "available"), ("reserve", "available")} <= kinds
    assert {("reserve", "held"), ("capture", "held")} <= kinds
    (bought,) = [e for e in entries if e["kind"] == "topup"]
    assert bought["payment"].startswith("pi_") and bought["amount"] == 50
    assert all(e["job_id"] for e in entries if e["kind"] in ("reserve", "capture"))
    page = client.get("/api/credits/history?limit=1&offset=1", headers=account.auth).json()
    assert page["total"] == len(entries) and page["items"] == entries[1:2]


def test_an_admin_refund_takes_back_what_is_left_and_reports_what_was_spent(
    billing_api: Api,
    client: httpx.Client,
    account: Account,
    admin: Account,
    fake_stripe: FakeStripe,
) -> None:
    pay(billing_api, fake_stripe, topup(client, account, 500, "pack-5")["id"])
    left = 100
    spend(billing_api, account, available(client, account) - left)
    (payment,) = client.get("/api/billing/invoices", headers=account.auth).json()["items"]
    path = f"/api/admin/payments/{payment['id']}/refund"

    assert_problem(client.post(path, headers=account.auth), 403, "forbidden")
    response = client.post(path, headers=admin.auth)

    assert response.status_code == 200, response.text
    refund = response.json()
    assert (refund["credits_reversed"], refund["credits_spent"]) == (left, 500 - left)
    assert refund["amount_cents"] == 500 and refund["refund_id"] in fake_stripe.refunds
    assert available(client, account) == 0, "never below zero"
    assert_problem(client.post(path, headers=admin.auth), 409, "conflict")
    with session_scope(billing_api.database_url) as session:
        (audit,) = session.exec(
            select(AuditLog).where(
                AuditLog.action == "payment.refunded", AuditLog.target_id == payment["id"]
            )
        ).all()
    assert audit.actor_id == admin.id
    assert audit.detail["credits_spent"] == 500 - left
    (refunded,) = client.get("/api/billing/invoices", headers=account.auth).json()["items"]
    assert (refunded["status"], refunded["refunded_credits"]) == ("refunded", left)
