"""Migrations run the same on SQLite and PostgreSQL, both ways."""

from __future__ import annotations

import uuid
from datetime import UTC

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import select

from db.migrate import alembic_config, current, downgrade, upgrade
from db.models import Plan, User
from db.session import get_engine, session_scope
from db.types import utcnow
from tests.services import postgres_schema

TABLES = {
    "users", "oauth_accounts", "refresh_tokens", "projects", "assets", "jobs", "job_logs",
    "ledger_entries", "credit_accounts", "reservations", "plans", "subscriptions",
    "youtube_videos", "youtube_playlists", "audit_log", "moderation_flags", "idempotency_records",
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    with postgres_schema() as url:
        yield url


def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(empty_database)).get_current_head()
    upgrade(empty_database)
    assert current(empty_database) == head
    assert set(inspect(get_engine(empty_database)).get_table_names()) >= TABLES
    downgrade(empty_database, "base")
    assert current(empty_database) is None
    assert not TABLES & set(inspect(get_engine(empty_database)).get_table_names())
    upgrade(empty_database)
    assert current(empty_database) == head


def test_plans_are_seeded(database_url: str) -> None:
    with session_scope(database_url) as session:
        plans = {p.code: p for p in session.exec(select(Plan)).all()}
    assert {"free", "creator", "studio"} <= set(plans), "seeded (tests may add others)"
    assert plans["studio"].priority > plans["creator"].priority > plans["free"].priority
    assert "wav2lip-noncommercial" not in plans["studio"].allowed_licences
    assert "fomm-noncommercial" in plans["free"].allowed_licences
    assert "fomm-noncommercial" not in plans["creator"].allowed_licences


def test_timestamps_come_back_timezone_aware(database_url: str) -> None:
    with session_scope(database_url) as session:
        user = User(email="tz@example.com")
        session.add(user)
    with session_scope(database_url) as session:
        loaded = session.exec(select(User).where(User.email == "tz@example.com")).one()
        assert loaded.created_at.tzinfo is not None
        assert loaded.created_at.utcoffset() == UTC.utcoffset(None)
        session.delete(loaded)


def test_naive_timestamps_are_refused(database_url: str) -> None:
    from datetime import datetime

    with pytest.raises(Exception, match="naive datetime"), session_scope(database_url) as session:
        session.add(User(email="naive@example.com", created_at=datetime(2026, 1, 1)))
        session.flush()


def test_stored_addresses_move_to_their_normal_form(empty_database: str) -> None:
    """0009: an address that is not in normal form moves to it, unless another account has it
    (merging look-alike accounts is an operator's decision)."""
    upgrade(empty_database, "0008")
    stored = ["ada@example.com", "\uff41da@example.com", "bob\u200b@b\u00dcCHER.example."]
    with session_scope(empty_database) as session:  # the users table as 0008 left it
        for email in stored:
            session.execute(
                text("INSERT INTO users (id, email, email_verified, role, is_active, plan_code, "
                     "created_at, updated_at) VALUES (:id, :email, false, 'user', true, 'free', "
                     ":now, :now)"),
                {"id": uuid.uuid4().hex, "email": email, "now": utcnow()},
            )  # fmt: skip
    upgrade(empty_database, "0009")
    with session_scope(empty_database) as session:
        emails = set(session.execute(text("SELECT email FROM users")).scalars())
    assert emails == {"ada@example.com", "\uff41da@example.com", "bob@xn--bcher-kva.example"}
