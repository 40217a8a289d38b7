"""The admin API: analytics, users, projects, job logs and the moderation queue.

Every route needs the admin role. Every action (a route that changes something) writes exactly
one `AuditLog` row: who, what, the target, the client address and, by its timestamp, when.
Actions that go through the pipeline's own transactions (credits, moderation decisions) are
audited after they succeed; the others in the same transaction as their change.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import union
from sqlmodel import Session, col, func, select

from db.models import (
    AuditLog,
    Job,
    JobLog,
    JobStatus,
    LedgerEntry,
    LedgerKind,
    ModerationFlag,
    ModerationStatus,
    Plan,
    Project,
    ProjectStatus,
    RefreshToken,
    Role,
    User,
)
from db.types import utcnow
from deployments.api.accounts import revoke_all
from deployments.api.deps import AdminUser, SessionDep, SettingsDep, admin_user
from deployments.api.pagination import Page, PageDep, fetch_page
from deployments.api.problems import problem_responses
from deployments.api.routers.jobs import JobPublic
from pipeline.errors import Conflict, NotFound
from pipeline.fields import StrictInput
from pipeline.jobs import moderation
from pipeline.jobs import submission as jobs
from pipeline.jobs.sampling import job_engine
from pipeline.lifecycle import TERMINAL

router = APIRouter(
    prefix="/api/admin",
    tags=["admin"],
    dependencies=[Depends(admin_user)],
    responses=problem_responses(401, 403),
)

Days = Annotated[int, Query(ge=1, le=366, description="The window, in days up to now.")]


class DurationStats(BaseModel):
    count: int
    p50_s: float
    p95_s: float


class Analytics(BaseModel):
    """Totals over the last `days` days, except `users` (all accounts)."""

    days: int
    users: int
    active_users: int = Field(description="Users who logged in, refreshed or submitted a job.")
    renders_by_status: dict[str, int] = Field(description="Jobs created, by their status now.")
    credits_by_kind: dict[str, int] = Field(description="Credits moved, by ledger entry kind.")
    credits_granted: int
    credits_spent: int
    render_minutes: float = Field(description="Wall-clock minutes of finished jobs.")
    job_duration: dict[str, DurationStats] = Field(
        description="Succeeded jobs' durations by engine (`video-ltx`, `voice-espeak`, ...)."
    )


class AdminUserView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    plan_code: str
    created_at: datetime


class PlanChange(StrictInput):
    plan_code: str = Field(min_length=1, max_length=32)


class CreditGrant(StrictInput):
    amount: int = Field(
        ge=-1_000_000,
        le=1_000_000,
        description="Credits to add; negative takes them away (never below 0).",
    )
    memo: str = Field(min_length=1, max_length=500)

    @field_validator("amount")
    @classmethod
    def _moves_something(cls, amount: int) -> int:
        if amount == 0:
            raise ValueError("a grant of 0 credits changes nothing")
        return amount


class BalanceView(BaseModel):
    available: int
    held: int


class AdminProjectView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    status: ProjectStatus
    created_at: datetime
    updated_at: datetime


class AdminJobView(JobPublic):
    user_id: uuid.UUID


class JobLogView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    stage: str
    level: str
    message: str
    created_at: datetime


class FlagView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    job_id: uuid.UUID | None
    project_id: uuid.UUID | None
    kind: str
    excerpt: str
    reason: str
    status: ModerationStatus
    reviewer_id: uuid.UUID | None
    reviewed_at: datetime | None
    created_at: datetime


class Rejection(StrictInput):
    reason: str = Field(min_length=1, max_length=500)


class ReviewView(BaseModel):
    flag: FlagView
    job_id: uuid.UUID | None = Field(description="The job released or rejected by this decision.")


# -- analytics -------------------------------------------------------------------------------


@router.get("/analytics", response_model=Analytics)
def analytics(session: SessionDep, days: Days = 30) -> Analytics:
    since = utcnow() - timedelta(days=days)
    active = union(
        select(Job.user_id).where(col(Job.created_at) >= since),
        select(RefreshToken.user_id).where(col(RefreshToken.created_at) >= since),
    ).subquery()
    by_status = session.exec(
        select(Job.status, func.count()).where(col(Job.created_at) >= since).group_by(Job.status)
    ).all()
    by_kind = session.exec(
        select(LedgerEntry.kind, func.sum(LedgerEntry.amount))
        .where(col(LedgerEntry.amount) > 0, col(LedgerEntry.created_at) >= since)
        .group_by(LedgerEntry.kind)
    ).all()
    credits = {str(kind): int(total) for kind, total in by_kind}
    finished = session.exec(
        select(Job).where(
            col(Job.completed_at) >= since,
            col(Job.started_at).is_not(None),
            col(Job.status).in_(TERMINAL),
        )
    ).all()
    return Analytics(
        days=days,
        users=session.exec(select(func.count()).select_from(User)).one(),
        active_users=session.exec(select(func.count()).select_from(active)).one(),
        renders_by_status={str(state): count for state, count in by_status},
        credits_by_kind=credits,
        credits_granted=credits.get(LedgerKind.grant, 0),
        credits_spent=credits.get(LedgerKind.capture, 0),
        render_minutes=round(sum(_seconds(job) for job in finished) / 60, 3),
        job_duration=_durations([job for job in finished if job.status == JobStatus.succeeded]),
    )


def _seconds(job: Job) -> float:
    assert job.started_at is not None and job.completed_at is not None
    return max(0.0, (job.completed_at - job.started_at).total_seconds())


def _durations(finished: list[Job]) -> dict[str, DurationStats]:
    """p50 and p95 by engine, computed here so that SQLite and PostgreSQL agree."""
    by_engine: dict[str, list[float]] = {}
    for job in finished:
        by_engine.setdefault(job_engine(job), []).append(_seconds(job))
    return {
        engine: DurationStats(
            count=len(values), p50_s=percentile(values, 50), p95_s=percentile(values, 95)
        )
        for engine, values in sorted(by_engine.items())
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, interpolated linearly between the closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- users -----------------------------------------------------------------------------------


@router.get("/users", response_model=Page[AdminUserView])
def search_users(
    session: SessionDep,
    page: PageDep,
    email: Annotated[str | None, Query(max_length=320, description="Part of the email.")] = None,
) -> Page[AdminUserView]:
    query = select(User).order_by(col(User.created_at).desc(), col(User.id))
    if email:
        query = query.where(col(User.email).ilike(_contains(email), escape="\\"))
    return fetch_page(session, query, page, AdminUserView)


@router.put("/users/{user_id}/plan", response_model=AdminUserView, responses=problem_responses(404))
def change_plan(
    user_id: uuid.UUID, change: PlanChange, admin: AdminUser, session: SessionDep, request: Request
) -> User:
    user = _user(session, user_id)
    if session.exec(select(Plan).where(Plan.code == change.plan_code)).first() is None:
        raise NotFound(f"plan {change.plan_code!r} does not exist")
    before = user.plan_code
    user.plan_code = change.plan_code
    user.updated_at = utcnow()
    session.add(user)
    _audit(
        session,
        request,
        admin,
        "user.plan_changed",
        "user",
        user.id,
        before=before,
        after=change.plan_code,
    )
    session.commit()
    return user


@router.post(
    "/users/{user_id}/credits", response_model=BalanceView, responses=problem_responses(404)
)
def grant_credits(
    user_id: uuid.UUID,
    grant: CreditGrant,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> BalanceView:
    _user(session, user_id)
    available, held = jobs.grant_credits(settings, admin, user_id, grant.amount, grant.memo)
    _audit(
        session,
        request,
        admin,
        "user.credits_granted",
        "user",
        user_id,
        amount=grant.amount,
        memo=grant.memo,
    )
    session.commit()
    return BalanceView(available=available, held=held)


@router.post(
    "/users/{user_id}/suspend", response_model=AdminUserView, responses=problem_responses(404, 409)
)
def suspend_user(
    user_id: uuid.UUID, admin: AdminUser, session: SessionDep, request: Request
) -> User:
    """Ends the user's logins at once (refresh tokens revoked); access tokens stop working
    because every request checks that the account is active."""
    if user_id == admin.id:
        raise Conflict("an admin cannot suspend their own account")
    return _set_active(session, request, admin, user_id, active=False)


@router.post(
    "/users/{user_id}/unsuspend", response_model=AdminUserView, responses=problem_responses(404)
)
def unsuspend_user(
    user_id: uuid.UUID, admin: AdminUser, session: SessionDep, request: Request
) -> User:
    return _set_active(session, request, admin, user_id, active=True)


def _set_active(
    session: Session, request: Request, admin: User, user_id: uuid.UUID, *, active: bool
) -> User:
    user = _user(session, user_id)
    user.is_active = active
    user.updated_at = utcnow()
    session.add(user)
    if not active:
        revoke_all(session, user)
    action = "user.unsuspended" if active else "user.suspended"
    _audit(session, request, admin, action, "user", user.id)
    session.commit()
    return user


def _user(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


# -- projects and jobs -----------------------------------------------------------------------


@router.get("/projects", response_model=Page[AdminProjectView])
def search_projects(
    session: SessionDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200, description="Part of the title.")] = None,
    owner_email: Annotated[str | None, Query(max_length=320)] = None,
) -> Page[AdminProjectView]:
    query = select(Project).order_by(col(Project.updated_at).desc(), col(Project.id))
    if q:
        query = query.where(col(Project.title).ilike(_contains(q), escape="\\"))
    if owner_email:
        query = query.join(User, col(User.id) == Project.owner_id).where(
            col(User.email).ilike(_contains(owner_email), escape="\\")
        )
    return fetch_page(session, query, page, AdminProjectView)


@router.delete(
    "/projects/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 409),
)
def delete_project(
    project_id: uuid.UUID, admin: AdminUser, session: SessionDep, request: Request
) -> Response:
    """Deletes any user's project as its owner would (`pipeline.jobs.submission.delete_project`),
    audited."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} not found")
    jobs.delete_project(session, project)
    _audit(
        session,
        request,
        admin,
        "project.deleted",
        "project",
        project_id,
        title=project.title,
        owner_id=project.owner_id,
    )
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/jobs/{job_id}", response_model=AdminJobView, responses=problem_responses(404))
def read_job(session: SessionDep, job_id: uuid.UUID) -> AdminJobView:
    """Any user's job, with the engine and licence of each stage."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return AdminJobView.model_validate(job)


@router.get(
    "/jobs/{job_id}/logs", response_model=list[JobLogView], responses=problem_responses(404)
)
def job_logs(
    job_id: uuid.UUID,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[JobLog]:
    if session.get(Job, job_id) is None:
        raise NotFound(f"job {job_id} not found")
    query = select(JobLog).where(JobLog.job_id == job_id)
    return list(session.exec(query.order_by(col(JobLog.created_at), col(JobLog.id)).limit(limit)))


# -- moderation ------------------------------------------------------------------------------


@router.get("/moderation", response_model=Page[FlagView])
def moderation_queue(
    session: SessionDep, page: PageDep, state: ModerationStatus = ModerationStatus.pending
) -> Page[FlagView]:
    """Flags in one state, oldest first (the pending queue by default)."""
    query = (
        select(ModerationFlag)
        .where(ModerationFlag.status == state)
        .order_by(col(ModerationFlag.created_at), col(ModerationFlag.id))
    )
    return fetch_page(session, query, page, FlagView)


@router.post(
    "/moderation/{flag_id}/approve",
    response_model=ReviewView,
    responses=problem_responses(404, 409),
)
def approve_flag(
    flag_id: uuid.UUID,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> ReviewView:
    """Approves the flag; when its job has no pending flag left, the job joins the queue."""
    review = moderation.approve(
        settings.resolved_database_url,
        flag_id,
        admin.id,
        on_release=lambda job_id: jobs.release_hold(settings, job_id),
    )
    _audit(
        session,
        request,
        admin,
        "moderation.approved",
        "moderation_flag",
        flag_id,
        job_id=review.job_id,
    )
    session.commit()
    return ReviewView(flag=FlagView.model_validate(review.flag), job_id=review.job_id)


@router.post(
    "/moderation/{flag_id}/reject",
    response_model=ReviewView,
    responses=problem_responses(404, 409),
)
def reject_flag(
    flag_id: uuid.UUID,
    rejection: Rejection,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> ReviewView:
    """Rejects the flag with every other pending flag of its job; the job fails and its
    credits are released."""
    review = moderation.reject(
        settings.resolved_database_url,
        flag_id,
        admin.id,
        rejection.reason,
        on_reject=lambda job_id, reason: jobs.reject_held(settings, job_id, reason),
    )
    _audit(
        session,
        request,
        admin,
        "moderation.rejected",
        "moderation_flag",
        flag_id,
        job_id=review.job_id,
        reason=rejection.reason,
    )
    session.commit()
    return ReviewView(flag=FlagView.model_validate(review.flag), job_id=review.job_id)


# -- helpers ---------------------------------------------------------------------------------


def _audit(
    session: Session,
    request: Request,
    admin: User,
    action: str,
    target_type: str,
    target_id: uuid.UUID,
    **detail: Any,
) -> None:
    """Adds the action's audit row to the session; the caller commits."""
    session.add(
        AuditLog(
            actor_id=admin.id,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            detail={key: str(v) if isinstance(v, uuid.UUID) else v for key, v in detail.items()},
            ip=request.client.host if request.client else None,
        )
    )


def _contains(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
