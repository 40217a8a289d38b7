"""The job lifecycle: the state machine every job kind (render, engine, publish) goes through,
in one place: the allowed transitions, the one function that makes them (recording each in the
job log and counting it), stage progress, and settling a finished job's credits. It sits below
the job domains that use it (`pipeline.jobs` starts and runs jobs, `pipeline.publish` runs
publish jobs), so that neither has to import the other for it.

```
queued  ─► running | cancelled | held | paused
running ─► succeeded | failed | cancelled | paused | queued (re-queued, or waiting to retry)
paused  ─► queued | cancelled
held    ─► queued | cancelled | failed            (held for moderation)
succeeded, failed, cancelled: terminal
```
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import Session, col

from cluster import metrics
from db.models import Job, JobLog, JobStatus
from db.types import utcnow
from pipeline.errors import Conflict, IllegalTransition, NotFound
from pipeline.ledger.interface import Ledger
from pipeline.ledger.rules import ReservationInfo
from pipeline.notify import outbox

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.queued: frozenset(
        {JobStatus.running, JobStatus.cancelled, JobStatus.held, JobStatus.paused}
    ),
    JobStatus.running: frozenset(
        {
            JobStatus.succeeded,
            JobStatus.failed,
            JobStatus.cancelled,
            JobStatus.paused,
            JobStatus.queued,
        }
    ),
    JobStatus.paused: frozenset({JobStatus.queued, JobStatus.cancelled}),
    JobStatus.held: frozenset({JobStatus.queued, JobStatus.cancelled, JobStatus.failed}),
    JobStatus.succeeded: frozenset(),
    JobStatus.failed: frozenset(),
    JobStatus.cancelled: frozenset(),
}
TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)


class StageStatus(StrEnum):
    """A stage's status in `job.stages`; `waiting` is a stage stopped until its job's retry time
    (its job went back to the queue, as a publish job does when YouTube's quota is spent)."""

    pending = "pending"
    running = "running"
    cached = "cached"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"
    waiting = "waiting"


STAGE_DONE = frozenset({StageStatus.cached, StageStatus.succeeded, StageStatus.skipped})


def can_transition(current: JobStatus | str, to: JobStatus | str) -> bool:
    return JobStatus(to) in TRANSITIONS[JobStatus(current)]


def transition(session: Session, job: Job, to: JobStatus | str, *, error: str | None = None) -> Job:
    """Moves a job (loaded in `session`) to `to` and logs it, and queues its owner's
    notifications when it ends (`pipeline.notify.outbox`); the caller commits. The change is
    a compare-and-set on the status the job had when loaded, so of two processes racing (a
    cancel against a finish) one wins and the other gets IllegalTransition."""
    current, to = JobStatus(job.status), JobStatus(to)
    if to not in TRANSITIONS[current]:
        raise IllegalTransition(
            f"job {job.id} cannot go from {current} to {to}", current=current, to=to
        )
    now = utcnow()
    values: dict[str, object] = {"status": to, "updated_at": now}
    if to == JobStatus.running:
        values["started_at"] = job.started_at or now
    if to in TERMINAL:
        values["completed_at"] = now
    if to == JobStatus.succeeded:
        values["progress"] = 100
    if error is not None:
        values["error"] = error
    result = session.execute(
        update(Job).where(col(Job.id) == job.id, col(Job.status) == current).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(job)
        raise IllegalTransition(
            f"job {job.id} is {job.status} now, not {current}", current=job.status, to=to
        )
    message = f"{current} -> {to}" + (f": {error}" if error else "")
    level = "error" if to == JobStatus.failed else "info"
    session.add(JobLog(job_id=job.id, stage="job", level=level, message=message))
    if to in TERMINAL:
        outbox.enqueue(session, job, to)
    session.flush()
    metrics.job_state(to)
    return job


def set_stage(
    session: Session,
    job: Job,
    stage: str,
    status: StageStatus | str,
    progress: float | None = None,
    *,
    weights: Mapping[str, float] | None = None,
) -> Job:
    """Records a stage's status and progress (0-100; a done stage is 100) in `job.stages` and
    sets `job.progress` to the mean over the job's stages, weighted by `weights` (1 for a stage
    it does not name), so a job should register all its stages (pending) up front. The job row
    is re-read under a lock first, so stages reported from several workers are not lost; the
    caller commits."""
    status = StageStatus(status)
    session.refresh(job, with_for_update=True)
    stages = dict(job.stages)
    previous = stages.get(stage, {})
    if status in STAGE_DONE:
        progress = 100
    elif progress is None:
        progress = previous.get("progress", 0)
    stages[stage] = {"status": status.value, "progress": max(0, min(100, round(progress)))}
    job.stages = stages
    weight = {name: (weights or {}).get(name, 1.0) for name in stages}
    done = sum(weight[name] * s["progress"] for name, s in stages.items())
    job.progress = round(done / sum(weight.values()))
    job.updated_at = utcnow()
    if previous.get("status") != status.value:
        level = "error" if status == StageStatus.failed else "info"
        session.add(JobLog(job_id=job.id, stage=stage, level=level, message=status.value))
    session.add(job)
    session.flush()
    return job


def settle(
    session: Session, job_id: uuid.UUID, ledger: Ledger, used_credits: int = 0
) -> ReservationInfo | None:
    """Settles an ended job's reservation through `ledger`, reading the job in `session`: a
    succeeded job pays `used_credits` (at most what was reserved) and gets the rest back; a
    failed or cancelled one gets everything back. The transaction that ends a job passes a
    `DatabaseLedger` on its own session, so the job's end and its credits commit together.
    Idempotent: settling again changes nothing. None if the job reserved nothing."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    status, reservation_id = JobStatus(job.status), job.reservation_id
    if reservation_id is None:
        return None
    if status == JobStatus.succeeded:
        return ledger.capture(reservation_id, used_credits)
    if status in TERMINAL:
        return ledger.release(reservation_id)
    raise Conflict(f"job {job_id} is {status}: settle it when it has ended")
