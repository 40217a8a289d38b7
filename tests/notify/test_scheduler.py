"""The running studio sends notifications by itself: the render scheduler's loop (a Ray actor)
delivers a job's end to the webhook within a few passes, no one calling `deliver_due`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from cluster.settings import Settings
from db.migrate import upgrade
from db.models import JobStatus
from db.session import session_scope
from pipeline.jobs.scheduler import scheduler
from pipeline.notify import preferences
from tests.notify.conftest import Receiver, end_job, new_user, verify

pytestmark = pytest.mark.ray


@pytest.fixture
def studio(ray_session: None, tmp_path: Path) -> Iterator[Settings]:
    database_url = f"sqlite:///{tmp_path / 'studio.db'}"
    upgrade(database_url)
    settings = Settings(
        data_dir=tmp_path / "var",
        _env_file=None,
        database_url=database_url,
        notify_allow_loopback=True,
    )
    handle = scheduler(settings)
    ray.get(handle.running_jobs.remote(), timeout=300)  # started: its imports take a while
    yield settings
    ray.kill(handle)


def test_the_scheduler_delivers_a_finished_job(studio: Settings, receiver: Receiver) -> None:
    url = studio.resolved_database_url
    user_id = new_user(url)
    with session_scope(url) as session:
        secret = preferences.register_webhook(session, studio, user_id, receiver.url)
    end_job(url, user_id, JobStatus.succeeded)

    deadline = time.monotonic() + 30
    while not receiver.requests:
        assert time.monotonic() < deadline, "the scheduler never delivered"
        time.sleep(0.1)
    time.sleep(2)

    [request] = receiver.requests
    assert verify(secret, request.headers["Studio-Signature"], request.body)
