"""`studio serve` as a user runs it (a subprocess on the embedded default, with its own Ray head,
dashboard, job server and engines), once for this file:

- its Ray dashboard answers only requests carrying Ray's token, its REST API lists the studio's
  actors and Serve applications, and the studio's own metrics are exported on the head's metrics
  port for Prometheus;
- a manifest submitted with the real `ray job submit` CLI to its job server renders through the
  studio (projects, jobs, films and credits checked in the studio's own database and storage),
  followed with `ray job logs`; a batch stopped with `ray job stop` releases its credits;
- `studio render` on the same data folder renders on that studio.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from db.models import Asset, Job, Project, User
from db.session import session_scope
from pipeline.render.assemble import inspect_film
from pipeline.storage import open_storage
from tests.render.conftest import example, write_manifest
from tests.studio_serve import Studio, studio_serve, token_header

pytestmark = [pytest.mark.ray, pytest.mark.own_cluster, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def running_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """`studio serve` on a fresh data folder, stopped as Ctrl-C stops it."""
    with studio_serve(tmp_path_factory.mktemp("studio")) as studio:
        yield studio


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


PASSWORD = "correct horse battery staple"
RAY = str(Path(sys.executable).parent / "ray")


def register(studio: Studio) -> tuple[str, dict[str, str]]:
    """A new account on the studio, through its API: its email and bearer header."""
    email = f"batch-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=studio.api_url, timeout=30) as client:
        created = client.post("/api/users/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        login = client.post("/api/users/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
    return email, {"Authorization": f"Bearer {login.json()['access_token']}"}


def balance(studio: Studio, auth: dict[str, str]) -> tuple[int, int]:
    answer = httpx.get(f"{studio.api_url}/api/credits/balance", headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["available"], answer.json()["held"]


def ray_job(studio: Studio, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The real `ray job` CLI, from a shell that has only the user's environment and
    RAY_AUTH_MODE=token, as the README says."""
    env = {k: v for k, v in studio.env.items() if not k.startswith("STUDIO_")}
    env["RAY_AUTH_MODE"] = "token"
    return subprocess.run(
        [RAY, "job", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def submit(studio: Studio, folder: Path, email: str) -> str:
    submission = f"batch-{uuid.uuid4().hex[:8]}"
    submitted = ray_job(
        studio, "submit", "--address", studio.dashboard_url, "--working-dir", str(folder),
        "--submission-id", submission, "--no-wait", "--",
        "python", "-m", "cluster.batch", "manifest.jsonl", "--user", email,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr + submitted.stdout
    return submission


def user_jobs(studio: Studio, email: str) -> list[Job]:
    with session_scope(studio.settings.resolved_database_url) as session:
        user = session.exec(select(User).where(User.email == email)).one()
        jobs = session.exec(select(Job).where(Job.user_id == user.id)).all()
        for job in jobs:
            session.expunge(job)
        return list(jobs)


def test_ray_job_submit_renders_the_good_lines_through_the_studio(
    running_studio: Studio, tmp_path: Path
) -> None:
    email, auth = register(running_studio)
    before, _ = balance(running_studio, auth)
    short = example("short", resolution=144)
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(short.model_dump(mode="json")))
    one_scene = example("short", resolution=144, scenes=[short.scenes[0].model_dump()])
    write_manifest(
        tmp_path / "manifest.jsonl",
        [
            {"spec": "short.yaml"},
            {"spec": one_scene.model_dump(mode="json"), "id": "one", "title": "One scene"},
            {"spec": short.model_dump(mode="json") | {"fps": 5}, "id": "bad"},
        ],
    )

    submission = submit(running_studio, tmp_path, email)
    logs = ray_job(running_studio, "logs", "--address", running_studio.dashboard_url,
                   "--follow", submission)  # fmt: skip
    status = ray_job(running_studio, "status", "--address", running_studio.dashboard_url,
                     submission)  # fmt: skip

    assert logs.returncode == 0, logs.stderr
    assert f"Job '{submission}' succeeded" in status.stdout, logs.stdout
    assert "line 3 (bad): rejected" in logs.stdout and "fps" in logs.stdout
    assert "line 1 (short): job" in logs.stdout and "succeeded" in logs.stdout
    assert "batch: 1 rejected, 2 succeeded; results in storage at batches/" in logs.stdout

    storage = open_storage(running_studio.settings)
    key = logs.stdout.rsplit("results in storage at ", 1)[1].split()[0]
    results = [json.loads(line) for line in storage.get_bytes(key).decode().splitlines()]
    assert [(r["line"], r["id"], r["status"]) for r in results] == [
        (1, "short", "succeeded"),
        (2, "one", "succeeded"),
        (3, "bad", "rejected"),
    ]
    url = running_studio.settings.resolved_database_url
    with session_scope(url) as session:
        user = session.exec(select(User).where(User.email == email)).one()
        projects = session.exec(select(Project).where(Project.owner_id == user.id)).all()
        assert sorted(p.title for p in projects) == sorted([short.title, "One scene"])
        for project, frames in zip(
            sorted(projects, key=lambda p: p.title != short.title), (360, 120), strict=True
        ):
            result = next(r for r in results if r["project_id"] == str(project.id))
            assert project.outputs["film.mp4"]["key"] == result["outputs"]["film.mp4"]
            asset = session.exec(
                select(Asset).where(Asset.project_id == project.id, Asset.filename == "film.mp4")
            ).one()
            film_path = tmp_path / f"{project.id}.mp4"
            film_path.write_bytes(storage.get_bytes(asset.storage_key))
            film = inspect_film(film_path)
            assert (film.frame_count, film.width, film.height) == (frames, 144, 256)
            assert film.audio_codec == "aac"
            assert film.audio_duration_s == pytest.approx(frames / 24, abs=0.1)
    jobs = user_jobs(running_studio, email)
    charged = sum(r["credits"] for r in results if r["status"] == "succeeded")
    assert len(jobs) == 2 and charged > 0
    assert balance(running_studio, auth) == (before - charged, 0)


def test_ray_job_stop_cancels_the_batch_and_releases_its_credits(
    running_studio: Studio, tmp_path: Path
) -> None:
    email, auth = register(running_studio)
    before = balance(running_studio, auth)
    short = example("short", resolution=144)
    long = example(
        "short", resolution=144, scenes=[s.model_dump() | {"duration_s": 60} for s in short.scenes]
    )
    write_manifest(
        tmp_path / "manifest.jsonl", [{"spec": long.model_dump(mode="json"), "id": "long"}]
    )

    submission = submit(running_studio, tmp_path, email)
    deadline = time.monotonic() + 600
    while not user_jobs(running_studio, email):
        assert time.monotonic() < deadline, "the batch never submitted its render"
        time.sleep(0.5)
    assert balance(running_studio, auth)[1] > 0
    stopped = ray_job(running_studio, "stop", "--address", running_studio.dashboard_url,
                      submission)  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr
    logs = ray_job(running_studio, "logs", "--address", running_studio.dashboard_url, submission)

    assert [job.status for job in user_jobs(running_studio, email)] == ["cancelled"], logs.stdout
    assert balance(running_studio, auth) == before
    assert re.search(r"line 1 \(long\): job \S+ cancelled", logs.stdout), logs.stdout
    assert "batch: 1 cancelled; results in storage at batches/" in logs.stdout


def test_studio_render_renders_on_the_running_studio(
    running_studio: Studio, tmp_path: Path
) -> None:
    spec = tmp_path / "film.yaml"
    spec.write_text(yaml.safe_dump(example("short", resolution=144).model_dump(mode="json")))
    rendered = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "render", str(spec), "-o", str(tmp_path / "out")],
        cwd=running_studio.cwd, env=running_studio.env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip

    assert rendered.returncode == 0, rendered.stderr[-3000:]
    assert f"rendering on the studio running at {running_studio.api_url}" in rendered.stdout
    film = inspect_film(tmp_path / "out" / "film.mp4")
    assert (film.frame_count, film.width, film.height) == (360, 144, 256)
