"""Projects: create from a film spec, list with pages and filters, read, edit, delete."""

from __future__ import annotations

import uuid

import httpx
import pytest

from db.models import Project, ProjectStatus, YoutubeVideo
from db.session import session_scope
from tests.api.conftest import (
    Account,
    Api,
    assert_problem,
    create_project,
    film_spec,
    insert_queued_job,
)

pytestmark = pytest.mark.ray


def test_create_stores_the_validated_spec(client: httpx.Client, account: Account) -> None:
    project = create_project(client, account)

    assert project["status"] == "draft"
    assert project["spec"]["scenes"][0]["camera"] == "static"
    assert project["spec"]["aspect_ratio"] == "16:9"
    read = client.get(f"/api/projects/{project['id']}", headers=account.auth)
    assert read.json() == project


def test_an_invalid_spec_names_the_field(client: httpx.Client, account: Account) -> None:
    spec = film_spec(scenes=[{"narration": "Hello."}], fps=1000)

    response = client.post(
        "/api/projects/create", headers=account.auth, json={"title": "t", "spec": spec}
    )

    body = assert_problem(response, 422, "validation-error")
    locations = [error["loc"] for error in body["errors"]]
    assert ["body", "spec", "fps"] in locations
    assert any(loc[:4] == ["body", "spec", "scenes", 0] for loc in locations)


def test_list_pages_and_filters(api: Api, client: httpx.Client, account: Account) -> None:
    ids = [create_project(client, account)["id"] for _ in range(3)]

    first = client.get("/api/projects?limit=2", headers=account.auth).json()
    second = client.get("/api/projects?limit=2&offset=2", headers=account.auth).json()

    assert first["total"] == 3
    assert [p["id"] for p in first["items"] + second["items"]] == ids[::-1]
    drafts = client.get("/api/projects?status=draft", headers=account.auth).json()
    assert drafts["total"] == 3
    ready = client.get("/api/projects?status=ready", headers=account.auth).json()
    assert ready["items"] == []


def test_edit_title_and_spec(client: httpx.Client, account: Account) -> None:
    project = create_project(client, account)

    response = client.patch(
        f"/api/projects/{project['id']}",
        headers=account.auth,
        json={"title": "Sunrise", "spec": film_spec(title="Sunrise", fps=24)},
    )

    assert response.status_code == 200
    assert response.json()["title"] == "Sunrise"
    assert response.json()["spec"]["fps"] == 24


def test_delete(client: httpx.Client, account: Account) -> None:
    project = create_project(client, account)

    response = client.delete(f"/api/projects/{project['id']}", headers=account.auth)

    assert response.status_code == 204
    gone = client.get(f"/api/projects/{project['id']}", headers=account.auth)
    assert_problem(gone, 404, "not-found")


def test_a_deleted_projects_youtube_video_stays_unlinked(
    api: Api, client: httpx.Client, account: Account
) -> None:
    project = create_project(client, account)
    with session_scope(api.database_url) as session:
        video = YoutubeVideo(
            user_id=account.id, project_id=uuid.UUID(project["id"]), title="Sunrise"
        )
        session.add(video)

    response = client.delete(f"/api/projects/{project['id']}", headers=account.auth)

    assert response.status_code == 204, response.text
    with session_scope(api.database_url) as session:
        kept = session.get(YoutubeVideo, video.id)
        assert kept is not None and kept.project_id is None


def test_a_project_with_an_unfinished_job_is_not_deleted(
    api: Api, client: httpx.Client, account: Account
) -> None:
    project = create_project(client, account)
    insert_queued_job(api, account.id, project["id"])

    response = client.delete(f"/api/projects/{project['id']}", headers=account.auth)

    assert_problem(response, 409, "conflict")


def test_a_rendering_project_is_not_edited(
    api: Api, client: httpx.Client, account: Account
) -> None:
    project = create_project(client, account)
    with session_scope(api.database_url) as session:
        row = session.get(Project, uuid.UUID(project["id"]))
        assert row is not None
        row.status = ProjectStatus.rendering

    response = client.patch(
        f"/api/projects/{project['id']}", headers=account.auth, json={"title": "x"}
    )

    assert_problem(response, 409, "conflict")


def test_render_dry_run_estimates_without_spending(client: httpx.Client, account: Account) -> None:
    project = create_project(client, account)
    before = client.get("/api/credits/balance", headers=account.auth).json()

    response = client.post(
        f"/api/projects/{project['id']}/render", headers=account.auth, json={"dry_run": True}
    )

    assert response.status_code == 200, response.text
    assert response.json()["credits"] > 0
    assert client.get("/api/credits/balance", headers=account.auth).json() == before
