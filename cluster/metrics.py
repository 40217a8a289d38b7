"""The studio's metrics, recorded through `ray.util.metrics` so that they reach the Ray dashboard
and Prometheus through each node's metrics agent, beside Ray's and Serve's own.

Ray prefixes every metric with `ray_`: `studio_jobs_total` is scraped as `ray_studio_jobs_total`
and a histogram `studio_x_seconds` as `ray_studio_x_seconds_bucket|_sum|_count`
(`prometheus_names()`). Each process creates the metric objects it uses on first use; every
process exports its own series (label `WorkerId`), so queries aggregate with `sum by` for
counters and histograms and `max by` for gauges that several replicas may sample.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from ray.util.metrics import Counter, Gauge, Histogram, Metric
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.models import Job, JobStatus
from db.session import session_scope
from models.registry import ENGINES, Capability

Kind = Literal["counter", "gauge", "histogram"]
CreditOp = Literal["reserved", "captured", "released"]

PREFIX = "ray_"
REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
STAGE_BUCKETS = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]
UNMATCHED_ROUTE = "<unmatched>"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "studio_http_requests_total",
            "counter",
            "HTTP requests answered by the API, by route template, method and status.",
            ("route", "method", "status"),
        ),
        MetricSpec(
            "studio_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request, by route template.",
            ("route",),
            tuple(REQUEST_BUCKETS),
        ),
        MetricSpec(
            "studio_job_queue_depth",
            "gauge",
            "Jobs waiting to start, by the engine they wait for.",
            ("engine",),
        ),
        MetricSpec(
            "studio_jobs_total",
            "counter",
            "Job state changes, by the state entered.",
            ("state",),
        ),
        MetricSpec("studio_jobs", "gauge", "Jobs now in each state.", ("state",)),
        MetricSpec(
            "studio_stage_duration_seconds",
            "histogram",
            "Time one render stage took, by stage and engine.",
            ("stage", "engine"),
            tuple(STAGE_BUCKETS),
        ),
        MetricSpec(
            "studio_credits_total",
            "counter",
            "Credits moved by the ledger: reserved, captured or released.",
            ("op",),
        ),
        MetricSpec(
            "studio_engine_replicas",
            "gauge",
            "Running replicas of each engine's Serve application.",
            ("engine",),
        ),
        MetricSpec("studio_ledger_errors_total", "counter", "Ledger operations that failed.", ()),
    )
}

_metrics: dict[str, Metric] = {}
_lock = threading.Lock()
M = TypeVar("M", bound=Metric)


def _metric(name: str, kind: type[M]) -> M:
    """This process's metric object for `name`, created on first use."""
    metric = _metrics.get(name)
    if metric is None:
        with _lock:
            metric = _metrics.get(name)
            if metric is None:
                metric = _metrics[name] = _create(METRICS[name])
    assert isinstance(metric, kind)
    return metric


def _create(spec: MetricSpec) -> Metric:
    if spec.kind == "counter":
        return Counter(spec.name, spec.description, spec.tag_keys)
    if spec.kind == "gauge":
        return Gauge(spec.name, spec.description, spec.tag_keys)
    return Histogram(spec.name, spec.description, list(spec.boundaries), spec.tag_keys)


def prometheus_names() -> set[str]:
    """Every series name the studio's metrics appear under in Prometheus."""
    names = set()
    for spec in METRICS.values():
        name = PREFIX + spec.name
        if spec.kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    _metric("studio_http_requests_total", Counter).inc(
        tags={"route": route, "method": method, "status": str(status)}
    )
    _metric("studio_http_request_duration_seconds", Histogram).observe(
        seconds, tags={"route": route}
    )


def job_state(state: JobStatus | str) -> None:
    """Counts one job entering `state`; call it on every transition."""
    _metric("studio_jobs_total", Counter).inc(tags={"state": str(state)})


def jobs_in_state(counts: Mapping[str, int]) -> None:
    gauge = _metric("studio_jobs", Gauge)
    for state, count in counts.items():
        gauge.set(count, tags={"state": state})


def queue_depth(engine: str, depth: int) -> None:
    _metric("studio_job_queue_depth", Gauge).set(depth, tags={"engine": engine})


def stage_done(stage: str, engine: str, seconds: float) -> None:
    _metric("studio_stage_duration_seconds", Histogram).observe(
        seconds, tags={"stage": stage, "engine": engine}
    )


def credits(op: CreditOp, amount: int) -> None:
    """Counts credits moved by `op`; zero amounts move nothing and are not recorded."""
    if op not in ("reserved", "captured", "released"):
        raise ValueError(f"unknown credit operation {op!r}")
    if amount < 0:
        raise ValueError(f"credit amounts are positive, got {amount}")
    if amount:
        _metric("studio_credits_total", Counter).inc(amount, tags={"op": op})


def engine_replicas(engine: str, replicas: int) -> None:
    _metric("studio_engine_replicas", Gauge).set(replicas, tags={"engine": engine})


def ledger_error() -> None:
    _metric("studio_ledger_errors_total", Counter).inc()


def job_engine(job: Job) -> str:
    """The engine a job is counted under: the Serve application of the engine that dominates it
    (the voice engine of an audio job, the video engine of a render), as in
    `studio_engine_replicas`."""
    from pipeline.jobs.submission import (
        ENGINE_JOBS,  # the render stack, only for the callers that sample
    )

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
    jobs_in_state(counts)
    depths = dict.fromkeys((info.deployment for info in ENGINES), 0)
    for job in session.exec(select(Job).where(Job.status == JobStatus.queued)):
        engine = job_engine(job)
        depths[engine] = depths.get(engine, 0) + 1
    for engine, depth in depths.items():
        queue_depth(engine, depth)
    return counts


def sample_engine_replicas() -> dict[str, int]:
    """Sets `studio_engine_replicas{engine}` for every engine from Serve's status: the RUNNING
    replicas of its application, zero when it is not deployed. Needs a connected Ray."""
    from ray import serve
    from ray.serve.schema import ReplicaState

    applications = serve.status().applications
    replicas = {}
    for engine in (info.deployment for info in ENGINES):
        deployments = applications[engine].deployments if engine in applications else {}
        replicas[engine] = sum(
            deployment.replica_states.get(ReplicaState.RUNNING, 0)
            for deployment in deployments.values()
        )
        engine_replicas(engine, replicas[engine])
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


class MetricsMiddleware:
    """ASGI middleware recording every HTTP request by its route template (`/api/jobs/{id}`,
    never the raw path, so that ids cannot explode the label set); unmatched paths share
    one label. Add it outermost so that error responses are timed too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope["method"] if scope["method"] in HTTP_METHODS else "OTHER"
            observe_request(route_template(scope), method, status, time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route's path template, as the router left it in the scope."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED_ROUTE
