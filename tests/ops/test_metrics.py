"""The studio's metrics: recorded through `ray.util.metrics` in a Ray worker, they must appear on
the node's metrics export endpoint (what Prometheus scrapes) under their `ray_studio_*` names,
with their tags and values; the middleware labels requests by route template; the samplers set
the gauges from the jobs table and Serve's status."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import ray
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from cluster import metrics
from cluster.settings import Settings
from db.models import Job, JobStatus, User
from db.session import session_scope
from deployments.api.metrics_middleware import UNMATCHED_ROUTE, MetricsMiddleware
from deployments.engines import build_engine_app
from models.registry import ENGINES
from pipeline.jobs import sampling

SCRAPE_DEADLINE_S = 60


def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
    """This node's metrics export, as samples by name."""
    node = ray._private.worker.global_worker.node
    text = httpx.get(f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics").text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    """The sum over worker processes of the series of `name` carrying `labels`."""
    return sum(
        value
        for found, value in samples.get(name, [])
        if all(found.get(key) == wanted for key, wanted in labels.items())
    )


def eventually(check: Callable[[dict[str, Any]], None]) -> None:
    """Runs `check` on fresh scrapes until it passes: workers flush metrics every few seconds."""
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    while True:
        samples = scrape()
        try:
            check(samples)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@ray.remote(num_cpus=0.1)
def record(tag: str) -> None:
    route = f"/ops/{tag}/{{job_id}}"
    for seconds in (0.004, 0.02, 0.3):
        metrics.observe_request(route, "GET", 200, seconds)
    metrics.observe_request(route, "POST", 503, 0.01)
    metrics.queue_depth(f"video-{tag}", 4)
    metrics.job_state(tag)
    metrics.job_state(tag)
    metrics.jobs_in_state({tag: 7})
    metrics.stage_done("voice", f"voice-{tag}", 1.5)
    metrics.credits("reserved", 30)
    metrics.credits("captured", 20)
    metrics.credits("released", 10)
    metrics.engine_replicas(f"video-{tag}", 2)
    metrics.ledger_error()


@ray.remote(num_cpus=0.1)
class Api:
    """A FastAPI app with the middleware, called in a worker as a Serve replica would be."""

    def __init__(self, tag: str) -> None:
        app = FastAPI()
        app.add_middleware(MetricsMiddleware)

        @app.get(f"/{tag}/items/{{item_id}}")
        def item(item_id: int) -> dict[str, int]:
            return {"id": item_id}

        self.client = TestClient(app)
        self.tag = tag

    def call(self) -> list[int]:
        paths = [f"/{self.tag}/items/1", f"/{self.tag}/items/2", f"/{self.tag}/nowhere"]
        return [self.client.get(path).status_code for path in paths]


@pytest.mark.ray
def test_recorded_metrics_reach_the_metrics_endpoint(ray_session: None) -> None:
    tag = f"t{uuid.uuid4().hex[:8]}"
    ray.get(record.remote(tag))
    route = f"/ops/{tag}/{{job_id}}"

    def check(samples: dict[str, Any]) -> None:
        assert (
            total(
                samples, "ray_studio_http_requests_total", route=route, method="GET", status="200"
            )
            == 3
        )
        assert total(samples, "ray_studio_http_requests_total", route=route, status="503") == 1
        duration = "ray_studio_http_request_duration_seconds"
        assert total(samples, f"{duration}_count", route=route) == 4
        assert total(samples, f"{duration}_bucket", route=route, le="0.005") == 1
        assert total(samples, f"{duration}_bucket", route=route, le="0.025") == 3
        assert 0 < total(samples, f"{duration}_sum", route=route) < 4 * 0.5
        assert total(samples, "ray_studio_job_queue_depth", engine=f"video-{tag}") == 4
        assert total(samples, "ray_studio_jobs_total", state=tag) == 2
        assert total(samples, "ray_studio_jobs", state=tag) == 7
        stage = "ray_studio_stage_duration_seconds"
        assert total(samples, f"{stage}_count", stage="voice", engine=f"voice-{tag}") == 1
        assert total(samples, f"{stage}_bucket", engine=f"voice-{tag}", le="1.0") == 0
        assert total(samples, f"{stage}_bucket", engine=f"voice-{tag}", le="2.5") == 1
        assert total(samples, "ray_studio_credits_total", op="reserved") >= 30
        assert total(samples, "ray_studio_credits_total", op="captured") >= 20
        assert total(samples, "ray_studio_credits_total", op="released") >= 10
        assert total(samples, "ray_studio_engine_replicas", engine=f"video-{tag}") == 2
        assert total(samples, "ray_studio_ledger_errors_total") >= 1

    eventually(check)


@pytest.mark.ray
def test_middleware_labels_requests_by_route_template(ray_session: None) -> None:
    tag = f"t{uuid.uuid4().hex[:8]}"
    api = Api.remote(tag)
    assert ray.get(api.call.remote()) == [200, 200, 404]
    name = "ray_studio_http_requests_total"

    def check(samples: dict[str, Any]) -> None:
        assert total(samples, name, route=f"/{tag}/items/{{item_id}}", status="200") == 2
        assert total(samples, name, route=UNMATCHED_ROUTE, status="404") >= 1
        assert not any(
            tag in labels.get("route", "") and "items/1" in labels["route"]
            for labels, _ in samples.get(name, [])
        )

    eventually(check)
    ray.kill(api)


@pytest.mark.ray
def test_engine_replicas_are_sampled_from_serve(ray_session: None, settings: Settings) -> None:
    """One replica for a deployed engine, zero for every engine that is not deployed."""
    deployed = "music-midi" in serve.status().applications
    if not deployed:
        serve.run(build_engine_app("music", "midi", settings), name="music-midi", route_prefix=None)
    try:
        replicas = sampling.sample_engine_replicas()
    finally:
        if not deployed:
            serve.delete("music-midi")
    assert replicas["music-midi"] == 1
    assert replicas["video-ltx"] == 0
    assert set(replicas) == {info.deployment for info in ENGINES}


def test_middleware_times_every_answer_with_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, int, float]] = []
    monkeypatch.setattr(metrics, "observe_request", lambda *args: seen.append(args))
    app = FastAPI()
    app.add_middleware(MetricsMiddleware)

    @app.delete("/projects/{project_id}")
    def boom(project_id: str) -> None:
        raise RuntimeError("broken")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.delete("/projects/abc").status_code == 500
        assert client.request("BREW", "/projects/abc").status_code == 405
    assert [(route, method, status) for route, method, status, _ in seen] == [
        ("/projects/{project_id}", "DELETE", 500),
        ("/projects/{project_id}", "OTHER", 405),
    ]
    assert all(seconds >= 0 for *_, seconds in seen)


def test_credit_operations_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown credit operation"):
        metrics.credits("spent", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        metrics.credits("reserved", -5)


def test_prometheus_names_carry_rays_prefix_and_histogram_series() -> None:
    names = metrics.prometheus_names()
    assert "ray_studio_jobs_total" in names and "ray_studio_jobs" in names
    assert {
        "ray_studio_stage_duration_seconds_bucket",
        "ray_studio_stage_duration_seconds_sum",
        "ray_studio_stage_duration_seconds_count",
    } <= names
    assert all(name.startswith("ray_studio_") for name in names)


def test_job_engine_is_the_engine_that_dominates_the_job() -> None:
    engines = {"video": "ltx", "voice": "espeak", "lipsync": "mouth", "music": "midi"}
    assert (
        sampling.job_engine(Job(user_id=uuid.uuid4(), type="render", input={"engines": engines}))
        == "video-ltx"
    )
    assert (
        sampling.job_engine(Job(user_id=uuid.uuid4(), type="audio", input={"engines": engines}))
        == "voice-espeak"
    )


def test_sampling_jobs_counts_every_state_and_queue(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    depths: dict[str, int] = {}
    monkeypatch.setattr(metrics, "queue_depth", depths.__setitem__)
    with session_scope(database_url) as session:
        user = User(email=f"{uuid.uuid4().hex}@example.com")
        session.add(user)
        session.flush()
        for status, kind in [
            (JobStatus.queued, "render"),
            (JobStatus.queued, "render"),
            (JobStatus.queued, "music"),
            (JobStatus.failed, "render"),
        ]:
            engines = {"video": "animatic", "music": "midi"}
            session.add(Job(user_id=user.id, type=kind, status=status, input={"engines": engines}))
    with session_scope(database_url) as session:
        counts = sampling.sample_jobs(session)
    assert counts["queued"] >= 3 and counts["failed"] >= 1 and set(counts) == set(JobStatus)
    assert depths["video-animatic"] >= 2 and depths["music-midi"] >= 1
    assert depths["video-ltx"] == 0
