"""Plans as Stripe subscriptions, on SQLite and PostgreSQL: each paid invoice grants the plan's
monthly credits once, a failed payment keeps the plan for the grace period and then drops it, a
cancelled plan ends with its paid period, and the free plan's grant comes every month."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from cluster.settings import Settings
from db.models import Payment, PaymentKind, Subscription, SubscriptionStatus, User
from db.session import session_scope
from db.types import utcnow
from pipeline.errors import Conflict, NotFound
from pipeline.ledger import billing
from pipeline.ledger.store import DatabaseLedger
from tests.billing.conftest import available, monthly_credits, new_user, plan_of
from tests.fakes.stripe import FakeStripe
from tests.ledger import assert_books_balance


def deliver(settings: Settings, fake: FakeStripe, event: dict[str, Any]) -> str:
    payload = json.dumps(event).encode()
    return billing.apply_webhook(settings, payload, fake.sign(payload))


def subscribe(settings: Settings, fake: FakeStripe, user: User, plan: str = "creator") -> str:
    """Subscribes the user through Checkout and delivers Stripe's events; the subscription id."""
    checkout = billing.start_subscription(settings, user, plan)
    for event in fake.pay(checkout.id):
        deliver(settings, fake, event)
    return str(fake.checkout_sessions[checkout.id]["subscription"])


def subscription_row(url: str, subscription_id: str) -> Subscription:
    with session_scope(url) as session:
        return session.exec(
            select(Subscription).where(Subscription.stripe_subscription_id == subscription_id)
        ).one()


def test_three_monthly_invoices_grant_three_times(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    subscription_id = subscribe(billing_settings, fake_stripe, user)
    for _ in range(2):
        renewal = fake_stripe.renew(subscription_id)
        deliver(billing_settings, fake_stripe, renewal)
    deliver(billing_settings, fake_stripe, renewal)

    assert available(url, user.id) == 3 * monthly_credits(url, "creator")
    assert plan_of(url, user.id) == "creator"
    with session_scope(url) as session:
        invoices = session.exec(select(Payment).where(Payment.user_id == user.id)).all()
    assert [p.kind for p in invoices] == [PaymentKind.subscription] * 3
    assert len({p.period_start for p in invoices}) == 3
    assert subscription_row(url, subscription_id).status == SubscriptionStatus.active
    assert_books_balance(url, [user.id])


def test_a_failed_payment_keeps_the_plan_for_the_grace_period_then_drops_it(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    subscription_id = subscribe(billing_settings, fake_stripe, user)
    granted = available(url, user.id)

    deliver(billing_settings, fake_stripe, fake_stripe.fail_renewal(subscription_id))
    grace = timedelta(seconds=billing_settings.billing_grace_period_s)
    billing.end_lapsed_plans(url, utcnow() + grace - timedelta(minutes=1))
    assert plan_of(url, user.id) == "creator"
    assert subscription_row(url, subscription_id).status == SubscriptionStatus.past_due

    billing.end_lapsed_plans(url, utcnow() + grace + timedelta(minutes=1))

    assert plan_of(url, user.id) == "free"
    assert subscription_row(url, subscription_id).status == SubscriptionStatus.ended
    assert available(url, user.id) == granted, "granted credits stay"


def test_a_payment_within_the_grace_period_keeps_the_plan(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    subscription_id = subscribe(billing_settings, fake_stripe, user)
    deliver(billing_settings, fake_stripe, fake_stripe.fail_renewal(subscription_id))

    deliver(billing_settings, fake_stripe, fake_stripe.renew(subscription_id))
    billing.end_lapsed_plans(url, utcnow() + timedelta(days=365))

    assert plan_of(url, user.id) == "creator"
    assert subscription_row(url, subscription_id).ends_at is None


def test_a_cancelled_plan_ends_with_its_paid_period(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    subscription_id = subscribe(billing_settings, fake_stripe, user)
    period_end = subscription_row(url, subscription_id).current_period_end
    assert period_end is not None

    deliver(billing_settings, fake_stripe, fake_stripe.cancel(subscription_id))
    billing.end_lapsed_plans(url, period_end - timedelta(minutes=1))
    assert plan_of(url, user.id) == "creator"

    billing.end_lapsed_plans(url, period_end + timedelta(minutes=1))
    assert plan_of(url, user.id) == "free"


def test_purchased_credits_survive_a_plan_change(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    checkout = billing.start_topup(billing_settings, user, 500, "pack-1")
    for event in fake_stripe.pay(checkout.id):
        deliver(billing_settings, fake_stripe, event)
    subscription_id = subscribe(billing_settings, fake_stripe, user, "studio")
    before = available(url, user.id)

    deliver(billing_settings, fake_stripe, fake_stripe.cancel(subscription_id))
    billing.end_lapsed_plans(url, utcnow() + timedelta(days=60))

    assert plan_of(url, user.id) == "free"
    assert before == 500 + monthly_credits(url, "studio")
    assert available(url, user.id) == before


def test_the_free_plans_grant_arrives_in_a_new_month(billing_settings: Settings) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    subscriber = new_user(url, plan_code="creator")
    free = monthly_credits(url, "free")
    now = utcnow()
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=1)

    for registered in (user, subscriber):  # as registration does
        key = billing.monthly_grant_key(registered.id, now)
        billing.grant(DatabaseLedger(url), registered.id, free, key, "monthly grant")
    billing.grant_free_plans(url, now)
    assert available(url, user.id) == free, "once per month"

    billing.sweep(billing_settings, next_month)
    billing.sweep(billing_settings, next_month + timedelta(days=3))

    assert available(url, user.id) == 2 * free
    assert available(url, subscriber.id) == free, "a paid plan is granted by its invoices"


def test_a_subscriber_changes_the_plan_in_the_portal(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    url = billing_settings.resolved_database_url
    user = new_user(url)
    with pytest.raises(NotFound):
        billing.open_portal(billing_settings, user)
    subscribe(billing_settings, fake_stripe, user)

    with pytest.raises(Conflict):
        billing.start_subscription(billing_settings, user, "studio")
    portal = billing.open_portal(billing_settings, user)

    assert portal.startswith(fake_stripe.url)
