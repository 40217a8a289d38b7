"""The studio's metrics, recorded through `ray.util.metrics` so that they reach the Ray dashboard
and Prometheus through each node's metrics agent, beside Ray's and Serve's own.

Ray prefixes every metric with `ray_`: `studio_jobs_total` is scraped as `ray_studio_jobs_total`
and a histogram `studio_x_seconds` as `ray_studio_x_seconds_bucket|_sum|_count`
(`prometheus_names()`). Each process creates the metric objects it uses on first use; every
process exports its own series (label `WorkerId`), so queries aggregate with `sum by` for
counters and histograms and `max by` for gauges that several replicas may sample.

Only the metrics and their recording functions live here, at the bottom of the studio: the
callers record (HTTP requests in `deployments.api.metrics_middleware`, the sampled gauges in
`pipeline.jobs.sampling`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from ray.util.metrics import Counter, Gauge, Histogram, Metric

Kind = Literal["counter", "gauge", "histogram"]
CreditOp = Literal["reserved", "captured", "released"]

PREFIX = "ray_"
REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
STAGE_BUCKETS = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]


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
        MetricSpec(
            "studio_storage_bytes",
            "gauge",
            "Bytes of content-addressed objects in storage at the last collection, by kind: "
            "referenced by the database, named only by stage-cache entries, or unreferenced "
            "but within the grace period.",
            ("kind",),
        ),
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


def job_state(state: str) -> None:
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


def storage_bytes(kind: str, size: int) -> None:
    _metric("studio_storage_bytes", Gauge).set(size, tags={"kind": kind})
