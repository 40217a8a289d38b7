"""The credits page: balance, plan, the history of every credit movement, the account's email
verification, and buying: a credit pack or a plan through Stripe Checkout, a plan changed or
cancelled in Stripe's Customer Portal (the billing router's functions). Stripe sends the
browser back to `/billing/done`, `/billing/cancelled` or `/billing`."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import col, select

from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import Plan
from deployments.api.deps import SessionDep, SettingsDep
from deployments.api.idempotency import KEY_PATTERN
from deployments.api.routers.credits import CreditMovement
from deployments.web.account_pages import FormText
from deployments.web.session import CheckedForm, CsrfRefused, SignedIn, WebSession
from deployments.web.templating import page, payment_origins, redirect
from pipeline.jobs import submission as jobs
from pipeline.ledger import billing
from pipeline.ledger.payments import UnknownCreditPack

router = APIRouter(include_in_schema=False, tags=["web"])

HISTORY_SHOWN = 50


@router.get("/credits", name="credits_page")
def credits_page(
    request: Request, web: SignedIn, session: SessionDep, settings: SettingsDep, notice: str = ""
) -> HTMLResponse:
    return _credits(request, web, session, settings, {"notice": notice[:200]})


def _credits(
    request: Request,
    web: WebSession,
    session: SessionDep,
    settings: Settings,
    context: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    available, held = jobs.balance(settings, web.user)
    entries = session.exec(billing.history(web.user.id).limit(HISTORY_SHOWN)).all()
    plans = session.exec(select(Plan).order_by(col(Plan.price_cents))).all()
    shown = {
        "session": web,
        "csrf": web.csrf,
        "available": available,
        "held": held,
        "history": [CreditMovement.model_validate(entry) for entry in entries],
        "plans": plans,
        "packs": sorted(settings.stripe_credit_packs),
        "for_sale": set(settings.stripe_plan_prices),
        "subscribed": web.user.plan_code != billing.FREE_PLAN,
        "purchase_key": secrets.token_urlsafe(18),
        **context,
    }
    return page(request, "credits.html", shown, status_code, form_targets=payment_origins(settings))


def _to_payment(
    request: Request,
    web: WebSession,
    session: SessionDep,
    settings: Settings,
    pay: Callable[[], str],
) -> Response:
    """303 to the URL Stripe gave (`pay()`), or the credits page with why not."""
    try:
        url = pay()
    except StudioError as error:
        return _credits(request, web, session, settings, {"error": error.detail}, error.status)
    return RedirectResponse(url, status_code=303)


@router.post("/credits/buy", dependencies=[CheckedForm])
def buy_credits(
    request: Request,
    web: SignedIn,
    session: SessionDep,
    settings: SettingsDep,
    credits: FormText,
    purchase_key: FormText = "",
) -> Response:
    """A credit pack through Stripe Checkout; the form's key makes a resent form the same
    Checkout Session (Stripe's idempotency, as the API's top-up). Credits arrive with the
    webhook."""

    def pay() -> str:
        if not credits.isdecimal() or len(credits) > 7:
            packs = sorted(settings.stripe_credit_packs)
            raise UnknownCreditPack(f"credits come in packs of {packs}")
        if re.fullmatch(KEY_PATTERN, purchase_key) is None:
            raise CsrfRefused("this form has no purchase key: reload the page")
        return billing.start_topup(settings, web.user, int(credits), purchase_key).url

    return _to_payment(request, web, session, settings, pay)


@router.post("/credits/plan", dependencies=[CheckedForm])
def choose_plan(
    request: Request, web: SignedIn, session: SessionDep, settings: SettingsDep, plan: FormText
) -> Response:
    """A paid plan through Stripe Checkout; a subscriber changes plans in the portal."""
    return _to_payment(
        request,
        web,
        session,
        settings,
        lambda: billing.start_subscription(settings, web.user, plan[:32]).url,
    )


@router.post("/credits/portal", dependencies=[CheckedForm])
def manage_plan(
    request: Request, web: SignedIn, session: SessionDep, settings: SettingsDep
) -> Response:
    """Stripe's Customer Portal, where the plan is changed or cancelled."""
    return _to_payment(
        request, web, session, settings, lambda: billing.open_portal(settings, web.user)
    )


RETURNS = {
    "/billing/done": "Thank you: your credits arrive as soon as Stripe confirms the payment.",
    "/billing/cancelled": "The payment was cancelled: nothing was charged.",
    "/billing": "",
}


@router.get("/billing/done", name="billing_done")
@router.get("/billing/cancelled", name="billing_cancelled")
@router.get("/billing", name="billing_return")
def billing_return(request: Request, web: SignedIn) -> Response:
    """Where Stripe sends the browser back (Checkout's success and cancel URLs, the portal's
    return URL): the credits page with what happened."""
    notice = RETURNS[request.scope["route"].path]
    return redirect(request, "credits_page", {"notice": notice} if notice else None)
