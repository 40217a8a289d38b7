"""The admin API over real HTTP: only admins get in; analytics add up; user, project, job-log
and moderation actions do what they say and each writes exactly one audit row (who, what,
target, address, when). Runs the real ingress (tests/api/conftest.py) on SQLite and on a fresh
PostgreSQL schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import httpx
import pytest
from ray import serve
from sqlmodel import col, select

from db.migrate import upgrade
from db.models import AuditLog, Job, JobLog, JobStatus, ModerationFlag, Role
from db.session import session_scope
from db.types import utcnow
from pipeline.jobs.moderation import Finding, flag_findings
from tests.api.conftest import (
    Account,
    Api,
    app_settings,
    assert_problem,
    create_project,
    deploy,
    insert_job,
    insert_queued_job,
    login,
    register,
    set_user,
)
from tests.services import postgres_schema

pytestmark = pytest.mark.ray


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def admin_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The studio API on its own database, so that the analytics count only this module's rows."""
    proxy = request.getfixturevalue("serve_http")
    data_dir = tmp_path_factory.mktemp(f"ops-admin-{request.param}")
    with ExitStack() as stack:
        if request.param == "postgres":
            database_url = stack.enter_context(postgres_schema())
        else:
            database_url = f"sqlite:///{data_dir / 'studio.db'}"
        upgrade(database_url)
        name = f"ops-admin-{request.param}"
        yield deploy(name, app_settings(data_dir, database_url), proxy)
        serve.delete(name)


@pytest.fixture
def client(admin_api: Api) -> Iterator[httpx.Client]:
    with admin_api.client() as client:
        yield client


@pytest.fixture
def admin(admin_api: Api, client: httpx.Client) -> Account:
    account = register(client)
    set_user(admin_api, account.id, role=Role.admin)
    return account


@pytest.fixture
def user(client: httpx.Client) -> Account:
    return register(client)


def audit_rows(api: Api, target_id: uuid.UUID | str) -> list[AuditLog]:
    with session_scope(api.database_url) as session:
        query = select(AuditLog).where(AuditLog.target_id == str(target_id))
        return list(session.exec(query.order_by(col(AuditLog.created_at))))


def assert_audited(
    api: Api, admin: Account, target_id: uuid.UUID | str, action: str, **detail: Any
) -> None:
    """Exactly one audit row for the target: this admin, this action, an address, a time."""
    (row,) = audit_rows(api, target_id)
    assert (row.actor_id, row.action) == (admin.id, action)
    assert row.ip and row.created_at > utcnow() - timedelta(minutes=5)
    assert row.detail.items() >= detail.items()


def held_job(api: Api, user: Account, reasons: list[str]) -> tuple[Job, list[ModerationFlag]]:
    """A job held by moderation with one pending flag per reason."""
    job = insert_job(api, user.id, status=JobStatus.held)
    findings = [Finding("scenes.0.prompt", "prompt", reason, "excerpt") for reason in reasons]
    with session_scope(api.database_url) as session:
        flags = flag_findings(session, job, findings)
    return job, flags


def job_status(api: Api, job_id: uuid.UUID) -> tuple[JobStatus, str | None]:
    with session_scope(api.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return JobStatus(job.status), job.error


# -- who may enter ---------------------------------------------------------------------------


def test_admin_api_refuses_users_who_are_not_admins(client: httpx.Client, user: Account) -> None:
    assert_problem(client.get("/api/admin/analytics"), 401, "unauthorized")
    assert_problem(client.get("/api/admin/analytics", headers=user.auth), 403, "forbidden")
    response = client.post(f"/api/admin/users/{user.id}/suspend", headers=user.auth)
    assert_problem(response, 403, "forbidden")


# -- analytics -------------------------------------------------------------------------------


def test_analytics_count_users_renders_credits_and_durations(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    before = client.get("/api/admin/analytics", headers=admin.auth).json()
    engine = f"x{uuid.uuid4().hex[:8]}"
    now = utcnow()
    for seconds in (10, 20, 30, 40, 100):
        insert_job(
            admin_api,
            user.id,
            status=JobStatus.succeeded,
            input={"engines": {"video": engine}},
            started_at=now - timedelta(seconds=seconds),
            completed_at=now,
        )
    insert_queued_job(admin_api, user.id)
    granted = client.post(
        f"/api/admin/users/{user.id}/credits",
        headers=admin.auth,
        json={"amount": 25, "memo": "goodwill"},
    )
    assert granted.status_code == 200, granted.text

    after = client.get("/api/admin/analytics", headers=admin.auth).json()
    assert after["users"] == before["users"]
    assert after["active_users"] >= 2
    assert (
        after["renders_by_status"]["succeeded"]
        == before["renders_by_status"].get("succeeded", 0) + 5
    )
    assert after["renders_by_status"]["queued"] >= 1
    assert (
        after["credits_by_kind"]["adjustment"]
        == before["credits_by_kind"].get("adjustment", 0) + 25
    )
    assert after["credits_granted"] > 0
    assert after["render_minutes"] == pytest.approx(before["render_minutes"] + 200 / 60, abs=0.02)
    stats = after["job_duration"][f"video-{engine}"]
    assert stats == {"count": 5, "p50_s": pytest.approx(30), "p95_s": pytest.approx(88)}


def test_analytics_window_must_be_a_positive_number_of_days(
    client: httpx.Client, admin: Account
) -> None:
    response = client.get("/api/admin/analytics", params={"days": 0}, headers=admin.auth)
    assert_problem(response, 422, "validation-error")


# -- users -----------------------------------------------------------------------------------


def test_users_are_found_by_part_of_their_email(client: httpx.Client, admin: Account) -> None:
    tag = uuid.uuid4().hex[:10]
    found = {register(client, f"{tag}-{i}@example.com").email for i in range(2)}
    response = client.get("/api/admin/users", params={"email": tag.upper()}, headers=admin.auth)
    assert response.status_code == 200, response.text
    assert {item["email"] for item in response.json()["items"]} == found
    wildcard = client.get("/api/admin/users", params={"email": "%"}, headers=admin.auth)
    assert wildcard.json()["total"] == 0


def test_changing_a_plan_is_audited(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    response = client.put(
        f"/api/admin/users/{user.id}/plan", headers=admin.auth, json={"plan_code": "creator"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["plan_code"] == "creator"
    assert_audited(admin_api, admin, user.id, "user.plan_changed", before="free", after="creator")


def test_an_unknown_plan_is_refused_and_not_audited(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    response = client.put(
        f"/api/admin/users/{user.id}/plan", headers=admin.auth, json={"plan_code": "platinum"}
    )
    assert_problem(response, 404, "not-found")
    assert audit_rows(admin_api, user.id) == []


def test_granted_credits_reach_the_balance(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    start = client.get("/api/credits/balance", headers=user.auth).json()["available"]
    response = client.post(
        f"/api/admin/users/{user.id}/credits",
        headers=admin.auth,
        json={"amount": 40, "memo": "contest prize"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["available"] == start + 40
    assert client.get("/api/credits/balance", headers=user.auth).json()["available"] == start + 40
    assert_audited(
        admin_api, admin, user.id, "user.credits_granted", amount=40, memo="contest prize"
    )


def test_a_grant_of_nothing_is_refused(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    response = client.post(
        f"/api/admin/users/{user.id}/credits", headers=admin.auth, json={"amount": 0, "memo": "x"}
    )
    assert_problem(response, 422, "validation-error")
    assert audit_rows(admin_api, user.id) == []


def test_suspending_ends_every_login_and_unsuspending_restores_the_account(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    suspended = client.post(f"/api/admin/users/{user.id}/suspend", headers=admin.auth)
    assert suspended.status_code == 200 and suspended.json()["is_active"] is False
    assert_problem(client.get("/api/users/profile", headers=user.auth), 401, "unauthorized")
    refresh = client.post("/api/users/refresh", json={"refresh_token": user.refresh_token})
    assert_problem(refresh, 401, "unauthorized")

    restored = client.post(f"/api/admin/users/{user.id}/unsuspend", headers=admin.auth)
    assert restored.status_code == 200 and restored.json()["is_active"] is True
    stale = client.get("/api/users/profile", headers=user.auth)
    assert_problem(stale, 401, "unauthorized")  # the logins suspension ended stay ended
    again = login(client, user.email, str(user.id))
    assert client.get("/api/users/profile", headers=again.auth).status_code == 200
    actions = [row.action for row in audit_rows(admin_api, user.id)]
    assert actions == ["user.suspended", "user.unsuspended"]


def test_an_admin_cannot_suspend_themselves(client: httpx.Client, admin: Account) -> None:
    response = client.post(f"/api/admin/users/{admin.id}/suspend", headers=admin.auth)
    assert_problem(response, 409, "conflict")


# -- projects and job logs -------------------------------------------------------------------


def test_projects_are_found_by_title_and_deleted(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    title = f"Monsoon {uuid.uuid4().hex[:8]}"
    project = client.post(
        "/api/projects/create",
        headers=user.auth,
        json={
            "title": title,
            "spec": {"title": "T", "scenes": [{"narration": "Rain.", "prompt": "rain"}]},
        },
    )
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    found = client.get("/api/admin/projects", params={"q": title[-8:]}, headers=admin.auth)
    assert [item["id"] for item in found.json()["items"]] == [project_id]

    deleted = client.delete(f"/api/admin/projects/{project_id}", headers=admin.auth)
    assert deleted.status_code == 204, deleted.text
    assert_problem(client.get(f"/api/projects/{project_id}", headers=user.auth), 404, "not-found")
    assert_audited(admin_api, admin, project_id, "project.deleted", title=title)


def test_a_project_with_an_active_job_is_not_deleted(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    project = create_project(client, user)
    insert_job(admin_api, user.id, project["id"], status=JobStatus.running)
    response = client.delete(f"/api/admin/projects/{project['id']}", headers=admin.auth)
    assert_problem(response, 409, "conflict")
    assert audit_rows(admin_api, project["id"]) == []


def test_job_logs_are_listed_oldest_first(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    job = insert_job(admin_api, user.id, status=JobStatus.running)
    with session_scope(admin_api.database_url) as session:
        for i, stage in enumerate(["plan", "voice", "video"]):
            session.add(
                JobLog(
                    job_id=job.id,
                    stage=stage,
                    level="info",
                    message=f"step {i}",
                    created_at=utcnow() + timedelta(seconds=i),
                )
            )
    response = client.get(f"/api/admin/jobs/{job.id}/logs", headers=admin.auth)
    assert response.status_code == 200, response.text
    assert [(log["stage"], log["message"]) for log in response.json()] == [
        ("plan", "step 0"),
        ("voice", "step 1"),
        ("video", "step 2"),
    ]
    missing = client.get(f"/api/admin/jobs/{uuid.uuid4()}/logs", headers=admin.auth)
    assert_problem(missing, 404, "not-found")


# -- moderation ------------------------------------------------------------------------------


def test_the_moderation_queue_lists_pending_flags_oldest_first(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    _, flags = held_job(admin_api, user, ["first", "second"])
    response = client.get("/api/admin/moderation", params={"limit": 100}, headers=admin.auth)
    assert response.status_code == 200, response.text
    listed = [item["id"] for item in response.json()["items"]]
    assert listed.index(str(flags[0].id)) < listed.index(str(flags[1].id))
    assert all(item["status"] == "pending" for item in response.json()["items"])


def test_approving_every_flag_queues_the_job(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    job, (first, second) = held_job(admin_api, user, ["a", "b"])
    response = client.post(f"/api/admin/moderation/{first.id}/approve", headers=admin.auth)
    assert response.status_code == 200, response.text
    assert response.json()["job_id"] is None
    assert job_status(admin_api, job.id)[0] == JobStatus.held

    response = client.post(f"/api/admin/moderation/{second.id}/approve", headers=admin.auth)
    assert response.status_code == 200, response.text
    assert response.json()["job_id"] == str(job.id)
    assert response.json()["flag"]["status"] == "approved"
    with session_scope(admin_api.database_url) as session:
        logs = session.exec(select(JobLog.message).where(JobLog.job_id == job.id)).all()
    assert "held -> queued" in logs
    for flag in (first, second):
        assert_audited(admin_api, admin, flag.id, "moderation.approved")


def test_rejecting_a_flag_fails_the_job(
    admin_api: Api, client: httpx.Client, admin: Account, user: Account
) -> None:
    job, (first, second) = held_job(admin_api, user, ["a", "b"])
    response = client.post(
        f"/api/admin/moderation/{first.id}/reject",
        headers=admin.auth,
        json={"reason": "graphic violence"},
    )
    assert response.status_code == 200, response.text
    status, error = job_status(admin_api, job.id)
    assert status == JobStatus.failed and error is not None and "graphic violence" in error
    again = client.post(f"/api/admin/moderation/{second.id}/approve", headers=admin.auth)
    assert_problem(again, 409, "conflict")
    assert_audited(admin_api, admin, first.id, "moderation.rejected", reason="graphic violence")
    assert audit_rows(admin_api, second.id) == []
