"""The admin's pages: analytics and the moderation queue (approve, reject with a reason). They
answer only the admin role (403 otherwise, the sign-in page without a session) and call the
admin router's own functions, so a decision is audited exactly as through the API."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select

from cluster.errors import StudioError
from db.models import ModerationFlag, ModerationStatus, Role
from deployments.api.deps import SessionDep, SettingsDep
from deployments.api.problems import Forbidden
from deployments.api.routers import admin as admin_api
from deployments.web.account_pages import problem_text
from deployments.web.session import CheckedForm, SignedIn, WebSession
from deployments.web.templating import page, redirect

router = APIRouter(include_in_schema=False, tags=["web"])

QUEUE_SHOWN = 100


def web_admin(web: SignedIn) -> WebSession:
    if web.user.role != Role.admin:
        raise Forbidden("this page is for the studio's admins")
    return web


WebAdmin = Annotated[WebSession, Depends(web_admin)]


@router.get("/admin", name="admin_page")
def admin_page(
    request: Request,
    web: WebAdmin,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> HTMLResponse:
    """The admin API's analytics over the last `days` days."""
    figures = admin_api.analytics(session, days)
    context = {"session": web, "csrf": web.csrf, "figures": figures, "days": days}
    return page(request, "admin.html", context)


@router.get("/admin/moderation", name="moderation_page")
def moderation_page(
    request: Request, web: WebAdmin, session: SessionDep, notice: str = ""
) -> HTMLResponse:
    return _queue(request, web, session, {"notice": notice[:200]})


def _queue(
    request: Request,
    web: WebSession,
    session: SessionDep,
    context: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    """The pending flags, oldest first, as the admin API lists them."""
    flags = session.exec(
        select(ModerationFlag)
        .where(ModerationFlag.status == ModerationStatus.pending)
        .order_by(col(ModerationFlag.created_at), col(ModerationFlag.id))
        .limit(QUEUE_SHOWN)
    ).all()
    shown = {"session": web, "csrf": web.csrf, "flags": flags, **context}
    return page(request, "moderation.html", shown, status_code)


@router.post("/admin/moderation/{flag_id}/approve", dependencies=[CheckedForm])
def approve(
    request: Request,
    flag_id: uuid.UUID,
    web: WebAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Approves the flag; its job joins the queue when no flag of it is left pending."""
    try:
        admin_api.approve_flag(flag_id, web.user, session, settings, request)
    except StudioError as error:
        return _queue(request, web, session, {"error": error.detail}, error.status)
    return redirect(request, "moderation_page", {"notice": "Approved."})


@router.post("/admin/moderation/{flag_id}/reject", dependencies=[CheckedForm])
def reject(
    request: Request,
    flag_id: uuid.UUID,
    web: WebAdmin,
    session: SessionDep,
    settings: SettingsDep,
    reason: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    """Rejects the flag with its job's other pending flags; the job fails, its credits are
    released."""
    try:
        rejection = admin_api.Rejection.model_validate({"reason": reason.strip()})
        admin_api.reject_flag(flag_id, rejection, web.user, session, settings, request)
    except ValidationError as error:
        return _queue(request, web, session, {"error": problem_text(error)}, 422)
    except StudioError as error:
        return _queue(request, web, session, {"error": error.detail}, error.status)
    return redirect(request, "moderation_page", {"notice": "Rejected."})
