"""The whole API app in process (FastAPI's TestClient) on PostgreSQL, with the local fake
Google and a local SMTP server (aiosmtpd) that keeps every message it receives. Password
accounts are made by the function the register route calls, without its credit grant, so that
only the tests about credits need Ray (the ledger actor)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cluster.settings import Settings
from db.session import session_scope
from deployments.api import accounts
from deployments.api.app import create_app
from deployments.api.ratelimit import LocalLimiter
from tests.fakes.google import FakeGoogle
from tests.services import free_port, require_module
from tests.youtube import studio_settings

PASSWORD = "correct horse battery staple"
TOKEN_IN_LINK = re.compile(r"token=([A-Za-z0-9_-]+)")


@dataclass
class Mailbox:
    """What the local SMTP server received, as parsed messages."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout_s: float = 10) -> EmailMessage:
        """The `count`-th message to `address`, waiting for it to arrive."""
        deadline = time.monotonic() + timeout_s
        while len(self.to(address)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no mail number {count} to {address}")
            time.sleep(0.05)
        return self.to(address)[count - 1]

    def token(self, address: str, count: int = 1) -> str:
        """The token in the link of the `count`-th message to `address`."""
        body = self.wait_for(address, count).get_body(("plain",))
        assert body is not None
        found = TOKEN_IN_LINK.search(body.get_content())
        assert found is not None, body.get_content()
        return found[1]


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[str, Mailbox]]:
    """A local SMTP server (aiosmtpd): its URL and the mailbox it fills."""
    controller_module = require_module("aiosmtpd.controller", "the local SMTP server")
    mailbox = Mailbox()
    port = free_port()
    controller = controller_module.Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield f"smtp://127.0.0.1:{port}", mailbox
    controller.stop()


@contextmanager
def smtp_with_login(
    username: str, password: str
) -> Iterator[tuple[str, list[tuple[str, str]], Mailbox]]:
    """A local SMTP server that requires AUTH (over plain text: a local test server): its URL
    with the credentials, the logins it accepted, its mailbox."""
    controller_module = require_module("aiosmtpd.controller", "the local SMTP server")
    smtp_module = require_module("aiosmtpd.smtp", "the local SMTP server")
    logins: list[tuple[str, str]] = []

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        login = (data.login.decode(), data.password.decode())
        if login == (username, password):
            logins.append(login)
            return smtp_module.AuthResult(success=True)
        return smtp_module.AuthResult(success=False, handled=False)

    mailbox = Mailbox()
    port = free_port()
    controller = controller_module.Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield f"smtp://{username}:{password}@127.0.0.1:{port}", logins, mailbox
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp: tuple[str, Mailbox]) -> Mailbox:
    return smtp[1]


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    """oauthlib refuses plain-HTTP token endpoints unless told otherwise; Google's are HTTPS."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with FakeGoogle.running() as fake:
        yield fake


@pytest.fixture
def studio(
    tmp_path: Path,
    google: FakeGoogle,
    postgres_url: str,
    smtp: tuple[str, Mailbox],
) -> Settings:
    settings = Settings(data_dir=tmp_path / "var", _env_file=None, smtp_url=SecretStr(smtp[0]))
    return studio_settings(settings, google, postgres_url)


def client_for(settings: Settings) -> TestClient:
    """The studio's whole app on `settings`, with in-process rate limit counters."""
    return TestClient(create_app(settings, LocalLimiter()))


@pytest.fixture
def api(studio: Settings) -> Iterator[TestClient]:
    with client_for(studio) as client:
        yield client


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def register(settings: Settings, email: str | None = None, password: str = PASSWORD) -> str:
    """Registers a password account (as `POST /api/users/register` does, less the credits);
    returns its id."""
    with session_scope(settings.resolved_database_url) as session:
        user = accounts.register(session, email or new_email(), password, None)
    return str(user.id)


def login(api: TestClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return api.post("/api/users/login", json={"email": email, "password": password})


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://ai-film-studio.dev/problems/{slug}"
    return body


def google_flow(
    api: TestClient, google: FakeGoogle, purpose: str = "signin", **headers: str
) -> httpx.Response:
    """Start, consent at the fake Google, callback."""
    started = api.get(f"/api/auth/google/start?purpose={purpose}", headers=headers)
    assert started.status_code == 200, started.text
    code, state = google.authorize(started.json()["authorization_url"])
    return api.get("/api/auth/google/callback", params={"code": code, "state": state})
