"""Jobs from submission to control: what the API and the CLI call.

Submission checks everything that can be checked before money moves (spec, plan limits, model
licences, voices, images), reserves the estimate through the `CreditLedger`, writes the job and
wakes the scheduler, which starts it (`pipeline.jobs.running`). Cancel, pause and resume go
through the job state machine; a cancel releases the reservation in the transaction that ends
the job.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal
from uuid import UUID

import ray
from sqlalchemy import update
from sqlmodel import Session, col, func, select

from cluster import metrics
from cluster.settings import Settings
from db.models import Asset, Job, JobStatus, Plan, Project, ProjectStatus, User, YoutubeVideo
from db.session import session_scope
from db.types import utcnow
from models.errors import DrivingVideoRefused
from models.espeak import supports
from models.neural.driving import probe_driving_video
from models.registry import Capability
from pipeline.errors import (
    Conflict,
    InsufficientCredits,
    NotFound,
    SpecInvalid,
)
from pipeline.fields import StrictInput
from pipeline.jobs.moderation import check_spec_texts, flag_findings, spec_texts
from pipeline.jobs.running import release_credits, set_project_status
from pipeline.jobs.scheduler import scheduler
from pipeline.ledger import pricing, store
from pipeline.ledger.actor import ledger_client
from pipeline.ledger.rules import ReservationInfo
from pipeline.lifecycle import transition
from pipeline.publish.publishing import PublishRequest, create_publish_job
from pipeline.render import engine_choice
from pipeline.render.dag import EngineChoice, StopAt
from pipeline.render.images import ImageInvalid, image_header
from pipeline.render.spec import FileRef, FilmSpec
from pipeline.storage import open_storage

log = logging.getLogger(__name__)
ACTIVE = (JobStatus.queued, JobStatus.running, JobStatus.paused, JobStatus.held)


class RenderRequest(StrictInput):
    quality: Literal["animatic", "final"] = "animatic"
    stop_at: StopAt | None = None
    dry_run: bool = False


# -- submission ------------------------------------------------------------------------------


def choose_engines(settings: Settings, quality: str, plan: Plan, spec: FilmSpec) -> EngineChoice:
    """The engines for a render: the CPU engines for an animatic; for a final render, per
    capability the first engine of the Serve config's choice that the plan's licences allow and
    that is deployed and healthy. A plan that allows none is refused here, at submit, with the
    capability and the engines considered; an engine is never used silently."""
    return engine_choice.choose_engines(settings, quality, plan.code, plan.allowed_licences, spec)


def check_spec(settings: Settings, session: Session, user: User, spec: FilmSpec) -> None:
    """Everything about a spec that would otherwise fail later, refused now with a 4xx: a
    voice espeak-ng lacks, an asset that is not the user's or not of its kind, an image larger
    than the pixel cap, a driving video past its limits (read from headers, never decoded
    here)."""
    for number, scene in enumerate(spec.scenes):
        if scene.narration and not supports(scene.voice):
            raise SpecInvalid(
                f"scenes.{number}.voice: no voice for {scene.voice.gender} "
                f"{scene.voice.age} in language {scene.voice.language!r}",
                field=f"scenes.{number}.voice",
            )
        for name in scene.podcast.speakers if scene.podcast else ():
            voice = spec.character(name).voice
            if not supports(voice):
                raise SpecInvalid(
                    f"scenes.{number}.podcast: no voice for {name!r} ({voice.gender} "
                    f"{voice.age} in language {voice.language!r})",
                    field=f"scenes.{number}.podcast.speakers",
                )
    for where, asset in check_spec_assets(session, user, spec):
        # Headers only: images and driving videos are decoded in the render, under the same caps.
        try:
            data = open_storage(settings).get_bytes(asset.storage_key)
        except (OSError, KeyError):
            raise SpecInvalid(f"{where}: asset {asset.id} is not readable", field=where) from None
        try:
            if asset.content_type.startswith("video/"):
                probe_driving_video(data)
            else:
                image_header(data, f"{where}: asset {asset.id}")
        except ImageInvalid as error:
            raise SpecInvalid(error.detail, field=where) from None
        except DrivingVideoRefused as error:
            raise SpecInvalid(f"{where}: asset {asset.id}: {error.detail}", field=where) from None


def check_spec_assets(session: Session, user: User, spec: FilmSpec) -> list[tuple[str, Asset]]:
    """The assets a spec names (scene images, talking characters, character sheets' references,
    driving videos), each with where (`scenes.0.image`): SpecInvalid naming the place when one
    is missing, another user's or not of its kind. A spec that comes through the API names files
    by asset only: a file path (for specs read by the CLI) is refused here."""
    refs: list[tuple[str, FileRef | None]] = [
        (f"characters.{n}.reference", sheet.reference) for n, sheet in enumerate(spec.characters)
    ]
    for number, scene in enumerate(spec.scenes):
        refs += [
            (f"scenes.{number}.{name}", getattr(scene, name))
            for name in ("image", "character", "driving_video")
        ]
    assets = []
    for where, ref in refs:
        if ref is None:
            continue
        if ref.asset_id is None:
            raise SpecInvalid(
                f"{where}: name an uploaded {ref.kind} by its asset id; file paths are not "
                "accepted",
                field=where,
            )
        refused = SpecInvalid(f"{where}: no {ref.kind} asset {ref.asset_id}", field=where)
        try:
            asset = owned_asset(session, user, ref.asset_id)
        except NotFound:
            raise refused from None
        if not asset.content_type.startswith(f"{ref.kind}/"):
            raise refused
        assets.append((where, asset))
    return assets


def _plan(session: Session, user: User) -> Plan:
    plan = session.exec(select(Plan).where(Plan.code == user.plan_code)).one()
    return plan


def _claim_render_slot(session: Session, user: User, plan: Plan) -> None:
    """Refuses (PlanLimit) a rendering job, a film or a single-engine job, past the plan's
    renders at a time. Locks the user's row first, with an UPDATE (a row lock on PostgreSQL,
    the write lock on SQLite) held until the caller commits the job, so that concurrent
    submissions of one user each count the jobs of those that went before."""
    session.exec(
        update(User).where(col(User.id) == user.id).values(updated_at=col(User.updated_at))
    )
    active = session.exec(
        select(func.count())
        .select_from(Job)
        .where(Job.user_id == user.id, col(Job.status).in_(ACTIVE), col(Job.type).in_(RENDERING))
    ).one()
    pricing.check_concurrency(plan, active)


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


def owned_asset(session: Session, user: User, asset_id: UUID) -> Asset:
    asset = session.get(Asset, asset_id)
    if asset is None or asset.owner_id != user.id:
        raise NotFound(f"asset {asset_id} not found")
    return asset


def delete_project(session: Session, project: Project) -> None:
    """Deletes a project with its jobs and asset rows; its YouTube videos stay, unlinked.
    Stored files stay too: they are content-addressed and may be shared through the stage
    cache. A project with an unfinished job is refused: cancel the job first. The caller
    commits, so that an admin's deletion is audited in the same transaction."""
    active = session.exec(
        select(Job.id).where(Job.project_id == project.id, col(Job.status).in_(ACTIVE))
    ).first()
    if active is not None:
        raise Conflict(f"job {active} of this project is not finished: cancel it first")
    session.exec(
        update(YoutubeVideo)
        .where(col(YoutubeVideo.project_id) == project.id)
        .values(project_id=None)
    )
    session.delete(project)


def submit_render(
    settings: Settings,
    user: User,
    project_id: UUID,
    request: RenderRequest,
    *,
    regenerate: bool = False,
    idempotency_key: str | None = None,
) -> Job | pricing.Estimate:
    """Validates, estimates, reserves and queues a render of the project's spec.
    `regenerate` renders the current spec again; unchanged scenes come from the stage cache."""
    with session_scope(settings.resolved_database_url) as session:
        project = owned_project(session, user, project_id)
        spec = FilmSpec.model_validate(project.spec)
        plan = _plan(session, user)
        shape = pricing.RenderShape.from_spec(spec)
        pricing.check_plan(plan, shape)
        check_spec(settings, session, user, spec)
        engines = choose_engines(settings, request.quality, plan, spec)
        cost = pricing.estimate(shape, request.quality, request.stop_at)
        if request.dry_run:
            return cost
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
RENDERING = ("render", *ENGINE_JOBS)  # the job types the plan's renders at a time counts


def submit_engine_job(
    settings: Settings,
    user: User,
    kind: Literal["video", "audio", "lipsync", "music"],
    payload: dict[str, Any],
    *,
    dry_run: bool = False,
    idempotency_key: str | None = None,
) -> Job | pricing.Estimate:
    """A single-engine job (`/api/ai/*`): the payload is a one-scene film spec fragment, rendered
    through the same DAG so that it is priced, cached and settled the same way."""
    spec = _single_scene_spec(kind, payload)
    with session_scope(settings.resolved_database_url) as session:
        plan = _plan(session, user)
        shape = pricing.RenderShape.from_spec(spec)
        pricing.check_plan(plan, shape)
        check_spec(settings, session, user, spec)
        quality = payload.get("quality", "animatic")
        engines = choose_engines(settings, quality, plan, spec)
        stop_at: StopAt | None = "voice" if kind == "audio" else None
        cost = pricing.estimate(shape, quality, stop_at)
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


def submit_publish(
    settings: Settings, session: Session, user: User, project_id: UUID, request: PublishRequest
) -> Job:
    """Queues a publish job of the project's film (`pipeline.publish.publishing`) and wakes the
    scheduler, which starts it as it starts every job."""
    job = create_publish_job(session, user, project_id, request)
    scheduler(settings).wake.remote()
    return job


def _enqueue(
    settings: Settings,
    session: Session,
    user: User,
    plan: Plan,
    kind: str,
    job_input: dict[str, Any],
    cost: pricing.Estimate,
    project: Project | None,
    idempotency_key: str | None,
) -> Job:
    """Reserve first, then write the job: a refused reservation leaves nothing behind, and a
    failed write (or one past the plan's renders at a time) releases the reservation. A
    retried submission (same idempotency key) finds its reservation already made, and gets the
    job that reservation belongs to. A submission that moderation flags is held and reserves
    nothing until a reviewer approves it."""
    job_id = uuid.uuid4()
    findings = check_spec_texts(spec_texts(FilmSpec.model_validate(job_input["spec"])), settings)
    reservation = None
    if not findings:
        key = f"job:{user.id}:{idempotency_key}" if idempotency_key else f"job:{job_id}"
        reservation = _reserve(settings, user.id, cost.credits, key, job_id)
        if reservation.job_id != job_id and (existing := session.get(Job, reservation.job_id)):
            return existing
    try:
        _claim_render_slot(session, user, plan)
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
) -> ReservationInfo:
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
            release_credits(session, job)
            if job.project_id:
                set_project_status(session, job.project_id, ProjectStatus.draft)
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
        release_credits(session, job)
        if job.project_id:
            set_project_status(session, job.project_id, ProjectStatus.draft)
    return job


# -- credits ---------------------------------------------------------------------------------


def balance(settings: Settings, user: User) -> tuple[int, int]:
    """Read from the database, not through the ledger actor: its writes commit before they
    answer, so a read sees every movement a caller was told about."""
    result = store.balance(settings.resolved_database_url, user.id)
    return result.available, result.held


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
    result = store.balance(settings.resolved_database_url, user_id)
    return result.available, result.held
