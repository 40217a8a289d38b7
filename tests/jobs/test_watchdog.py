"""The render watchdog on a real local Ray and Serve: a video engine that never answers is
cancelled, asked again once, and the job fails naming the stage with its credits released; the
scheduler then runs the next job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from ray import serve
from ray.serve.handle import DeploymentHandle

from cluster.runtime import deploy
from cluster.settings import Settings
from db.migrate import upgrade
from db.models import JobStatus, Project, ProjectStatus
from db.session import session_scope
from pipeline.jobs import submission as jobs
from pipeline.jobs.submission import RenderRequest
from pipeline.render.spec import FilmSpec
from tests.jobs.conftest import (
    balance,
    finished,
    make_project,
    make_user,
    settled_balance,
    tiny_spec,
    wait_for,
)
from tests.jobs.stalling_engine import ANIMATIC, STALL, StallingVideo

pytestmark = pytest.mark.ray

FLOOR_S = 4.0


@pytest.fixture(scope="module")
def watched(cpu_engines: None, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A studio whose engine calls may stay silent for FLOOR_S (the tiny films' estimates are
    far below it)."""
    data = tmp_path_factory.mktemp("watched")
    settings = Settings(
        data_dir=data, database_url=f"sqlite:///{data / 'studio.db'}", render_jobs_max=1,
        watchdog_floor_s=FLOOR_S, _env_file=None,
    )  # fmt: skip
    upgrade(settings.resolved_database_url)
    return settings


@pytest.fixture(scope="module")
def stalling_video(
    cpu_engines: None, serve_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeploymentHandle]:
    """The animatic video application replaced by `StallingVideo`; the real one comes back
    after the module."""
    serve.run(StallingVideo.bind(), name=ANIMATIC.deployment, route_prefix=None)
    yield serve.get_app_handle(ANIMATIC.deployment)
    port = int(serve_http.rsplit(":", 1)[1])
    settings = Settings(data_dir=tmp_path_factory.mktemp("engines"), port=port, _env_file=None)
    deploy(settings, {ANIMATIC.deployment})


def stalling_spec() -> FilmSpec:
    data: dict[str, Any] = tiny_spec().model_dump(mode="json")
    data["scenes"][0]["prompt"] = f"{STALL}: a shot the engine never finishes"
    return FilmSpec.model_validate(data)


def counts_once_settled(handle: DeploymentHandle, timeout_s: float = 15) -> tuple[int, int]:
    """The engine's (stalled, cancelled) counts once every stalled call was cancelled (the
    cancellation reaches the replica a moment after the caller gives up)."""
    deadline = time.monotonic() + timeout_s
    while (counts := handle.counts.remote().result()) and time.monotonic() < deadline:
        if counts[0] == counts[1]:
            break
        time.sleep(0.2)
    return tuple(counts)  # type: ignore[return-value]


def test_a_hung_stage_is_cancelled_retried_once_and_fails_its_job_which_releases_credits(
    watched: Settings, stalling_video: DeploymentHandle
) -> None:
    user = make_user(watched)
    granted, _ = balance(watched, user)
    project = make_project(watched, user, stalling_spec())
    job = jobs.submit_render(watched, user, project.id, RenderRequest())
    assert balance(watched, user)[1] > 0, "the render holds credits while it runs"
    started = time.monotonic()
    done = wait_for(watched, job.id, finished, timeout_s=120)
    took = time.monotonic() - started

    assert done.status == JobStatus.failed
    assert done.error is not None
    assert "the video stage of scene 1" in done.error and "retried once" in done.error
    assert done.stages["video"]["status"] == "failed"
    assert done.stages["voice"]["status"] == "succeeded"
    assert took >= 2 * FLOOR_S, "the stage was given its limit twice"
    assert counts_once_settled(stalling_video) == (2, 2), "two calls, both cancelled"
    assert settled_balance(watched, user) == (granted, 0), "its credits were released"
    with session_scope(watched.resolved_database_url) as session:
        failed = session.get(Project, project.id)
        assert failed is not None and failed.status == ProjectStatus.failed

    following = make_project(watched, user, tiny_spec())
    job = jobs.submit_render(watched, user, following.id, RenderRequest())
    done = wait_for(watched, job.id, finished, timeout_s=180)
    assert done.status == JobStatus.succeeded, done.error
    used = done.output["credits_used"]
    assert used > 0 and settled_balance(watched, user) == (granted - used, 0)
    assert counts_once_settled(stalling_video) == (2, 2), "the next job's shot did not stall"
