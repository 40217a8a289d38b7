"""The Ray dashboard of `studio serve`: it answers on its port while the studio runs (to
requests carrying Ray's token), its REST API lists the studio's actors and Serve applications, and
the studio's own metrics are exported on the head's metrics port for Prometheus."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.studio_serve import Studio, token_header

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

ENGINES = {"video-animatic", "image-card", "voice-espeak", "music-midi", "lipsync-mouth"}


def test_the_dashboard_answers_with_the_token_only(running_studio: Studio) -> None:
    url = f"{running_studio.dashboard_url}/api/version"
    assert httpx.get(url).status_code == 401
    version = httpx.get(url, headers=token_header())
    assert version.status_code == 200
    assert version.json()["ray_version"]
    studio = running_studio.settings.data_dir / "studio.json"
    assert running_studio.dashboard_url in studio.read_text()
    assert f"Ray dashboard and job server on {running_studio.dashboard_url}" in (
        running_studio.log.read_text()
    )


def alive_actors(studio: Studio) -> set[str]:
    """The classes of the living actors, through the dashboard's state API."""
    actors = httpx.get(
        f"{studio.dashboard_url}/api/v0/actors",
        params={"limit": 500, "filter_keys": "state", "filter_predicates": "=",
                "filter_values": "ALIVE"},
        headers=token_header(),
    )  # fmt: skip
    assert actors.status_code == 200, actors.text
    return {actor["class_name"] for actor in actors.json()["data"]["result"]["result"]}


def test_the_dashboard_lists_the_studios_actors_and_serve_applications(
    running_studio: Studio,
) -> None:
    wanted = {"RenderScheduler", "ServeController", "ServeReplica:api:StudioIngress"}
    deadline = time.monotonic() + 120  # the scheduler's actor may still be starting
    while not wanted <= (alive := alive_actors(running_studio)) and time.monotonic() < deadline:
        time.sleep(2)
    assert wanted <= alive, wanted - alive

    apps = httpx.get(f"{running_studio.dashboard_url}/api/serve/applications/",
                     headers=token_header())  # fmt: skip
    assert apps.status_code == 200, apps.text
    applications = apps.json()["applications"]
    assert {"api", *ENGINES} <= set(applications)
    assert applications["api"]["status"] == "RUNNING"


def test_the_studios_metrics_are_exported_on_the_metrics_port(running_studio: Studio) -> None:
    """The sampled gauges (every 15 s in the ingress) and the request counters (after one
    request), under the names Prometheus scrapes."""
    assert httpx.get(f"{running_studio.api_url}/api/plans").status_code == 200
    wanted = {
        "ray_studio_jobs",
        "ray_studio_job_queue_depth",
        "ray_studio_engine_replicas",
        "ray_studio_http_requests_total",
        "ray_studio_http_request_duration_seconds_bucket",
    }
    deadline = time.monotonic() + 120
    while True:
        text = httpx.get(running_studio.metrics_url).text
        names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        if wanted <= names or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert wanted <= names, wanted - names
