"""The `RenderScheduler` actor: starts queued jobs, highest plan priority first (renders at most
one per `render_slot` of the cluster at a time, up to `render_jobs_max`; publishes when their
retry time has come), and cancels their task trees on request.

The jobs table is the queue and the source of truth. A (re)started scheduler re-queues the jobs it
finds `running` (their tasks died with the old scheduler or cluster) and runs them again; the
stage cache makes the rerun resume where the old one stopped, and settling by reservation id
makes sure each job is charged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from uuid import UUID

import ray
from sqlmodel import col, select

from cluster.settings import Settings
from db.models import Job, JobStatus
from db.session import database_tag, session_scope
from db.types import utcnow
from pipeline import storage_gc
from pipeline.jobs.running import fail_job, run_job
from pipeline.ledger import billing
from pipeline.lifecycle import transition
from pipeline.notify import outbox
from pipeline.publish.publishing import publish_task

log = logging.getLogger(__name__)
POLL_S = 1.0
MAX_ATTEMPTS = 3


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RenderScheduler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.running: dict[UUID, ray.ObjectRef] = {}
        self.kinds: dict[UUID, str] = {}
        self._wake = asyncio.Event()
        self._notifying: asyncio.Future[int] | None = None
        self._requeue_orphans()
        self._loop = asyncio.get_event_loop().create_task(self._run())

    def _requeue_orphans(self) -> None:
        with session_scope(self.settings.resolved_database_url) as session:
            orphans = session.exec(select(Job).where(Job.status == JobStatus.running)).all()
            for job in orphans:
                transition(session, job, JobStatus.queued, error="re-queued after a restart")

    async def wake(self) -> None:
        self._wake.set()

    async def cancel(self, job_id: UUID) -> bool:
        """Stops a job's task tree; its state in the database is the caller's to set."""
        ref = self.running.pop(job_id, None)
        if ref is None:
            return False
        del self.kinds[job_id]
        stop(ref)
        return True

    async def running_jobs(self) -> list[UUID]:
        return list(self.running)

    async def render_capacity(self) -> int:
        return render_capacity(self.settings)

    async def _run(self) -> None:
        while True:
            try:
                self._reap()
                self._start_queued()
                billing.sweep_when_due(self.settings)
                storage_gc.collect_when_due(self.settings)
                self._notify()
            except Exception:
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()

    def _notify(self) -> None:
        """Sends due job notifications in a thread, one pass at a time, so that a slow
        webhook receiver never holds up the scheduler."""
        if self._notifying is not None:
            if not self._notifying.done():
                return
            if self._notifying.exception() is not None:
                log.error("notification pass failed", exc_info=self._notifying.exception())
        self._notifying = asyncio.ensure_future(
            asyncio.to_thread(outbox.deliver_due, self.settings)
        )

    def _reap(self) -> None:
        done, _ = ray.wait(list(self.running.values()), num_returns=len(self.running), timeout=0)
        finished = set(done)
        for job_id, ref in list(self.running.items()):
            if ref in finished:
                del self.running[job_id]
                del self.kinds[job_id]
                self._requeue_if_lost(job_id, ref)

    def _requeue_if_lost(self, job_id: UUID, ref: ray.ObjectRef) -> None:
        """A job whose task died without ending it (its worker or node was lost) goes back to
        the queue, up to MAX_ATTEMPTS runs; then it fails and its credits are released."""
        try:
            ray.get(ref)
            return
        except ray.exceptions.TaskCancelledError:
            return
        except ray.exceptions.RayError as error:
            reason = f"its task was lost: {type(error).__name__}"
        with session_scope(self.settings.resolved_database_url) as session:
            job = session.get(Job, job_id)
            if job is None or job.status != JobStatus.running:
                return
            if job.attempts < MAX_ATTEMPTS:
                transition(session, job, JobStatus.queued, error=f"re-queued: {reason}")
                return
        fail_job(self.settings, job_id, f"gave up after {MAX_ATTEMPTS} attempts: {reason}")

    def _start_queued(self) -> None:
        """Launches due queued jobs in priority order: renders up to `render_capacity` at a
        time, publishes (network-bound) whenever their retry time has come."""
        free = render_capacity(self.settings) - sum(
            1 for kind in self.kinds.values() if kind != "publish"
        )
        now = utcnow()
        with session_scope(self.settings.resolved_database_url) as session:
            queued = session.exec(
                select(Job)
                .where(Job.status == JobStatus.queued)
                .order_by(col(Job.priority).desc(), col(Job.created_at))
            ).all()
        for job in queued:
            if job.id in self.running:
                continue
            if job.type == "publish":
                retry_at = job.output.get("retry_at")
                if retry_at is None or datetime.fromisoformat(retry_at) <= now:
                    self._launch(job, publish_task.remote(self.settings, job.id))
            elif free > 0:
                self._launch(job, run_job.remote(self.settings, job.id))
                free -= 1

    def _launch(self, job: Job, ref: ray.ObjectRef) -> None:
        self.running[job.id] = ref
        self.kinds[job.id] = job.type


def render_capacity(settings: Settings) -> int:
    """How many renders may run at once now: one per `render_slot` of the cluster (read on
    every pass, so it follows the nodes that join and leave), at most `render_jobs_max`. A
    render's CPU-heavy stages take those slots, so more renders would only wait for them."""
    slots = int(ray.cluster_resources().get("render_slot", 0))
    return min(settings.render_jobs_max, slots)


def stop(ref: ray.ObjectRef) -> None:
    """Ends a job's task and the stage tasks it started by killing their worker processes.

    A gentler cancel raises KeyboardInterrupt wherever the task happens to be, and the worker lives
    on to run later jobs. Interrupted inside Ray's first export of a stage function, it is left
    believing the function exported when it never was: every later job it runs hangs on that
    stage ("This worker was asked to execute a function that has not been registered"). A killed
    worker takes any such half-done state with it. Its database transaction rolls back, and the
    stage cache and storage replace files only once complete."""
    ray.cancel(ref, force=True, recursive=True)


def scheduler_name(database_url: str) -> str:
    """The scheduler actor's name: one scheduler per database."""
    return f"render_scheduler-{database_tag(database_url)}"


def scheduler(settings: Settings) -> ray.actor.ActorHandle:
    """The scheduler of the settings' database, started on first use."""
    return RenderScheduler.options(  # type: ignore[attr-defined,no-any-return]
        name=scheduler_name(settings.resolved_database_url),
        namespace="studio",
        lifetime="detached",
        get_if_exists=True,
    ).remote(settings)
