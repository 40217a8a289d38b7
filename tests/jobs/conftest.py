"""A studio on the session's Ray: one database for the module, users on chosen plans with their
monthly grant, projects from example specs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray
from sqlmodel import select

from cluster.settings import Settings
from db.migrate import upgrade
from db.models import Job, JobStatus, Project, User
from db.session import session_scope
from pipeline.jobs import submission as jobs
from pipeline.ledger.actor import ledger_handle
from pipeline.render.spec import FilmSpec

TERMINAL = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}


@pytest.fixture(scope="module")
def studio(cpu_engines: None, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("studio")
    settings = Settings(
        data_dir=data, database_url=f"sqlite:///{data / 'studio.db'}", render_jobs_max=1,
        _env_file=None,
    )  # fmt: skip
    upgrade(settings.resolved_database_url)
    return settings


def make_user(settings: Settings, plan: str = "free") -> User:
    with session_scope(settings.resolved_database_url) as session:
        user = User(email=f"{uuid.uuid4().hex[:8]}@example.com", plan_code=plan)
        session.add(user)
    jobs.on_user_registered(settings, user)
    return user


def make_project(settings: Settings, user: User, spec: FilmSpec) -> Project:
    with session_scope(settings.resolved_database_url) as session:
        project = Project(owner_id=user.id, title=spec.title, spec=spec.model_dump(mode="json"))
        session.add(project)
    return project


def tiny_spec(seconds: float = 1.0, scenes: int = 1, **changes: Any) -> FilmSpec:
    data: dict[str, Any] = {
        "title": "Tiny",
        "resolution": 144,
        "fps": 12,
        "music": {"style": "none"},
        "scenes": [
            {"prompt": f"scene {i}", "duration_s": seconds, "narration": f"Scene {i} begins."}
            for i in range(scenes)
        ],
    }
    return FilmSpec.model_validate({**data, **changes})


def job_row(settings: Settings, job_id: uuid.UUID) -> Job:
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def wait_for(
    settings: Settings, job_id: uuid.UUID, done: Callable[[Job], bool], timeout_s: float = 300
) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = job_row(settings, job_id)
        if done(job):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} is still {job_row(settings, job_id).status}")


def finished(job: Job) -> bool:
    return job.status in TERMINAL


def balance(settings: Settings, user: User) -> tuple[int, int]:
    result = ray.get(ledger_handle(settings.resolved_database_url).balance.remote(user.id))
    return result.available, result.held


def settled_balance(settings: Settings, user: User, timeout_s: float = 30) -> tuple[int, int]:
    """The balance once nothing is held (a job settles just after its final state is written)."""
    deadline = time.monotonic() + timeout_s
    while (current := balance(settings, user))[1] and time.monotonic() < deadline:
        time.sleep(0.2)
    return current


def outputs_of(settings: Settings, project_id: uuid.UUID) -> list[Any]:
    from db.models import Asset

    with session_scope(settings.resolved_database_url) as session:
        return list(session.exec(select(Asset).where(Asset.project_id == project_id)).all())


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
