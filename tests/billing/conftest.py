"""Billing against the local fake Stripe (tests/fakes/stripe.py): the domain on SQLite and
PostgreSQL (`billing_settings`), and the real ingress on Ray Serve (`billing_api`), its own app
on PostgreSQL, configured with the fake's keys and prices."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ray import serve
from sqlmodel import select

from cluster.settings import Settings
from db.models import Plan, Role, User
from db.session import session_scope
from pipeline.ledger import store
from tests.api.conftest import Account, Api, app_settings, deploy, register, set_user
from tests.fakes.stripe import FakeStripe, stripe_settings


@pytest.fixture
def billing_settings(database_url: str, tmp_path: Path, fake_stripe: FakeStripe) -> Settings:
    """Settings on a migrated database (SQLite, then PostgreSQL) paying through the fake."""
    return Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        _env_file=None,
        **stripe_settings(fake_stripe),
    )


def new_user(url: str, plan_code: str = "free") -> User:
    with session_scope(url) as session:
        user = User(email=f"{uuid.uuid4().hex[:12]}@example.com", plan_code=plan_code)
        session.add(user)
    return user


def available(url: str, user_id: uuid.UUID) -> int:
    return store.balance(url, user_id).available


def plan_of(url: str, user_id: uuid.UUID) -> str:
    with session_scope(url) as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.plan_code


def monthly_credits(url: str, code: str) -> int:
    with session_scope(url) as session:
        return session.exec(select(Plan.monthly_credits).where(Plan.code == code)).one()


@pytest.fixture(scope="session")
def billing_api(
    serve_http: str,
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_stripe: FakeStripe,
) -> Iterator[Api]:
    """The studio API on PostgreSQL (as `tests.api.conftest.api`), paying through the fake
    Stripe."""
    data_dir = tmp_path_factory.mktemp("billing")
    name = "billing-postgres"
    settings = app_settings(data_dir, postgres_url, **stripe_settings(fake_stripe))
    yield deploy(name, settings, serve_http)
    serve.delete(name)


@pytest.fixture
def client(billing_api: Api) -> Iterator[httpx.Client]:
    with billing_api.client() as client:
        yield client


@pytest.fixture
def account(client: httpx.Client) -> Account:
    return register(client)


@pytest.fixture
def admin(billing_api: Api, client: httpx.Client) -> Account:
    account = register(client)
    set_user(billing_api, account.id, role=Role.admin)
    return account


def webhook_url(api: Api) -> str:
    return f"{api.url}/api/billing/webhook"
