"""Jobs: listing, reading, following as server-sent events, and the state changes a user asks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray

from db.models import JobStatus
from pipeline.jobs.scheduler import scheduler
from tests.api.conftest import (
    Account,
    Api,
    assert_problem,
    create_project,
    insert_job,
    insert_queued_job,
    update_job,
)

pytestmark = pytest.mark.ray


def iter_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name is not None:
            yield name, json.loads(line.removeprefix("data: "))


def read_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    return list(iter_events(response))


def test_list_and_read_jobs(api: Api, client: httpx.Client, account: Account) -> None:
    project = create_project(client, account)
    job = insert_job(api, account.id, project["id"], status=JobStatus.succeeded, progress=100)
    insert_job(api, account.id, status=JobStatus.failed, error="no engine")

    listed = client.get("/api/jobs", headers=account.auth).json()
    only_project = client.get(f"/api/jobs?project_id={project['id']}", headers=account.auth).json()
    failed = client.get("/api/jobs?status=failed", headers=account.auth).json()
    read = client.get(f"/api/jobs/{job.id}", headers=account.auth).json()

    assert listed["total"] == 2
    assert [j["id"] for j in only_project["items"]] == [str(job.id)]
    assert [j["error"] for j in failed["items"]] == ["no engine"]
    assert read["status"] == "succeeded"
    assert read["progress"] == 100


def test_events_follow_the_job_to_its_end(api: Api, client: httpx.Client, account: Account) -> None:
    # The test plays the job's lifecycle itself. The scheduler is started first: starting, it
    # re-queues every running job (their tasks died with the last one).
    ray.get(scheduler(api.settings).running_jobs.remote())
    job = insert_queued_job(api, account.id)

    # Each change is made once the stream has shown the one before: the stream polls, and on a
    # loaded machine two changes made close together could reach it as one.
    changes: list[dict[str, Any]] = [
        {"status": JobStatus.running, "progress": 10, "stages": {"plan": "done"}},
        {"progress": 60, "stages": {"plan": "done", "video": "running"}},
        {"status": JobStatus.succeeded, "progress": 100},
    ]
    events = []
    with client.stream("GET", f"/api/jobs/{job.id}/events", headers=account.auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in iter_events(response):
            events.append(event)
            if changes:
                update_job(api, job.id, **changes.pop(0))

    assert [name for name, _ in events] == ["queued", "running", "running", "succeeded"]
    assert [data["progress"] for _, data in events] == [0, 10, 60, 100]
    assert events[2][1]["stages"] == {"plan": "done", "video": "running"}


def test_events_of_a_finished_job_end_at_once(
    api: Api, client: httpx.Client, account: Account
) -> None:
    job = insert_job(api, account.id, status=JobStatus.cancelled)

    with client.stream("GET", f"/api/jobs/{job.id}/events", headers=account.auth) as response:
        events = read_events(response)

    assert [name for name, _ in events] == ["cancelled"]


def test_cancel_a_queued_job(api: Api, client: httpx.Client, account: Account) -> None:
    job = insert_queued_job(api, account.id)

    response = client.post(f"/api/jobs/{job.id}/cancel", headers=account.auth)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"


def test_pause_and_resume(api: Api, client: httpx.Client, account: Account) -> None:
    job = insert_queued_job(api, account.id)

    paused = client.post(f"/api/jobs/{job.id}/pause", headers=account.auth)
    resumed = client.post(f"/api/jobs/{job.id}/resume", headers=account.auth)

    assert paused.json()["status"] == "paused"
    assert resumed.json()["status"] == "queued"


def test_a_finished_job_cannot_be_cancelled(
    api: Api, client: httpx.Client, account: Account
) -> None:
    job = insert_job(api, account.id, status=JobStatus.succeeded)

    response = client.post(f"/api/jobs/{job.id}/cancel", headers=account.auth)

    assert_problem(response, 409, "illegal-transition")
