"""The plan's renders at a time hold under concurrent submissions over HTTP, and count the
single-engine jobs (`/api/ai/*`) too: the count and the job's write are one transaction,
serialised per user."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.conftest import Account, Api, assert_problem, create_project, put_on_plan

PARALLEL = 8


def _at_once(
    api: Api, account: Account, requests: list[tuple[str, dict[str, Any]]]
) -> list[httpx.Response]:
    """Posts every request from its own thread and connection, released together."""
    start = threading.Barrier(len(requests))

    def post(request: tuple[str, dict[str, Any]]) -> httpx.Response:
        with api.client() as client:
            start.wait()
            return client.post(request[0], headers=account.auth, json=request[1])

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(post, requests))


def _accepted(responses: list[httpx.Response], cancel: Callable[[str], object]) -> int:
    accepted = [r for r in responses if r.status_code == 202]
    for response in accepted:
        cancel(response.json()["id"])
    for response in responses:
        if response.status_code != 202:
            assert_problem(response, 403, "plan-limit")
    return len(accepted)


@pytest.fixture
def one_at_a_time(api: Api, account: Account) -> Account:
    put_on_plan(api, account.id, "one-at-a-time", max_concurrent_renders=1)
    return account


def _cancel(client: httpx.Client, account: Account) -> Callable[[str], object]:
    return lambda job_id: client.post(f"/api/jobs/{job_id}/cancel", headers=account.auth)


def test_parallel_renders_of_several_projects_start_one(
    api: Api, client: httpx.Client, one_at_a_time: Account
) -> None:
    projects = [create_project(client, one_at_a_time) for _ in range(PARALLEL)]
    requests = [(f"/api/projects/{p['id']}/render", {}) for p in projects]
    responses = _at_once(api, one_at_a_time, requests)
    assert _accepted(responses, _cancel(client, one_at_a_time)) == 1, [
        r.status_code for r in responses
    ]


def test_parallel_engine_jobs_count_against_the_limit(
    api: Api, client: httpx.Client, one_at_a_time: Account
) -> None:
    requests = [("/api/ai/audio-generate", {"text": f"Line {n}."}) for n in range(PARALLEL)]
    responses = _at_once(api, one_at_a_time, requests)
    assert _accepted(responses, _cancel(client, one_at_a_time)) == 1, [
        r.status_code for r in responses
    ]


def test_a_waiting_engine_job_holds_the_slot_a_film_would_take(
    client: httpx.Client, one_at_a_time: Account
) -> None:
    project = create_project(client, one_at_a_time)
    voice = client.post(
        "/api/ai/audio-generate", headers=one_at_a_time.auth, json={"text": "Hello there."}
    )
    assert voice.status_code == 202, voice.text
    try:
        film = client.post(
            f"/api/projects/{project['id']}/render", headers=one_at_a_time.auth, json={}
        )
        assert_problem(film, 403, "plan-limit")
    finally:
        _cancel(client, one_at_a_time)(voice.json()["id"])
