"""The API under test: the real ingress on Ray Serve (the `ray_session` Ray), one app on
PostgreSQL for the whole session, reached over real HTTP with httpx.

Tests share an app, so each makes its own users (`account`), and reaches into the database only
to arrange what the API cannot make on its own (another user's job, a suspended user, a plan).
"""

from __future__ import annotations

import contextlib
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray import serve
from sqlmodel import SQLModel, select

from cluster.settings import Settings
from db.models import Job, JobStatus, Plan, User
from db.session import database_tag, session_scope
from db.types import utcnow
from deployments.api.ingress import build_api
from pipeline.jobs.scheduler import scheduler_name
from pipeline.ledger.actor import LEDGER_NAME, LEDGER_NAMESPACE
from tests.fakes.stripe import FakeStripe, stripe_settings
from tests.services import free_port

PASSWORD = "correct horse battery staple"


@dataclass
class Api:
    name: str
    url: str
    settings: Settings

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


@dataclass
class Account:
    id: uuid.UUID
    email: str
    access_token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def deploy(name: str, settings: Settings, serve_http: str, **options: Any) -> Api:
    """Runs the ingress as Serve app `name` under the route prefix `/name`; waits for HTTP."""
    url = f"{serve_http}/{name}"
    settings = settings.model_copy(update={"public_url": url})
    serve.run(build_api(settings, **options), name=name, route_prefix=f"/{name}")
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/plans", timeout=5).status_code == 200:
                return Api(name, url, settings)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API {name} did not answer at {url}")
        time.sleep(0.2)


def undeploy(*apps: Api) -> None:
    """Deletes the apps, then the scheduler and ledger actors of their database: for apps alone
    on a database of their own, whose detached actors would otherwise keep polling it (and a
    share of the two cores) for the rest of the session."""
    for api in apps:
        serve.delete(api.name)
    for database_url in {api.database_url for api in apps}:
        actors = [
            (scheduler_name(database_url), "studio"),
            (f"{LEDGER_NAME}-{database_tag(database_url)}", LEDGER_NAMESPACE),
        ]
        for name, namespace in actors:
            with contextlib.suppress(ValueError):  # never made
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)


def app_settings(data_dir: Path, database_url: str, **fields: Any) -> Settings:
    fields.setdefault("rate_limit_per_minute_ip", 100_000)
    # A Google client (never reached: flows stop at the local state check) so that the Google
    # routes answer as configured, not with their 503 "not configured".
    fields.setdefault("google_client_id", "studio-test.apps.googleusercontent.com")
    fields.setdefault("google_client_secret", "studio-test-secret")
    # An SMTP server that is not there (mail goes out after the answer, and fails in the log),
    # so that the email routes answer as configured, not with their 503 "not configured".
    fields.setdefault("smtp_url", f"smtp://127.0.0.1:{free_port()}")
    return Settings(data_dir=data_dir, database_url=database_url, _env_file=None, **fields)


@pytest.fixture(scope="session")
def api(
    serve_http: str,
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_stripe: FakeStripe,
) -> Iterator[Api]:
    """The studio API on PostgreSQL, paying through the fake Stripe. The API's behaviour is
    tested on the production database only (two cores keep CI to 40 minutes); SQLite, the
    embedded default, serves the database layer's tests, the renders through the API and the
    browser journey."""
    data_dir = tmp_path_factory.mktemp("api")
    name = "api-postgres"
    settings = app_settings(data_dir, postgres_url, **stripe_settings(fake_stripe))
    yield deploy(name, settings, serve_http)
    serve.delete(name)


@pytest.fixture
def client(api: Api) -> Iterator[httpx.Client]:
    with api.client() as client:
        yield client


def register(client: httpx.Client, email: str | None = None) -> Account:
    email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
    response = client.post("/api/users/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return login(client, email, response.json()["id"])


def login(client: httpx.Client, email: str, user_id: str) -> Account:
    response = client.post("/api/users/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    tokens = response.json()
    return Account(uuid.UUID(user_id), email, tokens["access_token"], tokens["refresh_token"])


@pytest.fixture
def account(client: httpx.Client) -> Account:
    return register(client)


@pytest.fixture
def other(client: httpx.Client) -> Account:
    """A second user, whose things `account` must never reach."""
    return register(client)


def film_spec(**fields: Any) -> dict[str, Any]:
    """The smallest film worth rendering: one short scene at 144p."""
    spec: dict[str, Any] = {
        "title": "Dawn",
        "resolution": 144,
        "fps": 12,
        "scenes": [{"narration": "The sun rises.", "prompt": "a hill at dawn"}],
    }
    return spec | fields


def create_project(client: httpx.Client, account: Account, **spec: Any) -> dict[str, Any]:
    response = client.post(
        "/api/projects/create",
        headers=account.auth,
        json={"title": "My film", "spec": film_spec(**spec)},
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A valid grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def insert_job(api: Api, user_id: uuid.UUID, project_id: str | None = None, **fields: Any) -> Job:
    """A job row as the pipeline would write it, without rendering anything."""
    with session_scope(api.database_url) as session:
        job = Job(
            user_id=user_id,
            project_id=uuid.UUID(project_id) if project_id else None,
            **{"type": "render", **fields},
        )
        session.add(job)
    return job


def insert_queued_job(api: Api, user_id: uuid.UUID, project_id: str | None = None) -> Job:
    """A queued job that this database's render scheduler leaves alone while a test runs: a
    publish job whose retry is due in an hour (a queued render would be started, and fail)."""
    due = (utcnow() + timedelta(hours=1)).isoformat()
    return insert_job(
        api, user_id, project_id, status=JobStatus.queued, type="publish", output={"retry_at": due}
    )


def update_job(api: Api, job_id: uuid.UUID, **fields: Any) -> None:
    _update(api, Job, job_id, fields)


def put_on_plan(api: Api, user_id: uuid.UUID, code: str, **limits: int) -> None:
    """Moves the user to plan `code`, creating it (from the free plan, with `limits`) if new."""
    with session_scope(api.database_url) as session:
        if session.exec(select(Plan).where(Plan.code == code)).first() is None:
            free = session.exec(select(Plan).where(Plan.code == "free")).one()
            fields = free.model_dump(exclude={"id", "code", "created_at"}) | limits
            session.add(Plan(code=code, **fields))
            session.flush()
        user = session.get(User, user_id)
        assert user is not None
        user.plan_code = code
        session.add(user)


def set_user(api: Api, user_id: uuid.UUID, **fields: Any) -> None:
    _update(api, User, user_id, fields)


def _update(api: Api, table: type[SQLModel], row_id: uuid.UUID, fields: dict[str, Any]) -> None:
    with session_scope(api.database_url) as session:
        row = session.get(table, row_id)
        assert row is not None
        for name, value in fields.items():
            setattr(row, name, value)
        session.add(row)


def delete_user(api: Api, user_id: uuid.UUID) -> None:
    with session_scope(api.database_url) as session:
        user = session.get(User, user_id)
        assert user is not None
        session.delete(user)


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """An RFC 9457 problem document with the studio's type URI for `slug`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://ai-film-studio.dev/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["instance"] == response.request.url.path
    return body
