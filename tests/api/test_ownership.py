"""Nothing of another user is reachable: every route that names an object answers 404 for one
that belongs to someone else, exactly as for one that does not exist."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from db.models import JobStatus
from tests.api.conftest import (
    Account,
    Api,
    assert_problem,
    create_project,
    film_spec,
    insert_job,
    png_bytes,
)

pytestmark = pytest.mark.ray


@pytest.fixture
def theirs(api: Api, client: httpx.Client, other: Account) -> dict[str, str]:
    """A project, an uploaded asset and a running job of the other user."""
    project = create_project(client, other)
    asset = client.post(
        f"/api/projects/{project['id']}/assets",
        headers=other.auth,
        files={"file": ("face.png", png_bytes(), "image/png")},
    )
    assert asset.status_code == 201, asset.text
    job = insert_job(api, other.id, project["id"], status=JobStatus.running)
    return {"project": project["id"], "asset": asset.json()["id"], "job": str(job.id)}


ROUTES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("GET", "/api/projects/{project}", "project", {}),
    ("PATCH", "/api/projects/{project}", "project", {"json": {"title": "mine now"}}),
    ("DELETE", "/api/projects/{project}", "project", {}),
    ("POST", "/api/projects/{project}/render", "project", {"json": {"dry_run": True}}),
    ("POST", "/api/projects/{project}/regenerate", "project", {"json": {}}),
    ("GET", "/api/projects/{project}/assets", "project", {}),
    (
        "POST",
        "/api/projects/{project}/assets",
        "project",
        {"files": {"file": ("x.png", png_bytes(), "image/png")}},
    ),
    ("GET", "/api/assets/{asset}/download", "asset", {}),
    ("GET", "/api/jobs/{job}", "job", {}),
    ("GET", "/api/jobs/{job}/events", "job", {}),
    ("POST", "/api/jobs/{job}/cancel", "job", {}),
    ("POST", "/api/jobs/{job}/pause", "job", {}),
    ("POST", "/api/jobs/{job}/resume", "job", {}),
]


@pytest.mark.parametrize(
    ("method", "path", "kind", "request_args"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_another_users_object_is_not_found(
    client: httpx.Client,
    account: Account,
    theirs: dict[str, str],
    method: str,
    path: str,
    kind: str,
    request_args: dict[str, Any],
) -> None:
    url = path.format(**theirs)
    response = client.request(method, url, headers=account.auth, **request_args)
    body = assert_problem(response, 404, "not-found")

    missing = client.request(
        method, path.format(**{kind: uuid.uuid4()}), headers=account.auth, **request_args
    )
    assert_problem(missing, 404, "not-found")
    assert body["title"] == missing.json()["title"]


def test_the_owner_reaches_them(
    client: httpx.Client, other: Account, theirs: dict[str, str]
) -> None:
    for path in (
        "/api/projects/{project}",
        "/api/projects/{project}/assets",
        "/api/assets/{asset}/download",
        "/api/jobs/{job}",
    ):
        response = client.get(path.format(**theirs), headers=other.auth)
        assert response.status_code == 200, (path, response.text)


def test_lists_hold_only_the_users_own(
    client: httpx.Client, account: Account, theirs: dict[str, str]
) -> None:
    for path in ("/api/projects", "/api/jobs"):
        response = client.get(path, headers=account.auth)
        assert response.status_code == 200
        assert response.json()["items"] == []


def test_a_spec_cannot_use_another_users_image(
    client: httpx.Client, account: Account, theirs: dict[str, str]
) -> None:
    spec = film_spec(scenes=[{"prompt": "x", "duration_s": 1, "image": theirs["asset"]}])

    response = client.post(
        "/api/projects/create", headers=account.auth, json={"title": "t", "spec": spec}
    )

    assert_problem(response, 422, "spec-invalid")
