"""Deleting an account: projects, assets and stored objects go, logins end, the ledger stays,
naming only an anonymised user."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import col, select

from cluster.settings import Settings
from db.models import Asset, AuditLog, Job, JobStatus, LedgerEntry, Project, User
from db.session import session_scope
from db.types import utcnow
from deployments.api.accounts import issue_tokens
from pipeline.ledger import store
from pipeline.storage import open_storage
from tests.accounts.conftest import (
    PASSWORD,
    assert_problem,
    bearer,
    google_flow,
    login,
    new_email,
    register,
)
from tests.fakes.google import FakeGoogle
from tests.youtube import rendered_project


def user_row(settings: Settings, user_id: str | uuid.UUID) -> User:
    with session_scope(settings.resolved_database_url) as session:
        user = session.get(User, uuid.UUID(str(user_id)))
        assert user is not None
        return user


def add_asset(settings: Settings, user_id: uuid.UUID, data: bytes) -> Asset:
    """An uploaded file, stored and recorded as the assets router does."""
    path = settings.data_dir / f"upload-{uuid.uuid4().hex}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stored = open_storage(settings).put_content(path, ".png")
    with session_scope(settings.resolved_database_url) as session:
        asset = Asset(owner_id=user_id, kind="image", filename="me.png", content_type="image/png",
                      size=stored.size, sha256=stored.sha256, storage_key=stored.key)  # fmt: skip
        session.add(asset)
    return asset


def delete_me(api: TestClient, tokens: dict[str, str], password: str | None = PASSWORD) -> int:
    body = {} if password is None else {"password": password}
    response = api.request("DELETE", "/api/users/me", headers=bearer(tokens), json=body)
    return response.status_code


def test_deletion_removes_the_users_things_and_keeps_the_ledger_anonymous(
    api: TestClient, studio: Settings
) -> None:
    email = new_email()
    user = user_row(studio, register(studio, email))
    tokens = login(api, email).json()
    database = studio.resolved_database_url
    store.credit(database, user.id, 500, "grant", f"welcome:{user.id}", "test")
    project = rendered_project(studio, user, b"film of " + email.encode())
    mine = add_asset(studio, user.id, b"only mine " + email.encode())
    shared = add_asset(studio, user.id, b"shared " + email.encode())
    other = user_row(studio, register(studio))
    add_asset(studio, other.id, b"shared " + email.encode())
    storage = open_storage(studio)

    assert delete_me(api, tokens) == 204

    with session_scope(database) as session:
        assert session.get(Project, project.id) is None
        assert session.exec(select(Asset).where(Asset.owner_id == user.id)).all() == []
        entries = session.exec(select(LedgerEntry).where(LedgerEntry.user_id == user.id)).all()
        deleted = select(AuditLog).where(AuditLog.action == "user.delete")
        [audit] = session.exec(deleted.where(AuditLog.actor_id == user.id)).all()
    assert {entry.amount for entry in entries} == {500, -500}
    assert audit.detail["projects"] == 1
    assert not storage.exists(mine.storage_key)
    assert not any(storage.exists(output["key"]) for output in project.outputs.values())
    assert storage.exists(shared.storage_key)  # another user's asset names it too
    gone = user_row(studio, user.id)
    assert gone.email.endswith("@deleted.invalid") and email not in gone.email
    assert (gone.full_name, gone.password_hash, gone.is_active) == (None, None, False)
    assert store.balance(database, user.id).available == 500


def test_deletion_ends_every_login(api: TestClient, studio: Settings) -> None:
    email = new_email()
    register(studio, email)
    tokens = login(api, email).json()

    assert delete_me(api, tokens) == 204

    assert_problem(api.get("/api/users/profile", headers=bearer(tokens)), 401, "unauthorized")
    refreshed = api.post("/api/users/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(refreshed, 401, "unauthorized")
    assert_problem(login(api, email), 401, "unauthorized")


def test_the_address_of_a_deleted_account_can_register_again(
    api: TestClient, studio: Settings
) -> None:
    email = new_email()
    first = register(studio, email)
    assert delete_me(api, login(api, email).json()) == 204

    assert register(studio, email) != first


def test_a_wrong_password_deletes_nothing(api: TestClient, studio: Settings) -> None:
    email = new_email()
    user = user_row(studio, register(studio, email))
    tokens = login(api, email).json()
    project = rendered_project(studio, user, b"film")

    assert delete_me(api, tokens, "not the password") == 403
    assert delete_me(api, tokens, None) == 403

    with session_scope(studio.resolved_database_url) as session:
        assert session.get(Project, project.id) is not None
    assert api.get("/api/users/profile", headers=bearer(tokens)).status_code == 200


def test_an_unsettled_job_blocks_deletion(api: TestClient, studio: Settings) -> None:
    email = new_email()
    user_id = uuid.UUID(register(studio, email))
    tokens = login(api, email).json()
    with session_scope(studio.resolved_database_url) as session:
        session.add(Job(user_id=user_id, type="render", status=JobStatus.running))

    response = api.request("DELETE", "/api/users/me", headers=bearer(tokens),
                           json={"password": PASSWORD})  # fmt: skip

    assert_problem(response, 409, "conflict")
    assert user_row(studio, user_id).is_active


def test_a_google_only_account_needs_a_recent_sign_in(
    api: TestClient, studio: Settings, google: FakeGoogle
) -> None:
    with session_scope(studio.resolved_database_url) as session:
        session.add(User(email=google.account.email, email_verified=True))
    fresh = google_flow(api, google, "signin")
    assert fresh.status_code == 200, fresh.text
    user_id = login_subject(studio, google.account.email)
    with session_scope(studio.resolved_database_url) as session:
        user = session.get(User, user_id)
        assert user is not None
        window = timedelta(seconds=studio.reauthentication_window_s + 1)
        stale = issue_tokens(session, studio, user, uuid.uuid4(), utcnow() - window)

    assert delete_me(api, stale.model_dump(), None) == 403
    assert delete_me(api, fresh.json(), None) == 204
    assert not user_row(studio, user_id).is_active


def test_deletion_scrubs_the_emails_of_linked_google_accounts_from_the_audit(
    api: TestClient, studio: Settings, google: FakeGoogle
) -> None:
    email = new_email()
    user_id = uuid.UUID(register(studio, email))
    tokens = login(api, email).json()
    assert google_flow(api, google, "connect", **bearer(tokens)).status_code == 200

    assert delete_me(api, tokens) == 204

    with session_scope(studio.resolved_database_url) as session:
        entries = session.exec(select(AuditLog).where(AuditLog.actor_id == user_id)).all()
    assert {entry.action for entry in entries} == {"google.connect", "user.delete"}
    assert not any(google.account.email in str(entry.detail) for entry in entries)


def login_subject(settings: Settings, email: str) -> uuid.UUID:
    with session_scope(settings.resolved_database_url) as session:
        return session.exec(select(User.id).where(col(User.email) == email)).one()
