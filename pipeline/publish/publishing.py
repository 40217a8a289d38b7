"""Publishing a project's film to its owner's YouTube channel, as a job of type `publish`. Like
every job it changes state only through the job state machine (`pipeline.lifecycle`), which logs
and counts each change; the scheduler starts it.

Stages: `upload` (resumable; the session URI and acknowledged bytes live on the `YoutubeVideo`
row, so a rerun continues the same session), then `thumbnail`, `captions` and `playlist`. A rerun
skips the stages already done. Once the video is up, a refusal of a later stage becomes a
warning, not a failed job. Outcomes:

- `QuotaExceeded` or YouTube unavailable after retries: the job goes back to `queued` with
  `output.retry_at` (and `retry_reason`), its stage `waiting`; it is not started again before
  then.
- `RelinkRequired` (Google refused the refresh token): the job fails with that message; the
  link, the video row (and its upload session) and the project stay as they were.
- Any other domain error fails the job with its detail.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import ray
from pydantic import Field, field_validator
from sqlmodel import Session, col, select

from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import Job, JobStatus, Project, User, YoutubePlaylist, YoutubeVideo
from db.session import session_scope
from db.types import utcnow
from pipeline.errors import Conflict, IllegalTransition, NotFound, RelinkRequired
from pipeline.fields import StrictInput
from pipeline.lifecycle import StageStatus, set_stage, transition
from pipeline.publish.disclosure import label_off_audit, synthetic_engines
from pipeline.publish.google_oauth import linked_channel, youtube_credentials
from pipeline.publish.youtube import (
    RetryLater,
    UploadOptions,
    UploadProgress,
    VideoMetadata,
    YouTube,
    YoutubeRefused,
)
from pipeline.storage import open_storage

log = logging.getLogger(__name__)

JOB_TYPE = "publish"
FILM = "film.mp4"
CAPTION_FILES = ("subtitles.vtt", "subtitles.srt")
STAGE_WEIGHTS = {"upload": 85, "thumbnail": 5, "captions": 5, "playlist": 5}
DONE = frozenset({StageStatus.succeeded, StageStatus.skipped, StageStatus.failed})
Privacy = Literal["private", "unlisted", "public"]
SYNTHETIC = "contains_synthetic_media"
"""The video row's metadata key: whether the upload is labelled as synthetic content."""


class PublishRequest(StrictInput):
    """What to publish: YouTube's metadata and the optional extras. `thumbnail` names one of
    the project's outputs."""

    title: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=5000)
    tags: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=50)
    category_id: str = Field(default="22", max_length=3, pattern=r"^\d{1,3}$")
    privacy_status: Privacy = "private"
    made_for_kids: bool = False
    thumbnail: str | None = Field(default="thumbnail.jpg", max_length=255)
    captions: bool = True
    playlist_id: str | None = Field(default=None, max_length=64)
    synthetic_label_off_reason: str | None = Field(
        default=None,
        min_length=10,
        max_length=500,
        description="The studio labels a film that a realistic AI engine (neural video,"
        " lip-sync) made part of as altered or synthetic content on YouTube"
        " (`containsSyntheticMedia`); a stated reason turns the label off and is kept in the"
        " audit log.",
    )

    @field_validator("title", "description")
    @classmethod
    def _no_angle_brackets(cls, value: str) -> str:
        if "<" in value or ">" in value:
            raise ValueError("YouTube does not accept < or > here")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_fit(cls, tags: list[str]) -> list[str]:
        if sum(len(tag) + 1 for tag in tags) > 500:
            raise ValueError("YouTube accepts at most 500 characters of tags")
        return tags

    def metadata(self, contains_synthetic_media: bool) -> VideoMetadata:
        return VideoMetadata(
            title=self.title,
            description=self.description,
            tags=self.tags,
            category_id=self.category_id,
            privacy_status=self.privacy_status,
            made_for_kids=self.made_for_kids,
            contains_synthetic_media=contains_synthetic_media,
        )


def create_publish_job(
    session: Session, user: User, project_id: uuid.UUID, request: PublishRequest
) -> Job:
    """A queued publish job and its video row, for a rendered project of the user's with a
    linked channel. The video is labelled as synthetic content when a realistic engine made
    part of the film, unless the request states why not (kept in the audit log)."""
    project = session.get(Project, project_id)
    if project is None or project.owner_id != user.id:
        raise NotFound(f"project {project_id} not found")
    if FILM not in project.outputs:
        raise Conflict("the project has no rendered film yet")
    if linked_channel(session, user.id) is None:
        raise RelinkRequired("no YouTube channel is linked: link your channel")
    wanted = {
        "upload": True,
        "thumbnail": request.thumbnail is not None,
        "captions": request.captions,
        "playlist": request.playlist_id is not None,
    }
    job = Job(
        user_id=user.id,
        project_id=project.id,
        type=JOB_TYPE,
        input=request.model_dump(),
        stages={
            name: {"status": StageStatus.pending, "progress": 0}
            if on
            else {"status": StageStatus.skipped, "progress": 100}
            for name, on in wanted.items()
        },
    )
    session.add(job)
    engines = synthetic_engines(session, project, FILM)
    reason = request.synthetic_label_off_reason
    if engines and reason is not None:
        session.add(label_off_audit(user.id, project, job.id, reason, engines))
    labelled = bool(engines) and reason is None
    session.add(
        YoutubeVideo(
            user_id=user.id,
            project_id=project.id,
            job_id=job.id,
            title=request.title,
            privacy=request.privacy_status,
            metadata_={**request.model_dump(), SYNTHETIC: labelled},
        )
    )
    session.commit()
    return job


@ray.remote(num_cpus=0.1, max_retries=0)
def publish_task(settings: Settings, job_id: uuid.UUID) -> None:
    """Runs the job on the cluster (the scheduler starts it); the job row is where its outcome
    is read."""
    publish_video(settings.resolved_database_url, settings, job_id)


def publish_video(
    database_url: str, settings: Settings, job_id: uuid.UUID, options: UploadOptions | None = None
) -> None:
    """Runs a queued publish job to success, failure or its next retry time. A job that is not
    queued, or waits for a retry time still to come, is left alone."""
    if not _claim(database_url, job_id):
        return
    try:
        _publish(database_url, settings, job_id, options or UploadOptions())
    except RetryLater as later:
        log.info("publish job %s waits until %s: %s", job_id, later.retry_at, later.detail)
        _change(database_url, job_id, partial(_wait, later))
    except Exception as error:
        if isinstance(error, StudioError) and not error.internal:
            log.info("publish job %s failed: %s", job_id, error.detail)
            _change(database_url, job_id, partial(_fail, error.detail))
            return
        _change(database_url, job_id, partial(_fail, f"internal error ({type(error).__name__})"))
        raise


def sync_videos(session: Session, settings: Settings, user: User) -> list[YoutubeVideo]:
    """The user's videos, with upload and processing status fresh from YouTube."""
    videos = list(
        session.exec(
            select(YoutubeVideo)
            .where(YoutubeVideo.user_id == user.id)
            .order_by(col(YoutubeVideo.created_at).desc())
        ).all()
    )
    ids = [video.youtube_id for video in videos if video.youtube_id]
    if not ids:
        return videos
    credentials = youtube_credentials(settings.resolved_database_url, settings, user.id)
    with YouTube(settings, credentials) as youtube:
        found = {item["id"]: item for item in youtube.videos(ids)}
    for video in videos:
        item = found.get(video.youtube_id or "")
        if item is None:
            continue
        video.status = item.get("status", {}).get("uploadStatus", video.status)
        video.processing_status = item.get("processingDetails", {}).get("processingStatus")
        video.updated_at = utcnow()
        session.add(video)
    session.commit()
    return videos


def create_playlist(
    session: Session, settings: Settings, user: User, title: str, description: str, privacy: str
) -> YoutubePlaylist:
    credentials = youtube_credentials(settings.resolved_database_url, settings, user.id)
    with YouTube(settings, credentials) as youtube:
        created = youtube.create_playlist(title, description, privacy)
    playlist = YoutubePlaylist(
        user_id=user.id, youtube_id=created["id"], title=title, privacy=privacy
    )
    session.add(playlist)
    session.commit()
    return playlist


def _publish(
    database_url: str, settings: Settings, job_id: uuid.UUID, options: UploadOptions
) -> None:
    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.project_id is not None
        project = session.get(Project, job.project_id)
        video = session.exec(select(YoutubeVideo).where(YoutubeVideo.job_id == job_id)).one()
        if project is None:
            raise NotFound("the project of this job was deleted")
        request = PublishRequest.model_validate(job.input)
        outputs: dict[str, Any] = dict(project.outputs)
        language = str(project.spec.get("language") or "en")
        stages = dict(job.stages)
        user_id = job.user_id
    credentials = youtube_credentials(database_url, settings, user_id)
    storage = open_storage(settings)
    with (
        tempfile.TemporaryDirectory(prefix="publish-") as tmp,
        YouTube(settings, credentials, options) as youtube,
    ):

        def fetch(name: str) -> Path:
            return storage.download(outputs[name]["key"], Path(tmp) / name)

        def with_output(name: str | None, use: Callable[[Path], Any]) -> Callable[[], Any] | None:
            """`use` on the project's output `name`; None (skip) when there is no such output."""
            if name is None or name not in outputs:
                return None
            return lambda: use(fetch(name))

        youtube_id = video.youtube_id
        if youtube_id is None:
            _set_stage(database_url, job_id, "upload", StageStatus.running)
            resource = youtube.upload_video(
                fetch(FILM),
                request.metadata(contains_synthetic_media=bool(video.metadata_.get(SYNTHETIC))),
                on_progress=partial(_record_upload, database_url, job_id, video.id),
                resume_uri=video.upload_session_url,
            )
            youtube_id = str(resource["id"])
            _uploaded(database_url, video.id, resource)
        _set_stage(database_url, job_id, "upload", StageStatus.succeeded)

        def pending(stage: str) -> bool:
            return stages[stage]["status"] not in DONE

        if request.thumbnail and pending("thumbnail"):
            set_thumbnail = partial(youtube.set_thumbnail, youtube_id)
            _optional_stage(
                database_url, job_id, "thumbnail", with_output(request.thumbnail, set_thumbnail)
            )
        if request.captions and pending("captions"):
            captions = next((name for name in CAPTION_FILES if name in outputs), None)
            insert = partial(youtube.insert_caption, youtube_id, language=language, name="")
            _optional_stage(database_url, job_id, "captions", with_output(captions, insert))
        if request.playlist_id and pending("playlist"):
            add = partial(youtube.add_to_playlist, request.playlist_id, youtube_id)
            _optional_stage(database_url, job_id, "playlist", add)
    _change(database_url, job_id, partial(_succeed, youtube_id))


def _optional_stage(
    database_url: str, job_id: uuid.UUID, stage: str, action: Callable[[], Any] | None
) -> None:
    """A stage after the upload: skipped without its input (`action` None), a warning when
    YouTube refuses it (the video is published either way)."""
    if action is None:
        _set_stage(database_url, job_id, stage, StageStatus.skipped)
        return
    _set_stage(database_url, job_id, stage, StageStatus.running, 0)
    try:
        action()
    except YoutubeRefused as refused:
        _change(database_url, job_id, partial(_warn, stage, refused.detail))
        return
    _set_stage(database_url, job_id, stage, StageStatus.succeeded)


def _claim(database_url: str, job_id: uuid.UUID) -> bool:
    """queued -> running, once: a second runner of the same job finds it taken."""
    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        if job is None or job.type != JOB_TYPE or job.status != JobStatus.queued:
            return False
        retry_at = job.output.get("retry_at")
        if retry_at and datetime.fromisoformat(retry_at) > utcnow():
            return False
        try:
            transition(session, job, JobStatus.running)
        except IllegalTransition:
            return False
        job.attempts += 1
        job.output = {k: v for k, v in job.output.items() if k not in ("retry_at", "retry_reason")}
        job.error = None
        session.add(job)
        return True


def _change(database_url: str, job_id: uuid.UUID, change: Callable[[Session, Job], None]) -> None:
    """Applies `change` to the job while it runs; a job someone else ended meanwhile (a cancel)
    is left as it is."""
    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        if job is not None and job.status == JobStatus.running:
            change(session, job)


def _set_stage(
    database_url: str,
    job_id: uuid.UUID,
    stage: str,
    status: StageStatus,
    progress: float | None = None,
) -> None:
    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        set_stage(session, job, stage, status, progress, weights=STAGE_WEIGHTS)


def _record_upload(
    database_url: str, job_id: uuid.UUID, video_id: uuid.UUID, sent: UploadProgress
) -> None:
    """The session and acknowledged bytes on the video row, the percentage on the job: one
    transaction, so a crash never leaves them disagreeing."""
    with session_scope(database_url) as session:
        video = session.get(YoutubeVideo, video_id)
        job = session.get(Job, job_id)
        assert video is not None and job is not None
        video.upload_session_url = sent.session_uri
        video.bytes_sent = sent.bytes_sent
        video.status = "uploading"
        video.updated_at = utcnow()
        session.add(video)
        progress = 100 * sent.bytes_sent / max(sent.total, 1)
        set_stage(session, job, "upload", StageStatus.running, progress, weights=STAGE_WEIGHTS)


def _uploaded(database_url: str, video_id: uuid.UUID, resource: dict[str, Any]) -> None:
    with session_scope(database_url) as session:
        video = session.get(YoutubeVideo, video_id)
        assert video is not None
        video.youtube_id = str(resource["id"])
        video.status = resource.get("status", {}).get("uploadStatus", "uploaded")
        video.processing_status = resource.get("processingDetails", {}).get("processingStatus")
        video.upload_session_url = None
        video.updated_at = utcnow()
        session.add(video)


def _running_stage(job: Job) -> str | None:
    return next(
        (name for name, s in job.stages.items() if s["status"] == StageStatus.running), None
    )


def _wait(later: RetryLater, session: Session, job: Job) -> None:
    """Back to the queue until `later.retry_at`, the running stage waiting."""
    stage = _running_stage(job)
    if stage is not None:
        set_stage(session, job, stage, StageStatus.waiting, weights=STAGE_WEIGHTS)
    transition(session, job, JobStatus.queued)
    job.output = {
        **job.output,
        "retry_at": later.retry_at.isoformat(),
        "retry_reason": later.detail,
    }
    session.add(job)


def _fail(reason: str, session: Session, job: Job) -> None:
    stage = _running_stage(job)
    if stage is not None:
        set_stage(session, job, stage, StageStatus.failed, weights=STAGE_WEIGHTS)
    transition(session, job, JobStatus.failed, error=reason)


def _warn(stage: str, detail: str, session: Session, job: Job) -> None:
    """A stage after the upload that YouTube refused: failed, and a warning on the job."""
    set_stage(session, job, stage, StageStatus.failed, weights=STAGE_WEIGHTS)
    job.warnings = [*job.warnings, f"{stage}: {detail}"]
    session.add(job)


def _succeed(youtube_id: str, session: Session, job: Job) -> None:
    transition(session, job, JobStatus.succeeded)
    job.output = {
        **job.output,
        "youtube_id": youtube_id,
        "url": f"https://www.youtube.com/watch?v={youtube_id}",
    }
    session.add(job)
