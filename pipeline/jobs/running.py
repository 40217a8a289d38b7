"""Running a render job (a film, or a single-engine `/api/ai/*` job) on the cluster: `run_job`
renders, stores the outputs, links them to the project and settles the reservation (capture
what was used, release the rest; release everything on failure) in the same transaction that
writes the job's final state, so no client ever sees a finished job whose credits are still
held. The scheduler starts it; nothing here knows the scheduler.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import ray
from sqlmodel import Session, select

from cluster import metrics
from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import Asset, Job, JobStatus, Project, ProjectStatus
from db.session import session_scope
from db.types import utcnow
from pipeline.ledger import pricing
from pipeline.ledger.store import DatabaseLedger
from pipeline.lifecycle import set_stage, settle, transition
from pipeline.render.dag import EngineChoice, RenderInputs, render_film, store_outputs
from pipeline.render.spec import FilmSpec

OUTPUT_KINDS = {
    ".mp4": "film",
    ".srt": "subtitles",
    ".vtt": "subtitles",
    ".png": "image",
    ".wav": "audio",
    ".mid": "music",
    ".json": "plan",
}

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0.1, max_retries=0)
def run_job(settings: Settings, job_id: UUID) -> None:
    """Runs one job to a terminal state. Whoever cancels or pauses it marks the job first; then
    the scheduler kills this task's worker (`scheduler.stop`)."""
    url = settings.resolved_database_url
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.queued:
            return
        transition(session, job, JobStatus.running)
        job.attempts += 1
        job_input = dict(job.input)
        owner = job.user_id
    quality = job_input.get("quality", "animatic")
    try:
        inputs = RenderInputs(
            settings=settings,
            spec=FilmSpec.model_validate(job_input["spec"]),
            engines=EngineChoice(**job_input["engines"]),
            stop_at=job_input.get("stop_at"),
            job_id=job_id,
            owner=owner,
        )
        report, files = render_film(inputs, _reporter(url, job_id))
        stored = store_outputs(settings, files)
    except Exception as error:  # a malformed job or a failed render: it fails with the reason
        log.warning("job %s failed", job_id, exc_info=error)
        fail_job(settings, job_id, _reason(error))
        return
    used = pricing.charge_for(
        pricing.RenderShape.from_spec(inputs.spec),
        quality=quality,
        stop_at=inputs.stop_at,
        rendered_fraction=_rendered_fraction(report),
    )
    with session_scope(url) as session:
        job = session.exec(select(Job).where(Job.id == job_id).with_for_update()).one()
        if job.status != JobStatus.running:
            return
        outputs = {name: _link(session, job, name, obj) for name, obj in stored.items()}
        job.output = {
            "outputs": outputs,
            "duration_s": report.duration_s,
            "frame_count": report.frame_count,
            "cache": {"hits": report.cache_hits, "misses": report.cache_misses},
            "credits_used": used,
            "provider_costs": report.provider_costs,
            "thumbnails": report.thumbnails,
        }
        job.warnings = report.warnings
        transition(session, job, JobStatus.succeeded)
        settled = settle(session, job_id, DatabaseLedger(session), min(used, job.cost_estimate))
        if job.project_id:
            project = session.get(Project, job.project_id)
            assert project is not None
            project.outputs = outputs
            set_project_status(session, job.project_id, ProjectStatus.ready)
    if settled is not None:
        metrics.credits("captured", settled.captured)
        metrics.credits("released", settled.released)


def _rendered_fraction(report: Any) -> float:
    """Only stages that ran are charged: cache hits are free."""
    total = len(report.cache_hits) + len(report.cache_misses)
    return 1.0 if total == 0 else len(report.cache_misses) / total


def _link(session: Session, job: Job, name: str, stored: Any) -> dict[str, Any]:
    suffix = name[name.rfind(".") :]
    asset = Asset(
        owner_id=job.user_id,
        project_id=job.project_id,
        kind=OUTPUT_KINDS.get(suffix, "file"),
        filename=name,
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
        storage_key=stored.key,
    )
    session.add(asset)
    return {"asset_id": str(asset.id), "key": stored.key, "size": stored.size,
            "sha256": stored.sha256, "content_type": stored.content_type}  # fmt: skip


def fail_job(settings: Settings, job_id: UUID, reason: str) -> None:
    """Ends a running job as failed and releases its credits, in one transaction."""
    url = settings.resolved_database_url
    with session_scope(url) as session:
        job = session.exec(select(Job).where(Job.id == job_id).with_for_update()).one()
        if job.status != JobStatus.running:
            return
        transition(session, job, JobStatus.failed, error=reason)
        release_credits(session, job)
        if job.project_id:
            set_project_status(session, job.project_id, ProjectStatus.failed)
    metrics.credits("released", job.cost_estimate)


def release_credits(session: Session, job: Job) -> None:
    """Gives a job's reservation back, in the transaction that ends the job (a failed, cancelled
    or rejected one)."""
    settle(session, job.id, DatabaseLedger(session))


def _reason(error: BaseException) -> str:
    """The user-facing reason: a domain error's detail, else the innermost cause's message;
    never an OS error's (the operators' log has it)."""
    cause: BaseException = error
    while isinstance(cause, ray.exceptions.RayTaskError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, StudioError) and not cause.internal:
        return cause.detail
    if isinstance(cause, OSError):  # it names server paths and tells which files exist
        return "the render could not read a file it needs"
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:500]


def _reporter(url: str, job_id: UUID) -> Any:
    def report(stage: str, status: str, progress: float) -> None:
        with session_scope(url) as session:
            job = session.get(Job, job_id)
            if job is not None and job.status == JobStatus.running:
                set_stage(session, job, stage, status, progress)

    return report


def set_project_status(session: Session, project_id: UUID, status: ProjectStatus) -> None:
    """The project follows its job: rendering, then ready, failed or back to draft."""
    project = session.get(Project, project_id)
    if project is not None:
        project.status = status
        project.updated_at = utcnow()
        session.add(project)
