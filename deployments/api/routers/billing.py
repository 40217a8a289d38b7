"""Billing: plans bought as Stripe subscriptions, the Customer Portal, what the user paid, the
webhook that Stripe calls, and the admin's refund."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from db.models import PaymentKind, PaymentStatus
from deployments.api.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from deployments.api.pagination import Page, PageDep, fetch_page
from deployments.api.problems import problem_responses
from pipeline.fields import StrictInput
from pipeline.ledger import billing

router = APIRouter(tags=["billing"], responses=problem_responses(422, 429))


class Subscribe(StrictInput):
    plan: str = Field(min_length=1, max_length=32, description="The code of a paid plan.")


class CheckoutPublic(BaseModel):
    id: str = Field(description="The Stripe Checkout Session.")
    url: str = Field(description="Where the user pays.")


class PortalPublic(BaseModel):
    url: str = Field(description="Stripe's Customer Portal: change or cancel the plan there.")


class PaymentPublic(BaseModel):
    """Money received: a credit pack or a plan's monthly invoice."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: PaymentKind
    stripe_id: str = Field(description="The PaymentIntent of a top-up, the invoice of a plan.")
    plan_code: str | None
    credits: int
    amount_cents: int
    currency: str
    status: PaymentStatus
    period_start: datetime | None
    period_end: datetime | None
    refund_id: str | None
    refunded_credits: int
    created_at: datetime


class WebhookReceipt(BaseModel):
    received: bool = True
    outcome: str = Field(description="What the event did (`duplicate` for a redelivery).")


class RefundPublic(BaseModel):
    refund_id: str
    amount_cents: int
    credits_reversed: int = Field(description="Credits taken back from the user's balance.")
    credits_spent: int = Field(description="Credits of the payment already spent: not taken.")


@router.post(
    "/api/billing/subscribe",
    responses=problem_responses(401, 409, 502, 503),
    summary="Subscribe to a plan through Stripe Checkout",
)
def subscribe(body: Subscribe, user: CurrentUser, settings: SettingsDep) -> CheckoutPublic:
    checkout = billing.start_subscription(settings, user, body.plan)
    return CheckoutPublic(id=checkout.id, url=checkout.url)


@router.post(
    "/api/billing/portal",
    responses=problem_responses(401, 404, 502, 503),
    summary="Open Stripe's Customer Portal to change or cancel the plan",
)
def portal(user: CurrentUser, settings: SettingsDep) -> PortalPublic:
    return PortalPublic(url=billing.open_portal(settings, user))


@router.get("/api/billing/invoices", responses=problem_responses(401), summary="What you paid")
def invoices(user: CurrentUser, session: SessionDep, page: PageDep) -> Page[PaymentPublic]:
    return fetch_page(session, billing.payments(user.id), page, PaymentPublic)


@router.post(
    "/api/billing/webhook",
    responses=problem_responses(400, 409, 503),
    summary="Stripe's webhook: signed events (Stripe-Signature), each applied once",
)
async def webhook(
    request: Request,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookReceipt:
    payload = await request.body()
    outcome = await run_in_threadpool(billing.apply_webhook, settings, payload, stripe_signature)
    return WebhookReceipt(outcome=outcome)


@router.post(
    "/api/admin/payments/{payment_id}/refund",
    tags=["admin"],
    responses=problem_responses(401, 403, 404, 409, 502, 503),
    summary="Refund a top-up and take back what is left of its credits (audited)",
)
def refund_payment(
    payment_id: uuid.UUID, admin: AdminUser, settings: SettingsDep, request: Request
) -> RefundPublic:
    ip = request.client.host if request.client else None
    result = billing.refund(settings, admin, payment_id, ip)
    return RefundPublic(
        refund_id=result.refund_id,
        amount_cents=result.amount_cents,
        credits_reversed=result.credits_reversed,
        credits_spent=result.credits_spent,
    )
