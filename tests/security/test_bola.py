"""Authorisation per object, for every route of `/openapi.json` whose path names an object:
another user's project, job or asset is not found (404, never 2xx, never 5xx), and the admin
routes refuse a user (403). A route naming a new kind of object fails this test until the kind
is given an owner below, so a new route cannot go unprobed."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.api.conftest import Account, Api, create_project, insert_queued_job, png_bytes
from tests.security.conftest import fill_path, operations

pytestmark = pytest.mark.ray

SIGNED = {"key"}  # /api/files/{key}: the signature is the authorisation (test_signed_urls)


@pytest.fixture
def others(api: Api, client: httpx.Client, other: Account) -> dict[str, str]:
    """One object of each kind, all another user's."""
    project = str(create_project(client, other)["id"])
    asset = client.post(
        f"/api/projects/{project}/assets",
        headers=other.auth,
        files={"file": ("face.png", png_bytes(), "image/png")},
    )
    assert asset.status_code == 201, asset.text
    job = insert_queued_job(api, other.id, project)
    return {
        "project_id": project,
        "asset_id": asset.json()["id"],
        "job_id": str(job.id),
        "user_id": str(other.id),
        "payment_id": "00000000-0000-0000-0000-000000000001",
        "flag_id": "00000000-0000-0000-0000-000000000001",
    }


def test_no_route_reaches_another_users_object(
    openapi: dict[str, Any],
    client: httpx.Client,
    account: Account,
    other: Account,
    others: dict[str, str],
) -> None:
    tried, wrong = 0, []
    for method, path, _ in operations(openapi):
        names = set(re.findall(r"{(\w+)}", path)) - SIGNED
        if not names:
            continue
        assert names <= others.keys(), f"{method} {path}: give {names - others.keys()} an owner"
        expected = 403 if path.startswith("/api/admin/") else 404
        response = client.request(
            method, fill_path(path, others), headers=account.auth, json={}, timeout=30
        )
        tried += 1
        if response.status_code != expected:
            wrong.append((method, path, response.status_code))
    print(f"BOLA: {tried} routes with another user's objects")
    assert tried >= 15 and wrong == []
    # Nothing of theirs moved: the project is still there, its job still queued.
    project = client.get(f"/api/projects/{others['project_id']}", headers=other.auth)
    assert project.status_code == 200
    job = client.get(f"/api/jobs/{others['job_id']}", headers=other.auth)
    assert job.json()["status"] == "queued"
