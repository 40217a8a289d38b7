"""Stripe's webhook events applied by the billing domain, on SQLite and PostgreSQL, signed by the
fake Stripe with the real scheme: only a genuine, fresh event moves credits, and each once."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlmodel import col, select

from cluster.settings import Settings
from db.models import BillingEvent, LedgerEntry, Payment, User
from db.session import session_scope
from pipeline.ledger import billing
from pipeline.ledger.payments import WebhookRejected
from tests.billing.conftest import available, new_user
from tests.fakes.stripe import FakeStripe
from tests.ledger import assert_books_balance


def deliver(settings: Settings, fake: FakeStripe, event: dict[str, Any], **sign: Any) -> str:
    """What the studio's webhook does with a delivery of `event` signed by `fake`."""
    payload = json.dumps(event).encode()
    return billing.apply_webhook(settings, payload, fake.sign(payload, **sign))


def paid_topup(settings: Settings, fake: FakeStripe, user: User, credits: int) -> dict[str, Any]:
    """The `checkout.session.completed` event of a paid pack of `credits`."""
    checkout = billing.start_topup(settings, user, credits, key=f"order-{time.monotonic_ns()}")
    (event,) = fake.pay(checkout.id)
    return event


def test_a_forged_webhook_grants_nothing(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    event = paid_topup(billing_settings, fake_stripe, user, 500)

    with pytest.raises(WebhookRejected):
        deliver(billing_settings, fake_stripe, event, secret="whsec_someone_else")
    with pytest.raises(WebhookRejected):
        billing.apply_webhook(billing_settings, json.dumps(event).encode(), None)

    assert available(url, user.id) == 0


def test_a_tampered_webhook_grants_nothing(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    event = paid_topup(billing_settings, fake_stripe, user, 100)
    signature = fake_stripe.sign(json.dumps(event).encode())
    event["data"]["object"]["metadata"]["credits"] = "1000000"

    with pytest.raises(WebhookRejected):
        billing.apply_webhook(billing_settings, json.dumps(event).encode(), signature)

    assert available(url, user.id) == 0


def test_a_stale_webhook_grants_nothing(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    event = paid_topup(billing_settings, fake_stripe, user, 500)
    too_old = int(time.time()) - billing_settings.stripe_webhook_tolerance_s - 10

    with pytest.raises(WebhookRejected, match="tolerance"):
        deliver(billing_settings, fake_stripe, event, timestamp=too_old)

    assert available(url, user.id) == 0


def test_a_replayed_webhook_grants_once(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    event = paid_topup(billing_settings, fake_stripe, user, 500)

    first = deliver(billing_settings, fake_stripe, event)
    replay = deliver(billing_settings, fake_stripe, event)
    same_payment = fake_stripe.event(
        "checkout.session.async_payment_succeeded", event["data"]["object"]
    )
    other_event = deliver(billing_settings, fake_stripe, same_payment)

    assert first.startswith("granted 500")
    assert replay == "duplicate"
    assert other_event.endswith("already granted")
    assert available(url, user.id) == 500
    assert_books_balance(url, [user.id])


def test_concurrent_deliveries_grant_once(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    event = paid_topup(billing_settings, fake_stripe, user, 1000)

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(
            pool.map(lambda _: deliver(billing_settings, fake_stripe, event), range(20))
        )

    assert sum(o.startswith("granted") for o in outcomes) == 1
    assert outcomes.count("duplicate") == 19
    assert available(url, user.id) == 1000
    with session_scope(url) as session:
        assert (
            len(session.exec(select(BillingEvent).where(BillingEvent.id == event["id"])).all()) == 1
        )
        grants = session.exec(
            select(LedgerEntry).where(LedgerEntry.user_id == user.id, col(LedgerEntry.amount) > 0)
        ).all()
        assert len(grants) == 1


def test_an_unpaid_checkout_grants_nothing(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    event = paid_topup(billing_settings, fake_stripe, user, 500)
    event["data"]["object"]["payment_status"] = "unpaid"

    assert deliver(billing_settings, fake_stripe, event) == "not paid yet"

    assert available(url, user.id) == 0
    with session_scope(url) as session:
        assert session.exec(select(Payment).where(Payment.user_id == user.id)).all() == []


def test_an_event_of_another_kind_is_ignored(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    event = fake_stripe.event("customer.created", {"id": "cus_x", "object": "customer"})

    assert deliver(billing_settings, fake_stripe, event) == "ignored"
