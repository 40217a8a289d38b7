"""Jobs from submission to settlement: what the API and the CLI call.

Submission checks everything that can be checked before money moves (spec, plan limits, model
licences, voices, images), reserves the estimate through the `CreditLedger`, writes the job and
wakes the scheduler. `run_job` runs on the cluster: it renders, stores the outputs, links them to
the project and settles the reservation (capture what was used, release the rest; release
everything on failure or cancel) in the same transaction that writes the job's final state, so
no client ever sees a finished job whose credits are still held.
"""

from __future__ import annotations

import io
import logging
import uuid
from typing import Any, Literal
from uuid import UUID

import ray
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from cluster import metrics
from cluster.settings import Settings
from db.models import Asset, Job, JobStatus, Plan, Project, ProjectStatus, User
from db.session import session_scope
from db.types import utcnow
from models.registry import Capability
from pipeline.errors import (
    InsufficientCredits,
    NotFound,
    PlanLimit,
    SpecInvalid,
    StudioError,
)
from pipeline.jobs.scheduler import scheduler
from pipeline.jobs.state import set_stage, transition
from pipeline.ledger import pricing
from pipeline.ledger import store as credits
from pipeline.ledger.actor import ledger_client
from pipeline.render import engine_choice
from pipeline.render.dag import EngineChoice, RenderInputs, StopAt, render_film, store_outputs
from pipeline.render.spec import FilmSpec
from pipeline.storage import open_storage

log = logging.getLogger(__name__)
ACTIVE = (JobStatus.queued, JobStatus.running, JobStatus.paused, JobStatus.held)


class RenderRequest(BaseModel):
    quality: Literal["animatic", "final"] = "animatic"
    stop_at: StopAt | None = None
    dry_run: bool = False


class Estimate(BaseModel):
    credits: int
    seconds: float
    breakdown: dict[str, int]


# -- submission ------------------------------------------------------------------------------


def choose_engines(settings: Settings, quality: str, plan: Plan, spec: FilmSpec) -> EngineChoice:
    """The engines for a render: the CPU engines for an animatic; for a final render, per
    capability the first engine of the Serve config's choice that the plan's licences allow and
    that is deployed and healthy. A plan that allows none is refused here, at submit, with the
    capability and the engines considered; an engine is never used silently."""
    return engine_choice.choose_engines(settings, quality, plan.code, plan.allowed_licences, spec)


def estimate(spec: FilmSpec, quality: str, stop_at: StopAt | None) -> Estimate:
    result = pricing.estimate(pricing.RenderShape.from_spec(spec), quality=quality, stop_at=stop_at)
    return Estimate(credits=result.credits, seconds=result.seconds, breakdown=result.breakdown)


def check_spec(
    settings: Settings, session: Session, user: User, spec: FilmSpec, plan: Plan
) -> None:
    """Everything about a spec that would otherwise fail later, refused now with a 4xx."""
    if spec.resolution > plan.max_resolution:
        raise PlanLimit(
            f"resolution {spec.resolution}p is above the {plan.code} plan's {plan.max_resolution}p",
            field="resolution",
        )
    from models.espeak import supports

    for number, scene in enumerate(spec.scenes, start=1):
        if scene.narration and not supports(scene.voice):
            raise SpecInvalid(
                f"scenes.{number - 1}.voice: no voice for {scene.voice.gender} "
                f"{scene.voice.age} in language {scene.voice.language!r}",
                field=f"scenes.{number - 1}.voice",
            )
        for name in ("image", "character"):
            ref = getattr(scene, name)
            if ref is not None and ref.asset_id is not None:
                _check_image_asset(
                    settings, session, user, ref.asset_id, f"scenes.{number - 1}.{name}"
                )


def _check_image_asset(
    settings: Settings, session: Session, user: User, asset_id: UUID, where: str
) -> None:
    asset = session.get(Asset, asset_id)
    if asset is None or asset.owner_id != user.id:
        raise SpecInvalid(f"{where}: asset {asset_id} not found", field=where)
    try:
        with Image.open(io.BytesIO(open_storage(settings).get_bytes(asset.storage_key))) as image:
            image.load()
    except (UnidentifiedImageError, OSError, KeyError):
        raise SpecInvalid(
            f"{where}: asset {asset_id} is not a readable image", field=where
        ) from None


def _plan(session: Session, user: User) -> Plan:
    plan = session.exec(select(Plan).where(Plan.code == user.plan_code)).one()
    return plan


def _check_concurrency(session: Session, user: User, plan: Plan) -> None:
    active = session.exec(
        select(func.count())
        .select_from(Job)
        .where(Job.user_id == user.id, col(Job.status).in_(ACTIVE), Job.type == "render")
    ).one()
    if active >= plan.max_concurrent_renders:
        raise PlanLimit(
            f"the {plan.code} plan runs {plan.max_concurrent_renders} render(s) at a time; "
            f"{active} are waiting or running"
        )


def owned_project(session: Session, user: User, project_id: UUID) -> Project:
    project = session.get(Project, project_id)
    if project is None or project.owner_id != user.id:
        raise NotFound(f"project {project_id} not found")
    return project


def owned_job(session: Session, user: User, job_id: UUID) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.user_id != user.id:
        raise NotFound(f"job {job_id} not found")
    return job


def submit_render(
    settings: Settings,
    user: User,
    project_id: UUID,
    request: RenderRequest,
    *,
    regenerate: bool = False,
    idempotency_key: str | None = None,
) -> Job | Estimate:
    """Validates, estimates, reserves and queues a render of the project's spec.
    `regenerate` renders the current spec again; unchanged scenes come from the stage cache."""
    with session_scope(settings.resolved_database_url) as session:
        project = owned_project(session, user, project_id)
        spec = FilmSpec.model_validate(project.spec)
        plan = _plan(session, user)
        check_spec(settings, session, user, spec, plan)
        engines = choose_engines(settings, request.quality, plan, spec)
        cost = estimate(spec, request.quality, request.stop_at)
        if request.dry_run:
            return cost
        _check_concurrency(session, user, plan)
        job_input = {
            "quality": request.quality,
            "stop_at": request.stop_at,
            "engines": engines.model_dump(),
            "spec": project.spec,
            "regenerate": regenerate,
        }
        return _enqueue(settings, session, user, plan, "render", job_input, cost, project,
                        idempotency_key)  # fmt: skip


ENGINE_JOBS: dict[str, Capability] = {
    "video": Capability.video,
    "audio": Capability.voice,
    "lipsync": Capability.lipsync,
    "music": Capability.music,
}


def submit_engine_job(
    settings: Settings,
    user: User,
    kind: Literal["video", "audio", "lipsync", "music"],
    payload: dict[str, Any],
    *,
    dry_run: bool = False,
    idempotency_key: str | None = None,
) -> Job | Estimate:
    """A single-engine job (`/api/ai/*`): the payload is a one-scene film spec fragment, rendered
    through the same DAG so that it is priced, cached and settled the same way."""
    spec = _single_scene_spec(kind, payload)
    with session_scope(settings.resolved_database_url) as session:
        plan = _plan(session, user)
        check_spec(settings, session, user, spec, plan)
        quality = payload.get("quality", "animatic")
        engines = choose_engines(settings, quality, plan, spec)
        stop_at: StopAt | None = "voice" if kind == "audio" else None
        cost = estimate(spec, quality, stop_at)
        if dry_run:
            return cost
        job_input = {
            "quality": quality,
            "stop_at": stop_at,
            "engines": engines.model_dump(),
            "spec": spec.model_dump(mode="json"),
        }
        return _enqueue(settings, session, user, plan, kind, job_input, cost, None, idempotency_key)


def _single_scene_spec(kind: str, payload: dict[str, Any]) -> FilmSpec:
    scene = {k: v for k, v in payload.items() if k not in ("quality", "title", "music")}
    scene.setdefault("prompt", payload.get("title") or kind)
    if kind == "music":
        scene.setdefault("prompt", "music")
        scene.setdefault("duration_s", payload.get("duration_s", 10))
        scene.pop("narration", None)
    data = {
        "title": payload.get("title", f"{kind} job"),
        "captions": False,
        "music": payload.get("music", {"style": "none"} if kind != "music" else {}),
        "scenes": [scene],
    }
    try:
        return FilmSpec.model_validate(data)
    except ValueError as error:
        raise SpecInvalid(str(error)) from error


def _enqueue(
    settings: Settings,
    session: Session,
    user: User,
    plan: Plan,
    kind: str,
    job_input: dict[str, Any],
    cost: Estimate,
    project: Project | None,
    idempotency_key: str | None,
) -> Job:
    """Reserve first, then write the job: a refused reservation leaves nothing behind, and a
    failed write releases the reservation. A retried submission (same idempotency key) finds
    its reservation already made, and gets the job that reservation belongs to. A submission
    that moderation flags is held and reserves nothing until a reviewer approves it."""
    from pipeline.jobs.moderation import check_spec_texts, flag_findings, spec_texts

    job_id = uuid.uuid4()
    findings = check_spec_texts(spec_texts(FilmSpec.model_validate(job_input["spec"])), settings)
    reservation = None
    if not findings:
        key = f"job:{user.id}:{idempotency_key}" if idempotency_key else f"job:{job_id}"
        reservation = _reserve(settings, user.id, cost.credits, key, job_id)
        if reservation.job_id != job_id and (existing := session.get(Job, reservation.job_id)):
            return existing
    try:
        job = Job(
            id=job_id,
            user_id=user.id,
            project_id=project.id if project else None,
            type=kind,
            status=JobStatus.held if findings else JobStatus.queued,
            input=job_input,
            priority=plan.priority,
            reservation_id=reservation.id if reservation else None,
            cost_estimate=cost.credits,
        )
        session.add(job)
        if project is not None:
            project.status = ProjectStatus.rendering
            project.updated_at = utcnow()
            session.add(project)
        session.flush()
        if findings:
            flag_findings(session, job, findings)
        session.commit()
    except BaseException:
        session.rollback()
        if reservation is not None:
            ledger_client(settings.resolved_database_url).release(reservation.id)
        raise
    if not findings:
        scheduler(settings).wake.remote()
    return job


def _reserve(
    settings: Settings, user_id: UUID, amount: int, key: str, job_id: UUID
) -> credits.ReservationInfo:
    ledger = ledger_client(settings.resolved_database_url)
    reservation = ledger.reserve(user_id, amount, key, job_id)
    if reservation.job_id == job_id:
        metrics.credits("reserved", reservation.amount)
    return reservation


# -- control ---------------------------------------------------------------------------------


def _control(settings: Settings, user: User | None, job_id: UUID, to: JobStatus) -> Job:
    with session_scope(settings.resolved_database_url) as session:
        job = session.exec(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or (user is not None and job.user_id != user.id):
            raise NotFound(f"job {job_id} not found")
        transition(session, job, to)
        if to is JobStatus.cancelled:
            _release(session, job)
            if job.project_id:
                _project_after(session, job.project_id, ProjectStatus.draft)
        session.commit()
    if to is JobStatus.cancelled:
        metrics.credits("released", job.cost_estimate)
    if to in (JobStatus.cancelled, JobStatus.paused):
        ray.get(scheduler(settings).cancel.remote(job_id))
    if to is JobStatus.queued:
        scheduler(settings).wake.remote()
    return job


def cancel_job(settings: Settings, user: User, job_id: UUID) -> Job:
    return _control(settings, user, job_id, JobStatus.cancelled)


def pause_job(settings: Settings, user: User, job_id: UUID) -> Job:
    return _control(settings, user, job_id, JobStatus.paused)


def resume_job(settings: Settings, user: User, job_id: UUID) -> Job:
    return _control(settings, user, job_id, JobStatus.queued)


def release_hold(settings: Settings, job_id: UUID) -> Job:
    """Moderation approved a held job: it reserves its credits now and joins the queue, or
    fails (charging nothing) when the user can no longer afford it."""
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        user_id, cost, reserved = job.user_id, job.cost_estimate, job.reservation_id
    if reserved is None and cost > 0:
        try:
            reservation = _reserve(settings, user_id, cost, f"job:{job_id}", job_id)
        except InsufficientCredits as error:
            with session_scope(settings.resolved_database_url) as session:
                job = session.get(Job, job_id)
                assert job is not None
                transition(session, job, JobStatus.failed, error=error.detail)
            return job
        with session_scope(settings.resolved_database_url) as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.reservation_id = reservation.id
    return _control(settings, None, job_id, JobStatus.queued)


def reject_held(settings: Settings, job_id: UUID, reason: str) -> Job:
    """Moderation rejected a held job: it fails and its credits are released."""
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        transition(session, job, JobStatus.failed, error=f"rejected by moderation: {reason}")
        _release(session, job)
        if job.project_id:
            _project_after(session, job.project_id, ProjectStatus.draft)
    return job


# -- credits ---------------------------------------------------------------------------------


def balance(settings: Settings, user: User) -> tuple[int, int]:
    result = ledger_client(settings.resolved_database_url).balance(user.id)
    return result.available, result.held


def topup(settings: Settings, user: User, credits: int, idempotency_key: str) -> tuple[int, int]:
    from pipeline.ledger.payments import TestPaymentProvider
    from pipeline.ledger.payments import topup as pay

    pay(settings.resolved_database_url, TestPaymentProvider(), user.id, credits, idempotency_key)
    return balance(settings, user)


def on_user_registered(settings: Settings, user: User) -> None:
    """The plan's monthly credits, granted once per user and month (idempotent by key)."""
    with session_scope(settings.resolved_database_url) as session:
        plan = _plan(session, user)
    month = utcnow().strftime("%Y-%m")
    key = f"grant:{user.id}:{month}"
    ledger = ledger_client(settings.resolved_database_url)
    ledger.credit(user.id, plan.monthly_credits, "grant", key, "system", "monthly grant")


def grant_credits(
    settings: Settings, admin: User, user_id: UUID, amount: int, memo: str
) -> tuple[int, int]:
    ledger = ledger_client(settings.resolved_database_url)
    key = f"admin-grant:{uuid.uuid4()}"
    ledger.credit(user_id, amount, "adjustment", key, f"admin:{admin.id}", memo)
    result = ledger.balance(user_id)
    return result.available, result.held


# -- running ---------------------------------------------------------------------------------

OUTPUT_KINDS = {
    ".mp4": "film",
    ".srt": "subtitles",
    ".vtt": "subtitles",
    ".png": "image",
    ".wav": "audio",
    ".mid": "music",
    ".json": "plan",
}


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
    quality = job_input.get("quality", "animatic")
    try:
        inputs = RenderInputs(
            settings=settings,
            spec=FilmSpec.model_validate(job_input["spec"]),
            engines=EngineChoice(**job_input["engines"]),
            stop_at=job_input.get("stop_at"),
            job_id=job_id,
        )
        report, files = render_film(inputs, _reporter(url, job_id))
        stored = store_outputs(settings, files)
    except Exception as error:  # a malformed job or a failed render: it fails with the reason
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
        }
        job.warnings = report.warnings
        transition(session, job, JobStatus.succeeded)
        if job.reservation_id is not None:
            captured = credits.capture(session, job.reservation_id, min(used, job.cost_estimate))
        if job.project_id:
            project = session.get(Project, job.project_id)
            assert project is not None
            project.outputs = outputs
            _project_after(session, job.project_id, ProjectStatus.ready)
    if job.reservation_id is not None:
        metrics.credits("captured", captured.captured)
        metrics.credits("released", captured.amount - captured.captured)


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
        _release(session, job)
        if job.project_id:
            _project_after(session, job.project_id, ProjectStatus.failed)
    metrics.credits("released", job.cost_estimate)


def _release(session: Session, job: Job) -> None:
    """Gives a job's reservation back, in the transaction that ends the job."""
    if job.reservation_id is not None:
        credits.release(session, job.reservation_id)


def _reason(error: BaseException) -> str:
    """The user-facing reason: a domain error's detail, else the innermost cause's message."""
    cause: BaseException = error
    while isinstance(cause, ray.exceptions.RayTaskError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, StudioError):
        return cause.detail
    return f"{type(cause).__name__}: {cause}".splitlines()[0][:500]


def _reporter(url: str, job_id: UUID) -> Any:
    def report(stage: str, status: str, progress: float) -> None:
        with session_scope(url) as session:
            job = session.get(Job, job_id)
            if job is not None and job.status == JobStatus.running:
                set_stage(session, job, stage, status, progress)

    return report


def _project_after(session: Session, project_id: UUID, status: ProjectStatus) -> None:
    project = session.get(Project, project_id)
    if project is not None:
        project.status = status
        project.updated_at = utcnow()
        session.add(project)
