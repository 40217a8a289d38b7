"""Publishing to the linked YouTube channel: upload jobs, playlists, the user's videos."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from db.models import JobStatus
from deployments.api.deps import CurrentUser, SessionDep, SettingsDep
from deployments.api.problems import problem_responses
from pipeline.fields import StrictInput
from pipeline.jobs import submission as jobs
from pipeline.publish.publishing import (
    SYNTHETIC,
    Privacy,
    PublishRequest,
    create_playlist,
    sync_videos,
)

router = APIRouter(prefix="/api/youtube", tags=["youtube"], responses=problem_responses(401))

# Routes that call YouTube with the linked channel's tokens: 409 when no channel is linked (or
# Google refused its refresh token: relink), 502 when YouTube refuses the request, 503 when it
# does not answer; its quota (429) is documented app-wide.
CHANNEL_RESPONSES = problem_responses(409, 502, 503)


class UploadRequest(PublishRequest):
    project_id: uuid.UUID


class PublishJob(BaseModel):
    job_id: uuid.UUID
    status: JobStatus


class PlaylistCreate(StrictInput):
    title: str = Field(min_length=1, max_length=150)
    description: str = Field(default="", max_length=5000)
    privacy_status: Privacy = "private"


class PlaylistPublic(BaseModel):
    id: uuid.UUID
    youtube_id: str
    title: str
    privacy: str
    created_at: datetime


class VideoPublic(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID | None
    job_id: uuid.UUID | None
    youtube_id: str | None
    url: str | None
    title: str
    privacy: str
    status: str
    processing_status: str | None
    bytes_sent: int
    contains_synthetic_media: bool = Field(
        description="Whether the upload is labelled as altered or synthetic content on YouTube"
    )
    created_at: datetime


@router.post(
    "/upload", status_code=status.HTTP_202_ACCEPTED, responses=problem_responses(404, 409, 422)
)
def upload(
    body: UploadRequest, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> PublishJob:
    """Starts a publish job for a rendered project; follow it at the jobs API."""
    request = PublishRequest.model_validate(body.model_dump(exclude={"project_id"}))
    job = jobs.submit_publish(settings, session, user, body.project_id, request)
    return PublishJob(job_id=job.id, status=job.status)


@router.post(
    "/playlist",
    status_code=status.HTTP_201_CREATED,
    responses=CHANNEL_RESPONSES | problem_responses(422),
)
def playlist(
    body: PlaylistCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> PlaylistPublic:
    created = create_playlist(
        session, settings, user, body.title, body.description, body.privacy_status
    )
    return PlaylistPublic.model_validate(created, from_attributes=True)


@router.get("/videos", responses=CHANNEL_RESPONSES)
def videos(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> list[VideoPublic]:
    """The user's published (and publishing) videos, with YouTube's processing status."""
    return [
        VideoPublic(
            id=video.id,
            project_id=video.project_id,
            job_id=video.job_id,
            youtube_id=video.youtube_id,
            url=f"https://www.youtube.com/watch?v={video.youtube_id}" if video.youtube_id else None,
            title=video.title,
            privacy=video.privacy,
            status=video.status,
            processing_status=video.processing_status,
            bytes_sent=video.bytes_sent,
            contains_synthetic_media=bool(video.metadata_.get(SYNTHETIC)),
            created_at=video.created_at,
        )
        for video in sync_videos(session, settings, user)
    ]
