"""AI disclosure on publish, against the fake Google: a film that a realistic neural engine made
part of is uploaded with `status.containsSyntheticMedia: true`, an animatic without it; the owner
turns the label off only with a stated reason, which the audit log keeps."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlmodel import select

from cluster.settings import Settings
from db.models import AuditLog, Job, JobStatus, Project, User
from db.session import session_scope
from db.types import utcnow
from models.registry import CPU_DEFAULTS
from pipeline.publish.disclosure import LABEL_OFF
from pipeline.publish.publishing import PublishRequest, create_publish_job, publish_video
from pipeline.publish.youtube import UPLOAD_GRANULARITY, UploadOptions
from tests.fakes.google import FakeGoogle
from tests.youtube import add_user, auth, link, rendered_project, studio_api, studio_settings

FAST = UploadOptions(chunk_size=UPLOAD_GRANULARITY, max_retries=2, backoff_s=0.01,
                     max_backoff_s=0.05, unavailable_retry_delay_s=0)  # fmt: skip
ANIMATIC = {capability.value: name for capability, name in CPU_DEFAULTS.items()}
REASON = "Stylised cartoon: no realistic person or place is depicted."


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with FakeGoogle.running() as fake:
        yield fake


@pytest.fixture
def studio(settings: Settings, google: FakeGoogle, database_url: str) -> Settings:
    return studio_settings(settings, google, database_url)


@pytest.fixture
def api(studio: Settings) -> TestClient:
    return studio_api(studio)


@pytest.fixture
def channel(api: TestClient, google: FakeGoogle, studio: Settings, database_url: str) -> User:
    user = add_user(database_url)
    link(api, google, studio, user)
    return user


def rendered_by(studio: Settings, user: User, quality: str, engines: dict[str, Any]) -> Project:
    """A project whose film a succeeded render job made with `engines`, recorded the way
    pipeline/jobs/submission.py and running.py record them."""
    project = rendered_project(studio, user, os.urandom(300_000))
    with session_scope(studio.resolved_database_url) as session:
        session.add(
            Job(
                user_id=user.id,
                project_id=project.id,
                type="render",
                status=JobStatus.succeeded,
                input={"quality": quality, "engines": {**engines, "image_video": None}},
                output={"outputs": project.outputs},
                completed_at=utcnow(),
            )
        )
    return project


def publish(studio: Settings, user: User, project: Project, **fields: Any) -> uuid.UUID:
    request = PublishRequest.model_validate({"title": "The Lighthouse", **fields})
    with session_scope(studio.resolved_database_url) as session:
        owner = session.get(User, user.id)
        assert owner is not None
        job_id = create_publish_job(session, owner, project.id, request).id
    publish_video(studio.resolved_database_url, studio, job_id, FAST)
    return job_id


def uploaded_status(studio: Settings, google: FakeGoogle, job_id: uuid.UUID) -> dict[str, Any]:
    with session_scope(studio.resolved_database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == JobStatus.succeeded, job
        youtube_id = job.output["youtube_id"]
    status: dict[str, Any] = google.videos[youtube_id]["status"]
    return status


def audit(studio: Settings, user: User) -> list[AuditLog]:
    """The user's label-off entries (the database may be shared by other tests)."""
    with session_scope(studio.resolved_database_url) as session:
        query = select(AuditLog).where(AuditLog.action == LABEL_OFF, AuditLog.actor_id == user.id)
        return list(session.exec(query).all())


@pytest.mark.parametrize(
    "engines",
    [
        {**ANIMATIC, "video": "runway"},
        {**ANIMATIC, "video": "wan", "voice": "kokoro"},
        {**ANIMATIC, "lipsync": "wav2lip"},
        {**ANIMATIC, "motion_lipsync": "fomm"},
    ],
    ids=["hosted-video", "local-video", "lip-sync", "character-animation"],
)
def test_a_film_a_realistic_engine_made_part_of_is_labelled_synthetic(
    api: TestClient, studio: Settings, google: FakeGoogle, channel: User, engines: dict[str, Any]
) -> None:
    project = rendered_by(studio, channel, "final", engines)
    job_id = publish(studio, channel, project)
    assert uploaded_status(studio, google, job_id)["containsSyntheticMedia"] is True
    assert audit(studio, channel) == []
    [video] = api.get("/api/youtube/videos", headers=auth(studio, channel)).json()
    assert video["contains_synthetic_media"] is True


def test_an_animatic_is_not_labelled(studio: Settings, google: FakeGoogle, channel: User) -> None:
    project = rendered_by(studio, channel, "animatic", ANIMATIC)
    job_id = publish(studio, channel, project)
    assert uploaded_status(studio, google, job_id)["containsSyntheticMedia"] is False


def test_a_final_render_of_cpu_engines_and_hosted_voices_is_not_labelled(
    studio: Settings, google: FakeGoogle, channel: User
) -> None:
    project = rendered_by(studio, channel, "final", {**ANIMATIC, "voice": "openai"})
    job_id = publish(studio, channel, project)
    assert uploaded_status(studio, google, job_id)["containsSyntheticMedia"] is False


def test_the_label_is_turned_off_only_with_a_reason_kept_in_the_audit_log(
    api: TestClient, studio: Settings, google: FakeGoogle, channel: User
) -> None:
    project = rendered_by(studio, channel, "final", {**ANIMATIC, "video": "luma"})
    job_id = publish(studio, channel, project, synthetic_label_off_reason=REASON)
    assert uploaded_status(studio, google, job_id)["containsSyntheticMedia"] is False
    [video] = api.get("/api/youtube/videos", headers=auth(studio, channel)).json()
    assert video["contains_synthetic_media"] is False
    [entry] = audit(studio, channel)
    assert (entry.actor_id, entry.target_type, entry.target_id) == (
        channel.id, "project", str(project.id),
    )  # fmt: skip
    assert entry.detail == {"reason": REASON, "engines": ["video: luma"],
                            "publish_job_id": str(job_id)}  # fmt: skip


def test_the_label_follows_the_render_that_made_the_current_film(
    studio: Settings, google: FakeGoogle, channel: User
) -> None:
    project = rendered_by(studio, channel, "final", {**ANIMATIC, "video": "runway"})
    with session_scope(studio.resolved_database_url) as session:  # an older animatic render
        session.add(Job(user_id=channel.id, project_id=project.id, type="render",
                        status=JobStatus.succeeded, input={"engines": ANIMATIC},
                        output={"outputs": {"film.mp4": {"key": "older"}}},
                        completed_at=utcnow()))  # fmt: skip
    job_id = publish(studio, channel, project)
    assert uploaded_status(studio, google, job_id)["containsSyntheticMedia"] is True


@pytest.mark.parametrize("reason", ["", "because", "x" * 501])
def test_a_reason_too_short_or_too_long_is_refused(reason: str) -> None:
    with pytest.raises(ValidationError, match="synthetic_label_off_reason"):
        PublishRequest.model_validate({"title": "T", "synthetic_label_off_reason": reason})


def test_the_route_refuses_a_bad_reason_with_a_problem(
    api: TestClient, studio: Settings, channel: User
) -> None:
    project = rendered_by(studio, channel, "final", {**ANIMATIC, "video": "runway"})
    body = {"project_id": str(project.id), "title": "T", "synthetic_label_off_reason": "no"}
    response = api.post("/api/youtube/upload", headers=auth(studio, channel), json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert audit(studio, channel) == []
