"""Publishing a film to YouTube as a job, against the fake Google: resumable upload across cut
connections and reruns, retries, quota, relinking, the HTTP routes, and no token in any log."""

from __future__ import annotations

import base64
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import ray
from fastapi.testclient import TestClient
from sqlmodel import col, select

from cluster import metrics
from cluster.settings import Settings
from db.models import Job, JobLog, JobStatus, OAuthAccount, Project, User, YoutubeVideo
from db.session import session_scope
from db.types import utcnow
from pipeline.jobs.scheduler import scheduler_name
from pipeline.publish.publishing import PublishRequest, create_publish_job, publish_video
from pipeline.publish.youtube import UPLOAD_GRANULARITY, UploadOptions, next_quota_reset
from tests.fakes.google import FakeGoogle, UploadSession
from tests.youtube import (
    JPEG,
    VTT,
    add_user,
    auth,
    link,
    rendered_project,
    studio_api,
    studio_settings,
    youtube_account,
)

FILM_SIZE = 1_300_000
CHUNKS = math.ceil(FILM_SIZE / UPLOAD_GRANULARITY)
FAST = UploadOptions(
    chunk_size=UPLOAD_GRANULARITY,
    max_retries=2,
    backoff_s=0.01,
    max_backoff_s=0.05,
    unavailable_retry_delay_s=0,
)


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    """oauthlib refuses plain-HTTP token endpoints unless told otherwise; Google's are HTTPS."""
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
    """A user with a linked YouTube channel."""
    user = add_user(database_url)
    link(api, google, studio, user)
    return user


@pytest.fixture
def film() -> bytes:
    return os.urandom(FILM_SIZE)


@pytest.fixture
def project(studio: Settings, channel: User, film: bytes) -> Project:
    return rendered_project(studio, channel, film)


def new_job(database_url: str, user: User, project: Project, **fields: object) -> uuid.UUID:
    request = PublishRequest.model_validate({"title": "The Clockwork Garden", **fields})
    with session_scope(database_url) as session:
        owner = session.get(User, user.id)
        assert owner is not None
        return create_publish_job(session, owner, project.id, request).id


def job_row(database_url: str, job_id: uuid.UUID) -> Job:
    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def video_row(database_url: str, job_id: uuid.UUID) -> YoutubeVideo:
    with session_scope(database_url) as session:
        return session.exec(select(YoutubeVideo).where(YoutubeVideo.job_id == job_id)).one()


def only_session(google: FakeGoogle) -> UploadSession:
    [session] = google.sessions.values()
    return session


# -- publishing -----------------------------------------------------------------------------


def test_publish_uploads_the_film_with_its_metadata_and_extras(
    api: TestClient,
    google: FakeGoogle,
    studio: Settings,
    database_url: str,
    channel: User,
    project: Project,
    film: bytes,
) -> None:
    playlist = api.post(
        "/api/youtube/playlist", json={"title": "Shorts"}, headers=auth(studio, channel)
    )
    playlist_id = playlist.json()["youtube_id"]
    job_id = new_job(database_url, channel, project, description="A garden that keeps time.",
                     tags=["animation", "clockwork"], category_id="1", privacy_status="unlisted",
                     playlist_id=playlist_id)  # fmt: skip

    publish_video(database_url, studio, job_id, FAST)

    job = job_row(database_url, job_id)
    assert (job.status, job.progress, job.error, job.warnings) == (
        JobStatus.succeeded,
        100,
        None,
        [],
    )
    assert {name: stage["status"] for name, stage in job.stages.items()} == {
        "upload": "succeeded", "thumbnail": "succeeded", "captions": "succeeded",
        "playlist": "succeeded",
    }  # fmt: skip
    youtube_id = job.output["youtube_id"]
    assert job.output["url"] == f"https://www.youtube.com/watch?v={youtube_id}"
    uploaded = google.videos[youtube_id]
    assert uploaded["bytes"] == film
    assert uploaded["snippet"]["title"] == "The Clockwork Garden"
    assert uploaded["snippet"]["description"] == "A garden that keeps time."
    assert uploaded["snippet"]["tags"] == ["animation", "clockwork"]
    assert uploaded["snippet"]["categoryId"] == "1"
    assert uploaded["status"]["privacyStatus"] == "unlisted"
    assert uploaded["status"]["selfDeclaredMadeForKids"] is False
    assert google.thumbnails[youtube_id] == JPEG
    [caption] = google.captions
    assert caption["snippet"]["videoId"] == youtube_id and caption["snippet"]["language"] == "en"
    assert caption["track"] == VTT
    assert google.playlist_items == [
        {"playlistId": playlist_id, "position": 0,
         "resourceId": {"kind": "youtube#video", "videoId": youtube_id}}
    ]  # fmt: skip
    assert (only_session(google).chunks, only_session(google).received) == (CHUNKS, FILM_SIZE)
    video = video_row(database_url, job_id)
    assert (video.youtube_id, video.bytes_sent, video.upload_session_url, video.status) == (
        youtube_id, FILM_SIZE, None, "uploaded",
    )  # fmt: skip


def test_upload_cut_half_way_resumes_without_resending_what_arrived(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, project: Project,
    film: bytes,
) -> None:  # fmt: skip
    google.cut_upload(at_byte=600_000)
    job_id = new_job(database_url, channel, project)

    publish_video(database_url, studio, job_id, FAST)

    assert job_row(database_url, job_id).status == JobStatus.succeeded
    session = only_session(google)
    assert session.received == FILM_SIZE, "a byte that had arrived was sent again"
    assert google.videos[job_row(database_url, job_id).output["youtube_id"]]["bytes"] == film
    queries = [
        c for c in google.calls_to("PUT", "/upload/") if c.content_range == f"bytes */{FILM_SIZE}"
    ]
    assert len(queries) == 1


def test_interrupted_publish_continues_its_session_on_the_next_run(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, project: Project,
    film: bytes,
) -> None:  # fmt: skip
    google.cut_upload(at_byte=600_000, times=FAST.max_retries + 1)
    job_id = new_job(database_url, channel, project)

    publish_video(database_url, studio, job_id, FAST)

    waiting = job_row(database_url, job_id)
    assert waiting.status == JobStatus.queued and waiting.error is None
    assert "connection to YouTube failed" in waiting.output["retry_reason"]
    assert waiting.stages["upload"]["status"] == "waiting"
    assert 0 < waiting.progress < 85
    interrupted = video_row(database_url, job_id)
    assert interrupted.upload_session_url is not None and interrupted.bytes_sent == 600_000

    publish_video(database_url, studio, job_id, FAST)

    assert job_row(database_url, job_id).status == JobStatus.succeeded
    assert len(google.calls_to("POST", "/upload/youtube/v3/videos")) == 1
    assert only_session(google).received == FILM_SIZE, "a byte that had arrived was sent again"
    assert google.videos[video_row(database_url, job_id).youtube_id or ""]["bytes"] == film


def test_server_errors_are_retried_with_backoff(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, project: Project,
    film: bytes,
) -> None:  # fmt: skip
    google.fail("POST", "/upload/youtube/v3/videos", 500)
    google.fail("PUT", "/upload/youtube/v3/videos", 503)
    google.fail("POST", "/upload/youtube/v3/thumbnails/set", 502)
    job_id = new_job(database_url, channel, project)

    publish_video(database_url, studio, job_id, FAST)

    job = job_row(database_url, job_id)
    assert (job.status, job.warnings) == (JobStatus.succeeded, [])
    assert google.videos[job.output["youtube_id"]]["bytes"] == film
    assert len(google.calls_to("POST", "/upload/youtube/v3/thumbnails/set")) == 2


def test_quota_exceeded_leaves_the_job_waiting_for_the_quota_reset(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, project: Project
) -> None:
    google.quota_exceeded = True
    job_id = new_job(database_url, channel, project)

    publish_video(database_url, studio, job_id, FAST)

    job = job_row(database_url, job_id)
    assert job.status == JobStatus.queued and job.error is None
    assert datetime.fromisoformat(job.output["retry_at"]) == next_quota_reset(utcnow())
    assert "quota" in job.output["retry_reason"]
    assert job.stages["upload"]["status"] == "waiting"
    calls = len(google.calls)
    publish_video(database_url, studio, job_id, FAST)
    assert len(google.calls) == calls, "a job waiting for its retry time ran early"
    assert job_row(database_url, job_id).status == JobStatus.queued


def test_a_waiting_job_runs_once_its_retry_time_has_come(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, project: Project
) -> None:
    google.quota_exceeded = True
    job_id = new_job(database_url, channel, project)
    now = UploadOptions(chunk_size=UPLOAD_GRANULARITY, quota_retry_delay_s=0)
    publish_video(database_url, studio, job_id, now)
    google.quota_exceeded = False

    publish_video(database_url, studio, job_id, now)

    job = job_row(database_url, job_id)
    assert job.status == JobStatus.succeeded and "retry_at" not in job.output
    assert job.attempts == 2


def test_every_change_of_a_publish_job_goes_through_the_job_state_machine(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, project: Project,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    counted: list[str] = []
    monkeypatch.setattr(metrics, "job_state", lambda state: counted.append(str(state)))
    google.quota_exceeded = True
    job_id = new_job(database_url, channel, project)
    now = UploadOptions(chunk_size=UPLOAD_GRANULARITY, quota_retry_delay_s=0)
    publish_video(database_url, studio, job_id, now)
    google.quota_exceeded = False

    publish_video(database_url, studio, job_id, now)

    with session_scope(database_url) as session:
        logs = session.exec(
            select(JobLog).where(JobLog.job_id == job_id).order_by(col(JobLog.created_at))
        ).all()
    assert [log.message for log in logs if log.stage == "job"] == [
        "queued -> running", "running -> queued", "queued -> running", "running -> succeeded",
    ]  # fmt: skip
    assert counted == ["running", "queued", "running", "succeeded"]
    upload = [log.message for log in logs if log.stage == "upload"]
    assert upload == ["running", "waiting", "running", "succeeded"]


@pytest.mark.parametrize(
    ("now", "reset"),
    [
        (datetime(2026, 11, 25, 10, 0, tzinfo=UTC), datetime(2026, 11, 26, 8, 0, tzinfo=UTC)),
        (datetime(2026, 7, 1, 12, 0, tzinfo=UTC), datetime(2026, 7, 2, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 26, 7, 59, tzinfo=UTC), datetime(2026, 11, 26, 8, 0, tzinfo=UTC)),
        (datetime(2026, 11, 26, 8, 0, tzinfo=UTC), datetime(2026, 11, 27, 8, 0, tzinfo=UTC)),
    ],
)
def test_quota_resets_at_the_next_pacific_midnight(now: datetime, reset: datetime) -> None:
    assert next_quota_reset(now) == reset


def test_expired_access_token_is_refreshed_during_publish(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, project: Project
) -> None:
    before = youtube_account(database_url, channel.id)
    google.expire_access_tokens()
    job_id = new_job(database_url, channel, project)

    publish_video(database_url, studio, job_id, FAST)

    assert job_row(database_url, job_id).status == JobStatus.succeeded
    grants = [c.form.get("grant_type") for c in google.calls_to("POST", "/token")]
    assert grants == ["authorization_code", "refresh_token"]
    after = youtube_account(database_url, channel.id)
    assert before is not None and after is not None
    assert after.access_token != before.access_token


def test_revoked_channel_fails_the_job_asking_to_relink_and_loses_nothing(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str, channel: User,
    project: Project, film: bytes,
) -> None:  # fmt: skip
    google.cut_upload(at_byte=600_000, times=FAST.max_retries + 1)
    job_id = new_job(database_url, channel, project)
    publish_video(database_url, studio, job_id, FAST)
    google.revoke(google.refresh_tokens()[0])
    with session_scope(database_url) as session:
        account = session.exec(select(OAuthAccount).where(OAuthAccount.user_id == channel.id)).one()
        account.expires_at = utcnow() - timedelta(minutes=1)
        session.add(account)
    link_before = youtube_account(database_url, channel.id)
    video_before = video_row(database_url, job_id)

    publish_video(database_url, studio, job_id, FAST)

    job = job_row(database_url, job_id)
    assert job.status == JobStatus.failed
    assert job.error is not None and "relink your channel" in job.error
    link_after, video_after = (
        youtube_account(database_url, channel.id),
        video_row(database_url, job_id),
    )
    assert link_before is not None and link_after is not None
    assert (link_after.access_token, link_after.refresh_token) == (
        link_before.access_token, link_before.refresh_token,
    )  # fmt: skip
    assert (video_after.upload_session_url, video_after.bytes_sent) == (
        video_before.upload_session_url, video_before.bytes_sent,
    )  # fmt: skip
    with session_scope(database_url) as session:
        assert session.get(Project, project.id) is not None

    link(api, google, studio, channel)
    with session_scope(database_url) as session:
        retried = session.get(Job, job_id)
        assert retried is not None
        retried.status = JobStatus.queued
        session.add(retried)
    publish_video(database_url, studio, job_id, FAST)

    assert job_row(database_url, job_id).status == JobStatus.succeeded
    assert only_session(google).received == FILM_SIZE
    assert google.videos[video_row(database_url, job_id).youtube_id or ""]["bytes"] == film


def test_a_refused_thumbnail_is_a_warning_not_a_failure(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, film: bytes
) -> None:
    project = rendered_project(studio, channel, film, {"thumbnail.jpg": b"not an image"})
    job_id = new_job(database_url, channel, project)

    publish_video(database_url, studio, job_id, FAST)

    job = job_row(database_url, job_id)
    assert job.status == JobStatus.succeeded
    assert job.stages["thumbnail"]["status"] == "failed"
    assert job.warnings == ["thumbnail: YouTube answered 400: Not an image"]


def test_extras_not_asked_for_or_not_rendered_are_skipped(
    google: FakeGoogle, studio: Settings, database_url: str, channel: User, project: Project
) -> None:
    job_id = new_job(database_url, channel, project, thumbnail="thumbnail9.jpg", captions=False)

    publish_video(database_url, studio, job_id, FAST)

    job = job_row(database_url, job_id)
    assert {name: stage["status"] for name, stage in job.stages.items()} == {
        "upload": "succeeded", "thumbnail": "skipped", "captions": "skipped",
        "playlist": "skipped",
    }  # fmt: skip
    assert (job.progress, google.thumbnails, google.captions) == (100, {}, [])


# -- the HTTP routes ------------------------------------------------------------------------


def test_videos_route_reports_youtube_processing_status(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str, channel: User,
    project: Project,
) -> None:  # fmt: skip
    job_id = new_job(database_url, channel, project)
    publish_video(database_url, studio, job_id, FAST)

    [processing] = api.get("/api/youtube/videos", headers=auth(studio, channel)).json()
    google.finish_processing(processing["youtube_id"])
    [processed] = api.get("/api/youtube/videos", headers=auth(studio, channel)).json()

    assert (processing["status"], processing["processing_status"]) == ("uploaded", "processing")
    assert (processed["status"], processed["processing_status"]) == ("processed", "succeeded")
    assert processed["job_id"] == str(job_id) and processed["bytes_sent"] == FILM_SIZE


@pytest.fixture
def own_scheduler(ray_session: None, studio: Settings) -> None:
    """Ends a scheduler that an earlier test started on this database (the session's PostgreSQL
    schema is shared) with its own settings: this test's publish job must run with this test's
    Google fake and sealing key."""
    name = scheduler_name(studio.resolved_database_url)
    deadline = time.monotonic() + 30
    while True:
        try:
            ray.kill(ray.get_actor(name, namespace="studio"))
        except ValueError:  # no actor of that name (any more)
            return
        assert time.monotonic() < deadline, "the earlier scheduler did not end"
        time.sleep(0.2)


@pytest.mark.usefixtures("own_scheduler")
def test_upload_route_starts_a_publish_job_on_the_cluster(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str, channel: User,
    project: Project, film: bytes,
) -> None:  # fmt: skip
    response = api.post(
        "/api/youtube/upload",
        json={"project_id": str(project.id), "title": "The Clockwork Garden",
              "privacy_status": "public", "made_for_kids": True},
        headers=auth(studio, channel),
    )  # fmt: skip

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    job_id = uuid.UUID(response.json()["job_id"])
    deadline = time.monotonic() + 120
    while job_row(database_url, job_id).status in (JobStatus.queued, JobStatus.running):
        assert time.monotonic() < deadline, job_row(database_url, job_id).stages
        time.sleep(0.5)
    job = job_row(database_url, job_id)
    assert job.status == JobStatus.succeeded, job.error
    uploaded = google.videos[job.output["youtube_id"]]
    assert uploaded["bytes"] == film
    assert uploaded["status"]["selfDeclaredMadeForKids"] is True


def test_upload_route_needs_a_linked_channel(
    api: TestClient, studio: Settings, database_url: str, film: bytes
) -> None:
    user = add_user(database_url)
    project = rendered_project(studio, user, film)

    response = api.post(
        "/api/youtube/upload",
        json={"project_id": str(project.id), "title": "The Clockwork Garden"},
        headers=auth(studio, user),
    )

    assert response.status_code == 409
    assert "link your channel" in response.json()["detail"]


def test_upload_route_needs_a_rendered_film_of_the_users_own(
    api: TestClient, studio: Settings, database_url: str, channel: User, project: Project
) -> None:
    with session_scope(database_url) as session:
        draft = Project(owner_id=channel.id, title="Draft")
        session.add(draft)
    stranger = add_user(database_url)

    def upload(user: User, project_id: uuid.UUID) -> int:
        body = {"project_id": str(project_id), "title": "The Clockwork Garden"}
        return api.post("/api/youtube/upload", json=body, headers=auth(studio, user)).status_code

    assert upload(channel, draft.id) == 409
    assert upload(stranger, project.id) == 404


@pytest.mark.parametrize(
    "metadata",
    [
        {"title": ""},
        {"title": "x" * 101},
        {"title": "a <b> title"},
        {"title": "t", "privacy_status": "secret"},
        {"title": "t", "tags": ["x" * 300, "y" * 300]},
    ],
)
def test_upload_route_refuses_metadata_youtube_would(
    api: TestClient, studio: Settings, channel: User, project: Project, metadata: dict[str, object]
) -> None:
    body = {"project_id": str(project.id), **metadata}

    response = api.post("/api/youtube/upload", json=body, headers=auth(studio, channel))

    assert response.status_code == 422


# -- logs -----------------------------------------------------------------------------------


def test_no_token_appears_in_any_log_line(
    api: TestClient,
    google: FakeGoogle,
    studio: Settings,
    database_url: str,
    film: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    start = api.get("/api/auth/google/start?purpose=signin").json()["authorization_url"]
    code, state = google.authorize(start)
    studio_tokens = api.get(
        "/api/auth/google/callback", params={"code": code, "state": state}
    ).json()
    with session_scope(database_url) as session:
        user = session.exec(select(User).where(User.email == google.account.email)).one()
    link(api, google, studio, user)
    google.cut_upload(at_byte=600_000)
    google.expire_access_tokens()
    job_id = new_job(database_url, user, rendered_project(studio, user, film))
    publish_video(database_url, studio, job_id, FAST)
    api.get("/api/youtube/videos", headers=auth(studio, user))
    api.delete("/api/youtube/link", headers=auth(studio, user))

    basic = base64.b64encode(f"{google.client_id}:{google.client_secret}".encode()).decode()
    verifiers = [
        c.form["code_verifier"] for c in google.calls_to("POST", "/token") if "code" in c.form
    ]
    secrets = [*google.secrets, basic, *verifiers, studio_tokens["access_token"],
               studio_tokens["refresh_token"]]  # fmt: skip
    assert job_row(database_url, job_id).status == JobStatus.succeeded
    assert any(r.name.startswith("requests_oauthlib") for r in caplog.records), "nothing to check"
    lines = [record.getMessage() for record in caplog.records] + [caplog.text]
    leaks = [s[:12] for s in secrets if any(s in line for line in lines)]
    assert leaks == []
