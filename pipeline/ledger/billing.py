"""Billing: purchases through Stripe and what the studio does with Stripe's signed word.

A purchase (a credit pack, a plan) is a Checkout Session (`start_topup`, `start_subscription`);
plans are changed and cancelled in Stripe's Customer Portal (`open_portal`). Credits move only
when a verified webhook event says money was taken (`apply_webhook`):

- `checkout.session.completed` for a paid credit pack grants its credits (kind `topup`);
- `invoice.paid` grants the plan's monthly credits once per invoice (kind `grant`) and puts
  the user on the plan; `invoice.payment_failed` starts a grace period;
  `customer.subscription.deleted` ends the plan at the end of the paid period.

Each event is applied once: its id is written to `billing_events` in the transaction that
applies it, so a redelivery (or 20 at once) finds the row and changes nothing; the ledger key
of each grant is the payment's Stripe id (PaymentIntent or invoice), so the same payment
reported by two events is granted once too. The periodic `sweep` drops plans whose grace
period or paid period is over and gives the free plan's monthly grant, once per user and
calendar month. Every credit movement of billing goes through `grant`, the one ledger call.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, desc, select
from sqlmodel.sql.expression import SelectOfScalar

from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import (
    AuditLog,
    BillingCustomer,
    BillingEvent,
    LedgerEntry,
    LedgerKind,
    Payment,
    PaymentKind,
    PaymentStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
    User,
)
from db.session import get_engine, session_scope
from db.types import utcnow
from pipeline.errors import Conflict, InsufficientCredits, NotFound
from pipeline.ledger.interface import Ledger
from pipeline.ledger.payments import Checkout, Stripe
from pipeline.ledger.rules import CreditReceipt, available_account, held_account
from pipeline.ledger.store import DatabaseLedger

log = logging.getLogger(__name__)

FREE_PLAN = "free"
STRIPE_ID_PREFIXES = ("pi_", "in_", "re_", "cs_")
"""Ledger keys that are Stripe ids: the payment (or refund) a credit movement came from."""
LIVE = (SubscriptionStatus.incomplete, SubscriptionStatus.active, SubscriptionStatus.past_due)


class PlanNotForSale(StudioError):
    slug, status, title = "plan-not-for-sale", 422, "This plan cannot be bought"


def grant(
    ledger: Ledger,
    user_id: uuid.UUID,
    credits: int,
    key: str,
    reason: str,
    kind: LedgerKind = LedgerKind.grant,
) -> CreditReceipt:
    """Billing's one ledger call: adds `credits` (takes them back when negative, as an
    adjustment, never below zero), once per user and `key`."""
    return ledger.credit(user_id, credits, kind, key, created_by="billing", memo=reason)


# -- purchases -------------------------------------------------------------------------------


def start_topup(settings: Settings, user: User, credits: int, key: str) -> Checkout:
    """A Checkout Session for the pack of `credits`; the same `key` returns the same session.
    Nothing is granted until Stripe's webhook reports the payment."""
    stripe = Stripe(settings)
    stripe.pack_price(credits)
    customer = _customer(settings, stripe, user)
    return stripe.checkout_credit_pack(user.id, customer, credits, f"topup:{user.id}:{key}")


def start_subscription(settings: Settings, user: User, plan_code: str) -> Checkout:
    """A Checkout Session subscribing the user to a plan. A user who already has a plan
    changes or cancels it in the Customer Portal instead (409)."""
    stripe = Stripe(settings)
    if stripe.plan_prices.get(plan_code) is None:
        raise PlanNotForSale(f"the {plan_code!r} plan cannot be bought", plan=plan_code)
    with session_scope(settings.resolved_database_url) as session:
        current = _live_subscription(session, user.id)
    if current is not None:
        raise Conflict(
            f"you are subscribed to the {current.plan_code} plan: change or cancel it in the "
            "billing portal (POST /api/billing/portal)"
        )
    customer = _customer(settings, stripe, user)
    return stripe.checkout_plan(user.id, customer, plan_code)


def open_portal(settings: Settings, user: User) -> str:
    """The URL of a Customer Portal session for the user's Stripe customer."""
    stripe = Stripe(settings)
    with session_scope(settings.resolved_database_url) as session:
        row = session.get(BillingCustomer, user.id)
    if row is None:
        raise NotFound("no billing account yet: buy credits or a plan first")
    return stripe.portal(row.customer_id)


def _customer(settings: Settings, stripe: Stripe, user: User) -> str:
    """The user's Stripe customer, created at the first purchase (a retry or a concurrent
    purchase gets the same one: Stripe's idempotency key and the table's primary key)."""
    url = settings.resolved_database_url
    with session_scope(url) as session:
        row = session.get(BillingCustomer, user.id)
    if row is not None:
        return row.customer_id
    customer_id = stripe.create_customer(user.id, user.email)
    try:
        with session_scope(url) as session:
            session.add(BillingCustomer(user_id=user.id, customer_id=customer_id))
    except IntegrityError:
        pass
    return customer_id


def _live_subscription(session: Session, user_id: uuid.UUID) -> Subscription | None:
    return session.exec(
        select(Subscription).where(
            Subscription.user_id == user_id, col(Subscription.status).in_(LIVE)
        )
    ).first()


# -- webhook events --------------------------------------------------------------------------


@dataclass
class _Event:
    session: Session
    settings: Settings
    stripe: Stripe
    now: datetime


Handler = Callable[[_Event, dict[str, Any]], str]


def apply_webhook(
    settings: Settings, payload: bytes, signature: str | None, now: datetime | None = None
) -> str:
    """Verifies a webhook delivery (`WebhookRejected` if it is not Stripe's, or too old) and
    applies its event once; returns what was done."""
    stripe = Stripe(settings)
    event = stripe.verify(payload, signature)
    handler = _HANDLERS.get(event.get("type", ""))
    if handler is None:
        return "ignored"
    try:
        with _writing(settings.resolved_database_url) as session:
            record = BillingEvent(id=event["id"], type=event["type"], outcome="applying")
            session.add(record)
            session.flush()
            record.outcome = handler(
                _Event(session, settings, stripe, now or utcnow()), event["data"]["object"]
            )[:200]
            outcome = record.outcome
    except IntegrityError:
        return "duplicate"
    log.info("stripe event %s (%s): %s", event["id"], event["type"], outcome)
    return outcome


@contextmanager
def _writing(url: str) -> Iterator[Session]:
    """A session that commits on success; on SQLite it takes the write lock first (`BEGIN
    IMMEDIATE`), so that concurrent deliveries queue instead of failing to upgrade a read."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            if session.connection().dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _checkout_completed(event: _Event, checkout: dict[str, Any]) -> str:
    metadata = checkout.get("metadata") or {}
    user_id = _user_id(metadata)
    if user_id is None or event.session.get(User, user_id) is None:
        return "ignored: no such user"
    if checkout.get("mode") == "subscription":
        subscription_id = checkout.get("subscription")
        plan = _plan(event.session, metadata.get("plan"))
        if not subscription_id or plan is None:
            return "ignored: no subscription"
        _subscription_row(event, subscription_id, user_id, plan.code, checkout.get("customer"))
        return f"subscription {subscription_id} started"
    if checkout.get("payment_status") != "paid":
        return "not paid yet"
    payment_id = checkout.get("payment_intent") or checkout["id"]
    credits = int(metadata.get("credits", 0))
    if credits <= 0:
        return "ignored: no credits"
    if _payment(event.session, payment_id) is not None:
        return f"{payment_id} already granted"
    grant(
        DatabaseLedger(event.session),
        user_id,
        credits,
        payment_id,
        f"top-up {payment_id}",
        LedgerKind.topup,
    )
    event.session.add(
        Payment(
            user_id=user_id,
            kind=PaymentKind.topup,
            stripe_id=payment_id,
            payment_intent=checkout.get("payment_intent"),
            credits=credits,
            amount_cents=checkout.get("amount_total") or 0,
            currency=checkout.get("currency") or "usd",
        )
    )
    return f"granted {credits} credits for {payment_id}"


def _invoice_paid(event: _Event, invoice: dict[str, Any]) -> str:
    subscription_id, metadata = _invoice_subscription(invoice)
    if subscription_id is None:
        return "ignored: not a subscription invoice"
    row = _subscription(event.session, subscription_id)
    user_id = row.user_id if row is not None else _user_id(metadata)
    lines = (invoice.get("lines") or {}).get("data") or []
    if not lines:
        return "ignored: an invoice without lines"
    line = lines[0]
    price = ((line.get("pricing") or {}).get("price_details") or {}).get("price")
    plan_code = (
        event.stripe.plan_of_price(price)
        or metadata.get("plan")
        or (row.plan_code if row is not None else None)
    )
    plan = _plan(event.session, plan_code)
    user = event.session.get(User, user_id) if user_id is not None else None
    if plan is None or user is None:
        return "ignored: unknown plan or user"
    if _payment(event.session, invoice["id"]) is not None:
        return f"{invoice['id']} already granted"
    if plan.monthly_credits > 0:
        reason = f"{plan.code} plan, invoice {invoice['id']}"
        grant(DatabaseLedger(event.session), user.id, plan.monthly_credits, invoice["id"], reason)
    period_start, period_end = (_time(line["period"][edge]) for edge in ("start", "end"))
    row = _subscription_row(event, subscription_id, user.id, plan.code, invoice.get("customer"))
    row.plan_code = plan.code
    row.status = SubscriptionStatus.active
    row.current_period_start, row.current_period_end = period_start, period_end
    row.ends_at = None
    row.last_grant_at = event.now
    user.plan_code = plan.code
    user.updated_at = event.now
    event.session.add(user)
    event.session.add(
        Payment(
            user_id=user.id,
            kind=PaymentKind.subscription,
            stripe_id=invoice["id"],
            plan_code=plan.code,
            credits=plan.monthly_credits,
            amount_cents=invoice.get("amount_paid") or 0,
            currency=invoice.get("currency") or "usd",
            period_start=period_start,
            period_end=period_end,
        )
    )
    return f"granted {plan.monthly_credits} credits for {invoice['id']}"


def _invoice_failed(event: _Event, invoice: dict[str, Any]) -> str:
    subscription_id, _ = _invoice_subscription(invoice)
    row = _subscription(event.session, subscription_id) if subscription_id else None
    if row is None:
        return "ignored: unknown subscription"
    if row.status != SubscriptionStatus.past_due:
        row.status = SubscriptionStatus.past_due
        row.ends_at = event.now + timedelta(seconds=event.settings.billing_grace_period_s)
        row.updated_at = event.now
        event.session.add(row)
    return f"{subscription_id} past due, plan kept until {row.ends_at}"


def _subscription_updated(event: _Event, subscription: dict[str, Any]) -> str:
    row = _subscription(event.session, subscription["id"])
    if row is None:
        return "ignored: unknown subscription"
    row.cancel_at_period_end = bool(subscription.get("cancel_at_period_end"))
    row.updated_at = event.now
    event.session.add(row)
    return f"{subscription['id']} cancel at period end: {row.cancel_at_period_end}"


def _subscription_deleted(event: _Event, subscription: dict[str, Any]) -> str:
    row = _subscription(event.session, subscription["id"])
    if row is None:
        return "ignored: unknown subscription"
    row.status = SubscriptionStatus.canceled
    row.ends_at = max(event.now, row.current_period_end or event.now)
    row.updated_at = event.now
    event.session.add(row)
    if row.ends_at <= event.now:
        _end_plan(event.session, row, event.now)
    return f"{subscription['id']} ends at {row.ends_at}"


_HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _checkout_completed,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_failed,
    "customer.subscription.updated": _subscription_updated,
    "customer.subscription.deleted": _subscription_deleted,
}


def _invoice_subscription(invoice: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details.get("subscription"), details.get("metadata") or {}


def _user_id(metadata: dict[str, str]) -> uuid.UUID | None:
    try:
        return uuid.UUID(metadata["user_id"])
    except (KeyError, ValueError):
        return None


def _plan(session: Session, plan_code: str | None) -> Plan | None:
    return session.exec(select(Plan).where(Plan.code == plan_code)).first()


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _payment(session: Session, stripe_id: str) -> Payment | None:
    return session.exec(select(Payment).where(Payment.stripe_id == stripe_id)).first()


def _subscription(session: Session, subscription_id: str) -> Subscription | None:
    return session.exec(
        select(Subscription).where(Subscription.stripe_subscription_id == subscription_id)
    ).first()


def _subscription_row(
    event: _Event,
    subscription_id: str,
    user_id: uuid.UUID,
    plan_code: str,
    customer: str | None,
) -> Subscription:
    row = _subscription(event.session, subscription_id)
    if row is None:
        row = Subscription(
            user_id=user_id,
            plan_code=plan_code,
            status=SubscriptionStatus.incomplete,
            stripe_subscription_id=subscription_id,
        )
    row.stripe_customer_id = customer or row.stripe_customer_id
    row.updated_at = event.now
    event.session.add(row)
    return row


def _end_plan(session: Session, row: Subscription, now: datetime) -> None:
    """The subscription is over: the user is back on the free plan (purchased and granted
    credits stay where they are)."""
    row.status = SubscriptionStatus.ended
    row.updated_at = now
    session.add(row)
    user = session.get(User, row.user_id)
    if user is not None and user.plan_code == row.plan_code:
        user.plan_code = FREE_PLAN
        user.updated_at = now
        session.add(user)


# -- the periodic sweep ----------------------------------------------------------------------

_last_sweep: dict[str, float] = {}


def sweep_when_due(settings: Settings) -> None:
    """`sweep`, at most once per `billing_sweep_interval_s` in this process: the scheduler
    calls it on every pass of its loop."""
    url = settings.resolved_database_url
    if time.monotonic() - _last_sweep.get(url, -math.inf) < settings.billing_sweep_interval_s:
        return
    _last_sweep[url] = time.monotonic()
    sweep(settings)


def sweep(settings: Settings, now: datetime | None = None) -> tuple[int, int]:
    """Ends the plans that are over, then gives the free plan's monthly grants; returns how
    many of each."""
    now = now or utcnow()
    url = settings.resolved_database_url
    return end_lapsed_plans(url, now), grant_free_plans(url, now)


def end_lapsed_plans(database_url: str, now: datetime) -> int:
    """Moves to the free plan every user whose grace period (after a failed payment) or paid
    period (after a cancellation) ended by `now`."""
    with _writing(database_url) as session:
        lapsed = session.exec(
            select(Subscription).where(
                col(Subscription.status).in_(
                    [SubscriptionStatus.past_due, SubscriptionStatus.canceled]
                ),
                col(Subscription.ends_at) <= now,
            )
        ).all()
        for row in lapsed:
            _end_plan(session, row, now)
    return len(lapsed)


def monthly_grant_key(user_id: uuid.UUID, now: datetime) -> str:
    """The key of a plan's calendar-month grant (the registration grant uses it too)."""
    return f"grant:{user_id}:{now.strftime('%Y-%m')}"


def grant_free_plans(database_url: str, now: datetime) -> int:
    """The monthly credits of every active user on a free plan (price 0) who has had a
    monthly grant before (registration gives the first) but not yet in this calendar month;
    returns how many users were granted."""
    month = now.strftime("%Y-%m")
    with session_scope(database_url) as session:
        users = dict(
            session.exec(
                select(User.id, Plan.monthly_credits)
                .join(Plan, col(Plan.code) == col(User.plan_code))
                .where(col(User.is_active), Plan.price_cents == 0, Plan.monthly_credits > 0)
            ).all()
        )
        granted = select(LedgerEntry.user_id).where(
            LedgerEntry.kind == LedgerKind.grant, col(LedgerEntry.account).like("user:%")
        )
        before = set(
            session.exec(granted.where(col(LedgerEntry.idempotency_key).like("credit:grant:%")))
        )
        this_month = set(
            session.exec(
                granted.where(col(LedgerEntry.idempotency_key).like(f"credit:grant:%:{month}"))
            )
        )
    count = 0
    for user_id in sorted(before - this_month, key=str):
        if user_id not in users:
            continue
        key = monthly_grant_key(user_id, now)
        try:
            grant(DatabaseLedger(database_url), user_id, users[user_id], key, "monthly grant")
            count += 1
        except (Conflict, NotFound) as e:
            log.info("no monthly grant for %s: %s", user_id, e)
    return count


# -- history, invoices, refunds --------------------------------------------------------------


def history(user_id: uuid.UUID) -> SelectOfScalar[LedgerEntry]:
    """The user's ledger entries (on their available and held accounts), newest first."""
    accounts = [available_account(user_id), held_account(user_id)]
    return (
        select(LedgerEntry)
        .where(col(LedgerEntry.account).in_(accounts))
        .order_by(desc(col(LedgerEntry.created_at)), col(LedgerEntry.id))
    )


def payment_of(entry: LedgerEntry) -> str | None:
    """The Stripe payment (or refund) a ledger entry came from, if any: its ledger key."""
    key = (entry.idempotency_key or "").removeprefix("credit:")
    return key if key.startswith(STRIPE_ID_PREFIXES) else None


def payments(user_id: uuid.UUID) -> SelectOfScalar[Payment]:
    """What the user paid (top-ups and subscription invoices), newest first."""
    return (
        select(Payment)
        .where(Payment.user_id == user_id)
        .order_by(desc(col(Payment.created_at)), col(Payment.id))
    )


@dataclass(frozen=True)
class Refund:
    refund_id: str
    amount_cents: int
    credits_reversed: int
    credits_spent: int
    """Credits of the payment already spent (or otherwise gone) that could not be taken back."""


def refund(settings: Settings, admin: User, payment_id: uuid.UUID, ip: str | None) -> Refund:
    """Refunds a top-up in full at Stripe and takes its credits back, as far as the balance
    allows: what was already spent is reported, never taken below zero. Audited; the payment
    row is locked throughout, so a double click refunds once."""
    stripe = Stripe(settings)
    with _writing(settings.resolved_database_url) as session:
        payment = session.exec(
            select(Payment).where(Payment.id == payment_id).with_for_update()
        ).first()
        if payment is None:
            raise NotFound(f"payment {payment_id} not found")
        if payment.status == PaymentStatus.refunded:
            raise Conflict(f"payment {payment_id} is already refunded", refund_id=payment.refund_id)
        if payment.payment_intent is None:
            raise Conflict("a subscription invoice is refunded from Stripe's dashboard")
        refund_id, amount = stripe.refund(payment.payment_intent, f"refund:{payment.id}")
        reversed_ = _take_back(session, payment, refund_id)
        payment.status = PaymentStatus.refunded
        payment.refund_id = refund_id
        payment.refunded_credits = reversed_
        session.add(payment)
        result = Refund(refund_id, amount, reversed_, payment.credits - reversed_)
        session.add(
            AuditLog(
                actor_id=admin.id,
                action="payment.refunded",
                target_type="payment",
                target_id=str(payment.id),
                detail={
                    "user_id": str(payment.user_id),
                    "stripe_id": payment.stripe_id,
                    "refund_id": refund_id,
                    "amount_cents": amount,
                    "credits_reversed": reversed_,
                    "credits_spent": result.credits_spent,
                },
                ip=ip,
            )
        )
    return result


def _take_back(session: Session, payment: Payment, refund_id: str) -> int:
    """Takes back the payment's credits, or what is left of them; returns how many."""
    if payment.user_id is None:
        return 0
    reason = f"refund {refund_id} of {payment.stripe_id}"
    try:
        grant(
            DatabaseLedger(session),
            payment.user_id,
            -payment.credits,
            refund_id,
            reason,
            LedgerKind.adjustment,
        )
        return payment.credits
    except InsufficientCredits as short:
        available = int(short.extra.get("available", 0))
    if available > 0:
        grant(
            DatabaseLedger(session),
            payment.user_id,
            -available,
            refund_id,
            reason,
            LedgerKind.adjustment,
        )
    return available
