"""The user's jobs: list, read, follow as server-sent events, cancel, pause, resume."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import col, select

from cluster.settings import Settings
from db.models import Job, JobStatus
from db.session import session_scope
from deployments.api.deps import CurrentUser, OwnedJob, SessionDep, SettingsDep
from deployments.api.pagination import Page, PageDep, fetch_page
from deployments.api.problems import problem_responses
from pipeline.jobs import submission as jobs
from pipeline.ledger.pricing import Estimate
from pipeline.lifecycle import TERMINAL
from pipeline.render.engine_choice import engine_record

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=problem_responses(401, 422, 429))

POLL_S = 0.5


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID | None
    type: str
    status: JobStatus
    progress: int
    stages: dict[str, Any]
    output: dict[str, Any]
    error: str | None
    warnings: list[str]
    cost_estimate: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    engines: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per stage (voice, video, video_from_image, lipsync, music, image,"
        " thumbnails), the engine that makes it and its licence: `licence`, `use` (commercial,"
        " revenue-cap, non-commercial) and `revenue_cap_usd`. Thumbnails are drawn by the image"
        " engine, or are `frames` of the film (under the video engine's terms); once the render"
        " is done, `fallback_from` names an image engine that failed to draw them.",
    )

    @model_validator(mode="before")
    @classmethod
    def _engines_of_job(cls, data: Any) -> Any:
        """A job row shows the engines recorded in its input."""
        if not isinstance(data, Job):
            return data
        fields = {name: getattr(data, name) for name in cls.model_fields if hasattr(data, name)}
        chosen = data.input.get("engines")
        made = engine_record(chosen, data.output.get("thumbnails")) if chosen else {}
        return {**fields, "engines": made}


class JobProgress(BaseModel):
    """One event of `GET /api/jobs/{job_id}/events`."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: JobStatus
    progress: int
    stages: dict[str, Any]
    error: str | None
    updated_at: datetime


def submitted(result: Job | Estimate) -> tuple[int, JobPublic | Estimate]:
    """A submission's answer: 202 with the queued job, or 200 with the estimate of a dry run."""
    if isinstance(result, Estimate):
        return 200, result
    return 202, JobPublic.model_validate(result)


SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Estimate, "description": "A dry run: what it would cost, nothing spent"},
    202: {"model": JobPublic, "description": "Credits reserved, the job queued"},
    **problem_responses(402, 403, 404, 409),
}


@router.get("")
def list_jobs(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    status: JobStatus | None = None,
    project_id: uuid.UUID | None = None,
) -> Page[JobPublic]:
    query = select(Job).where(Job.user_id == user.id)
    if status is not None:
        query = query.where(Job.status == status)
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    return fetch_page(session, query.order_by(col(Job.created_at).desc()), page, JobPublic)


@router.get("/{job_id}", responses=problem_responses(404))
def read_job(job: OwnedJob) -> JobPublic:
    return JobPublic.model_validate(job)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses=problem_responses(404),
    summary="Follow a job: an event whenever its status, progress or stages change",
)
async def job_events(
    job: OwnedJob,
    settings: SettingsDep,
    max_s: Annotated[float, Query(gt=0, le=3600, description="Stop after this long.")] = 3600,
) -> AsyncIterator[ServerSentEvent]:
    """Events named after the job's status; the stream ends after a terminal one."""
    async for event in progress_events(settings, job, max_s):
        yield event


async def progress_events(
    settings: Settings, job: Job, max_s: float = 3600
) -> AsyncIterator[ServerSentEvent]:
    """A job's progress as server-sent events (also the web studio's): one whenever its
    status, progress or stages change, named after its status, until a terminal one or `max_s`."""
    deadline = asyncio.get_running_loop().time() + max_s
    last: JobProgress | None = None
    current: Job | None = job
    while current is not None:
        snapshot = JobProgress.model_validate(current)
        if snapshot != last:
            yield ServerSentEvent(data=snapshot, event=snapshot.status.value)
            last = snapshot
        if snapshot.status in TERMINAL or asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(POLL_S)
        current = await run_in_threadpool(_load_job, settings, job.id)


def _load_job(settings: Settings, job_id: uuid.UUID) -> Job | None:
    with session_scope(settings.resolved_database_url) as session:
        return session.get(Job, job_id)


@router.post("/{job_id}/cancel", responses=problem_responses(404, 409))
def cancel_job(job: OwnedJob, user: CurrentUser, settings: SettingsDep) -> JobPublic:
    return JobPublic.model_validate(jobs.cancel_job(settings, user, job.id))


@router.post("/{job_id}/pause", responses=problem_responses(404, 409))
def pause_job(job: OwnedJob, user: CurrentUser, settings: SettingsDep) -> JobPublic:
    return JobPublic.model_validate(jobs.pause_job(settings, user, job.id))


@router.post("/{job_id}/resume", responses=problem_responses(404, 409))
def resume_job(job: OwnedJob, user: CurrentUser, settings: SettingsDep) -> JobPublic:
    return JobPublic.model_validate(jobs.resume_job(settings, user, job.id))
