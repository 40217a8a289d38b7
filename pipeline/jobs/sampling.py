"""The studio's sampled gauges: jobs by state and queue depth by engine (from the jobs table) and
running replicas per engine (from Serve's status). Counters are recorded where things happen;
these gauges describe the whole studio, so a long-lived process (the API ingress) samples them
periodically with `sample_forever`, whichever process changed the rows."""

from __future__ import annotations

import asyncio
import logging

from ray import serve
from ray.serve.schema import ReplicaState
from sqlalchemy import func
from sqlmodel import Session, select

from cluster import metrics
from db.models import Job, JobStatus
from db.session import session_scope
from models.registry import ENGINES, Capability
from pipeline.jobs.submission import ENGINE_JOBS

log = logging.getLogger(__name__)


def job_engine(job: Job) -> str:
    """The engine a job is counted under: the Serve application of the engine that dominates it
    (the voice engine of an audio job, the video engine of a render), as in
    `studio_engine_replicas`."""
    capability = ENGINE_JOBS.get(job.type, Capability.video)
    engine = job.input.get("engines", {}).get(capability.value, "unknown")
    return f"{capability.value}-{engine}"


def sample_jobs(session: Session) -> dict[str, int]:
    """Sets `studio_jobs{state}` for every state and `studio_job_queue_depth{engine}` for every
    engine (zeros included) from the jobs table, so that a periodic caller keeps both true
    whichever process changed the rows; returns the counts by state."""
    rows = session.exec(select(Job.status, func.count()).group_by(Job.status)).all()
    counts = {state.value: 0 for state in JobStatus}
    counts.update({str(state): count for state, count in rows})
    metrics.jobs_in_state(counts)
    depths = dict.fromkeys((info.deployment for info in ENGINES), 0)
    for job in session.exec(select(Job).where(Job.status == JobStatus.queued)):
        engine = job_engine(job)
        depths[engine] = depths.get(engine, 0) + 1
    for engine, depth in depths.items():
        metrics.queue_depth(engine, depth)
    return counts


def sample_engine_replicas() -> dict[str, int]:
    """Sets `studio_engine_replicas{engine}` for every engine from Serve's status: the RUNNING
    replicas of its application, zero when it is not deployed. Needs a connected Ray."""
    applications = serve.status().applications
    replicas = {}
    for engine in (info.deployment for info in ENGINES):
        deployments = applications[engine].deployments if engine in applications else {}
        replicas[engine] = sum(
            deployment.replica_states.get(ReplicaState.RUNNING, 0)
            for deployment in deployments.values()
        )
        metrics.engine_replicas(engine, replicas[engine])
    return replicas


async def sample_forever(database_url: str, interval_s: float = 15.0) -> None:
    """Keeps the sampled gauges (jobs by state, queue depths, engine replicas) fresh until
    cancelled: a background task of a long-lived process such as the API ingress."""
    while True:
        try:
            await asyncio.to_thread(_sample, database_url)
        except Exception:  # a failed sample must not end the loop; the next one may work
            log.exception("sampling the studio's gauges failed")
        await asyncio.sleep(interval_s)


def _sample(database_url: str) -> None:
    with session_scope(database_url) as session:
        sample_jobs(session)
    sample_engine_replicas()
