"""The studio's metrics from real traffic: after real API requests and a real render through the
API (the ingress and the CPU engines on the session's Serve), the session node's metrics export
endpoint (what Prometheus scrapes) shows the series the code records on that path.

Recorded by the running studio today (cluster/metrics.py and its callers): requests and
their durations (MetricsMiddleware in the ingress) and the sampled gauges (jobs by state, queue
depth, engine replicas: `sample_forever`, a background task of the ingress, every 15 s).
`studio_jobs_total`, `studio_stage_duration_seconds`, `studio_credits_total` and
`studio_ledger_errors_total` have no caller in the pipeline yet, so they are not asserted here
(tests/ops/test_metrics.py checks their plumbing from a task that records them by hand)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.api.conftest import (  # noqa: F401 (fixtures used by name)
    Account,
    Api,
    account,
    api,
    client,
    create_project,
    put_on_plan,
)
from tests.ops.test_metrics import eventually, scrape, total

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

RENDER_ROUTE = "/projects/{project_id}/render"
TERMINAL = ("succeeded", "failed", "cancelled")


def render_routes(samples: dict[str, Any]) -> set[str]:
    """The route labels (as the API app records them) of the render route."""
    return {
        labels["route"]
        for labels, _ in samples.get("ray_studio_http_requests_total", [])
        if labels.get("route", "").endswith(RENDER_ROUTE)
    }


def render_requests(samples: dict[str, Any]) -> float:
    return sum(
        total(samples, "ray_studio_http_requests_total", route=route, method="POST", status="202")
        for route in render_routes(samples)
    )


def test_real_requests_and_a_render_show_on_the_metrics_endpoint(
    serve_http: str,
    cpu_engines: None,
    api: Api,  # noqa: F811
    client: httpx.Client,  # noqa: F811
    account: Account,  # noqa: F811
) -> None:
    before = render_requests(scrape())
    put_on_plan(api, account.id, "studio")  # its rate limit allows polling twice a second
    project = create_project(client, account)
    response = client.post(f"/api/projects/{project['id']}/render", headers=account.auth, json={})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 300
    while (state := client.get(f"/api/jobs/{job_id}", headers=account.auth).json())[
        "status"
    ] not in TERMINAL:
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["status"] == "succeeded", state
    assert client.get("/api/plans").status_code == 200

    def check(samples: dict[str, Any]) -> None:
        routes = render_routes(samples)
        assert routes, "the render route is labelled by its template"
        assert render_requests(samples) >= before + 1
        duration = "ray_studio_http_request_duration_seconds"
        for route in routes:
            buckets = {
                labels["le"]: value
                for labels, value in samples.get(f"{duration}_bucket", [])
                if labels.get("route") == route
            }
            assert {"0.005", "1.0", "30.0", "+Inf"} <= set(buckets), buckets
            assert total(samples, f"{duration}_count", route=route) >= 1
        plans = {labels.get("route", "") for labels, _ in samples[f"{duration}_count"]}
        assert any(r.endswith("/api/plans") for r in plans), plans
        # Sampled gauges (by the ingress every 15 s): the finished render and the engines.
        jobs = [v for lbl, v in samples.get("ray_studio_jobs", []) if lbl["state"] == "succeeded"]
        assert jobs and max(jobs) >= 1, jobs
        replicas = [
            v
            for lbl, v in samples.get("ray_studio_engine_replicas", [])
            if lbl["engine"] == "video-animatic"
        ]
        assert replicas and max(replicas) >= 1, replicas
        assert "ray_studio_job_queue_depth" in samples

    eventually(check)
