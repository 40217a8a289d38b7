"""Credits and plans."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from db.models import Plan
from deployments.api.deps import CurrentUser, SessionDep, SettingsDep
from deployments.api.idempotency import RequiredIdempotencyDep
from deployments.api.problems import problem_responses
from pipeline.jobs import submission as jobs

router = APIRouter(tags=["credits"], responses=problem_responses(422, 429))


class Balance(BaseModel):
    available: int = Field(description="Credits that can be spent now.")
    held: int = Field(description="Credits reserved by jobs that have not finished.")


class TopUp(BaseModel):
    credits: int = Field(gt=0, le=1_000_000)


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
    response_model=Balance,
    responses=problem_responses(401, 402, 409),
    summary="Buy credits (the Idempotency-Key makes a retried purchase safe)",
)
def topup(
    body: TopUp, user: CurrentUser, settings: SettingsDep, idempotency: RequiredIdempotencyDep
) -> JSONResponse:
    def buy() -> tuple[int, Balance]:
        available, held = jobs.topup(settings, user, body.credits, idempotency.key or "")
        return 200, Balance(available=available, held=held)

    return idempotency.run(buy)


@router.get("/api/plans")
def list_plans(session: SessionDep) -> list[PlanPublic]:
    plans = session.exec(select(Plan).order_by(col(Plan.price_cents)))
    return [PlanPublic.model_validate(plan) for plan in plans]
