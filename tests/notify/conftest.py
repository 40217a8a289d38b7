"""A webhook receiver on real HTTP (a thread on 127.0.0.1 that keeps every request and answers
a status chosen by the test), the accounts tests' local SMTP server, users and jobs made in the
database, and settings that let webhooks go to loopback over plain HTTP."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlmodel import Session

from cluster.settings import Settings
from db.models import Job, JobStatus, User
from db.session import session_scope
from pipeline.lifecycle import transition
from tests.accounts.conftest import smtp  # noqa: F401  (the local SMTP server, a fixture)


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    status: int = 200
    requests: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(Received(time.monotonic(), dict(self.headers), body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/studio"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def notify_settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        _env_file=None,
        database_url=database_url,
        notify_allow_loopback=True,
        notify_backoff_s=0.2,
        notify_max_attempts=4,
        notify_timeout_s=5,
    )


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does with `Studio-Signature`: recompute the HMAC of "t.body" and refuse
    an old timestamp."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(parts["t"])) <= tolerance_s
    return fresh and hmac.compare_digest(expected.hexdigest(), parts["v1"])


def new_user(database_url: str) -> uuid.UUID:
    with session_scope(database_url) as session:
        user = User(email=f"user-{uuid.uuid4().hex[:12]}@example.com", password_hash="x")
        session.add(user)
    return user.id


def end_job(database_url: str, user_id: uuid.UUID, final: JobStatus) -> uuid.UUID:
    """A render job of `user_id` taken through the state machine to `final`."""
    with session_scope(database_url) as session:
        job = Job(user_id=user_id, type="render")
        session.add(job)
        session.flush()
        _walk(session, job, final)
    return job.id


def _walk(session: Session, job: Job, final: JobStatus) -> None:
    if final != JobStatus.cancelled:
        transition(session, job, JobStatus.running)
    transition(session, job, final, error="boom" if final == JobStatus.failed else None)
