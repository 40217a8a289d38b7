"""The credits page: balance, plan, the history of every credit movement, and the account's
email verification."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import col, select

from db.models import Plan
from deployments.api.deps import SessionDep, SettingsDep
from deployments.api.routers.credits import CreditMovement
from deployments.web.session import SignedIn
from deployments.web.templating import page
from pipeline.jobs import submission as jobs
from pipeline.ledger import billing

router = APIRouter(include_in_schema=False, tags=["web"])

HISTORY_SHOWN = 50


@router.get("/credits", name="credits_page")
def credits_page(
    request: Request, web: SignedIn, session: SessionDep, settings: SettingsDep, notice: str = ""
) -> HTMLResponse:
    available, held = jobs.balance(settings, web.user)
    entries = session.exec(billing.history(web.user.id).limit(HISTORY_SHOWN)).all()
    plans = session.exec(select(Plan).order_by(col(Plan.price_cents))).all()
    context = {
        "session": web,
        "csrf": web.csrf,
        "available": available,
        "held": held,
        "history": [CreditMovement.model_validate(entry) for entry in entries],
        "plans": plans,
        "notice": notice[:200],
    }
    return page(request, "credits.html", context)
