"""Credits and plans."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import col, select

from db.models import LedgerEntry, LedgerKind, Plan
from deployments.api.deps import CurrentUser, SessionDep, SettingsDep
from deployments.api.idempotency import RequiredIdempotencyDep
from deployments.api.pagination import Page, PageDep, fetch_page
from deployments.api.problems import problem_responses
from deployments.api.routers.billing import CheckoutPublic
from pipeline.fields import StrictInput
from pipeline.jobs import submission as jobs
from pipeline.ledger import billing

router = APIRouter(tags=["credits"], responses=problem_responses(422, 429))


class Balance(BaseModel):
    available: int = Field(description="Credits that can be spent now.")
    held: int = Field(description="Credits reserved by jobs that have not finished.")


class TopUp(StrictInput):
    credits: int = Field(gt=0, le=1_000_000, description="The size of a credit pack.")


class CreditMovement(BaseModel):
    """One ledger entry on the user's accounts: `available` (spendable) or `held` (reserved
    by running jobs)."""

    id: uuid.UUID
    kind: LedgerKind
    amount: int
    account: str = Field(description="`available` or `held`.")
    job_id: uuid.UUID | None
    payment: str | None = Field(description="The Stripe payment, invoice or refund, if any.")
    memo: str | None
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _from_entry(cls, data: Any) -> Any:
        if not isinstance(data, LedgerEntry):
            return data
        return {
            "id": data.id,
            "kind": data.kind,
            "amount": data.amount,
            "account": data.account.rsplit(":", 1)[-1],
            "job_id": data.job_id,
            "payment": billing.payment_of(data),
            "memo": data.memo,
            "created_at": data.created_at,
        }


class PlanPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    monthly_credits: int
    price_cents: int
    max_resolution: int
    max_concurrent_renders: int
    rate_limit_per_minute: int
    upload_limit_mb: int


@router.get("/api/credits/balance", responses=problem_responses(401))
def read_balance(user: CurrentUser, settings: SettingsDep) -> Balance:
    available, held = jobs.balance(settings, user)
    return Balance(available=available, held=held)


@router.post(
    "/api/credits/topup",
    response_model=CheckoutPublic,
    responses=problem_responses(401, 409, 502, 503),
    summary="Buy a credit pack through Stripe Checkout (credits arrive with Stripe's webhook)",
)
def topup(
    body: TopUp, user: CurrentUser, settings: SettingsDep, idempotency: RequiredIdempotencyDep
) -> JSONResponse:
    def buy() -> tuple[int, CheckoutPublic]:
        checkout = billing.start_topup(settings, user, body.credits, idempotency.key or "")
        return 200, CheckoutPublic(id=checkout.id, url=checkout.url)

    return idempotency.run(buy)


@router.get(
    "/api/credits/history",
    responses=problem_responses(401),
    summary="Every credit movement: grants, top-ups, reservations, captures, releases, refunds",
)
def credit_history(user: CurrentUser, session: SessionDep, page: PageDep) -> Page[CreditMovement]:
    return fetch_page(session, billing.history(user.id), page, CreditMovement)


@router.get("/api/plans")
def list_plans(session: SessionDep) -> list[PlanPublic]:
    plans = session.exec(select(Plan).order_by(col(Plan.price_cents)))
    return [PlanPublic.model_validate(plan) for plan in plans]
