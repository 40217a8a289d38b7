"""Google sign-in, channel linking and YouTube publishing, against the local fake Google
(tests/fakes/google.py) with the real client libraries. Shared helpers live here."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr
from sqlmodel import select

from cluster.settings import Settings
from db.models import OAuthAccount, Project, ProjectStatus, User
from db.session import session_scope
from deployments.api.problems import install_error_handlers
from deployments.api.ratelimit import LocalLimiter
from deployments.api.routers import auth_google, youtube
from deployments.api.security import create_access_token
from pipeline.storage import open_storage
from tests.fakes.google import FakeGoogle


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 9), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


JPEG = _jpeg()  # the renderer's thumbnails are JPEG
SRT = b"1\n00:00:00,000 --> 00:00:02,500\nOnce upon a time.\n"
VTT = b"WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nOnce upon a time.\n"


def studio_settings(settings: Settings, fake: FakeGoogle, database_url: str) -> Settings:
    """The test settings pointed at the fake Google and at `database_url`."""
    return settings.model_copy(
        update={
            "database_url": database_url,
            "google_client_id": fake.client_id,
            "google_client_secret": SecretStr(fake.client_secret),
            "google_auth_uri": f"{fake.url}/o/oauth2/v2/auth",
            "google_token_uri": f"{fake.url}/token",
            "google_revoke_uri": f"{fake.url}/revoke",
            "google_jwks_uri": f"{fake.url}/oauth2/v3/certs",
            "youtube_api_url": fake.url,
        }
    )


def studio_api(settings: Settings) -> TestClient:
    """The two routers on an app wired the way deps.py expects (settings and a limiter on
    `app.state`), with the studio's error handlers."""
    app = FastAPI()
    app.state.settings = settings
    app.state.limiter = LocalLimiter()
    app.state.limit_prefix = "test"
    install_error_handlers(app)
    app.include_router(auth_google.router)
    app.include_router(youtube.router)
    return TestClient(app)


def add_user(database_url: str, email: str | None = None, **fields: Any) -> User:
    with session_scope(database_url) as session:
        user = User(email=email or f"user.{uuid.uuid4().hex[:8]}@example.com", **fields)
        session.add(user)
    return user


def auth(settings: Settings, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_access_token(settings, user.id, user.role)}"}


def link(client: TestClient, fake: FakeGoogle, settings: Settings, user: User) -> dict[str, Any]:
    """The whole linking dance: start (signed in), consent at Google, callback."""
    started = client.get("/api/auth/google/start?purpose=link", headers=auth(settings, user))
    assert started.status_code == 200, started.text
    code, state = fake.authorize(started.json()["authorization_url"])
    done = client.get("/api/auth/google/callback", params={"code": code, "state": state})
    assert done.status_code == 200, done.text
    return done.json()  # type: ignore[no-any-return]


def youtube_account(database_url: str, user_id: uuid.UUID) -> OAuthAccount | None:
    with session_scope(database_url) as session:
        return session.exec(
            select(OAuthAccount).where(
                OAuthAccount.user_id == user_id, OAuthAccount.provider == "youtube"
            )
        ).first()


def rendered_project(
    settings: Settings, user: User, film: bytes, extra: dict[str, bytes] | None = None
) -> Project:
    """A ready project whose outputs (film, subtitles, thumbnail) are in storage, recorded the
    way pipeline/jobs/submission.py records render outputs."""
    storage = open_storage(settings)
    files = {"film.mp4": film, "subtitles.srt": SRT, "subtitles.vtt": VTT, "thumbnail.jpg": JPEG}
    files.update(extra or {})
    outputs = {}
    for name, data in files.items():
        path = Path(settings.data_dir) / "render" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stored = storage.put_content(path, path.suffix)
        outputs[name] = {"asset_id": str(uuid.uuid4()), "key": stored.key, "size": stored.size,
                         "sha256": stored.sha256, "content_type": stored.content_type}  # fmt: skip
    with session_scope(settings.resolved_database_url) as session:
        project = Project(
            owner_id=user.id,
            title="The Clockwork Garden",
            status=ProjectStatus.ready,
            spec={"title": "The Clockwork Garden", "language": "en"},
            outputs=outputs,
        )
        session.add(project)
    return project
