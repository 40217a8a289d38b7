"""Single-engine jobs: one shot of video, narration, a lip-synced character, or music.

Each request becomes a one-scene spec fragment
(`pipeline.jobs.submission.submit_engine_job`), so it is priced, cached and settled like a film."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from typing import Annotated, Any, Literal

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from cluster.settings import Settings
from db.models import User
from deployments.api.deps import CurrentUser, SettingsDep
from deployments.api.idempotency import Idempotency, IdempotencyDep
from deployments.api.problems import problem_responses
from deployments.api.routers.jobs import SUBMIT_RESPONSES, submitted
from models.base import CameraMove, Mood, MusicStyle, Voice
from pipeline.fields import Passage, StrictInput, words_at_most
from pipeline.jobs import submission as jobs
from pipeline.render.spec import MAX_SCENE_WORDS

router = APIRouter(prefix="/api/ai", tags=["ai"], responses=problem_responses(401, 422, 429))

Text = Annotated[
    Passage,
    Field(min_length=1, description=f"What is said ({MAX_SCENE_WORDS} words at most)."),
    words_at_most(MAX_SCENE_WORDS),
]


class EngineRequest(StrictInput, ABC):
    model_config = ConfigDict(extra="forbid")

    quality: Literal["animatic", "final"] = "animatic"
    dry_run: bool = Field(default=False, description="Only estimate the cost.")
    title: str | None = Field(default=None, min_length=1, max_length=200)

    @abstractmethod
    def scene(self) -> dict[str, Any]:
        """The fields of the one scene."""

    def payload(self) -> dict[str, Any]:
        extra = {"title": self.title} if self.title else {}
        return {**self.scene(), "quality": self.quality, **extra}


class VideoGenerate(EngineRequest):
    prompt: str = Field(min_length=1, max_length=2000)
    image: uuid.UUID | None = Field(default=None, description="An uploaded image to start from.")
    camera: CameraMove = CameraMove.static
    mood: Mood = Mood.calm
    duration_s: float = Field(default=5, ge=0.5, le=60)
    caption: str | None = Field(default=None, max_length=240)

    def scene(self) -> dict[str, Any]:
        return self.model_dump(
            mode="json",
            include={"prompt", "image", "camera", "mood", "duration_s", "caption"},
            exclude_none=True,
        )


class AudioGenerate(EngineRequest):
    text: Text
    voice: Voice = Field(default_factory=Voice)

    def scene(self) -> dict[str, Any]:
        return {"narration": self.text, "voice": self.voice.model_dump(), "prompt": "narration"}


class LipSyncGenerate(EngineRequest):
    character: uuid.UUID = Field(description="An uploaded image of the face that speaks.")
    text: Text
    voice: Voice = Field(default_factory=Voice)

    def scene(self) -> dict[str, Any]:
        """The character's image animated by an image-to-video engine (the prompt describes the
        shot, not the job), then lip-synced to the narration."""
        character = str(self.character)
        return {
            "image": character,
            "character": character,
            "prompt": "the person in the picture speaks to the camera, face in view",
            "narration": self.text,
            "voice": self.voice.model_dump(),
        }


class MusicGenerate(EngineRequest):
    mood: Mood = Mood.calm
    tempo_bpm: int = Field(default=90, ge=40, le=200)
    style: MusicStyle = MusicStyle.score
    duration_s: float = Field(default=30, ge=1, le=60)

    def scene(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "mood": self.mood.value,
            "music": {
                "mood": self.mood.value,
                "tempo_bpm": self.tempo_bpm,
                "style": self.style.value,
            },
        }


def _submit(
    settings: Settings,
    user: User,
    kind: Literal["video", "audio", "lipsync", "music"],
    body: EngineRequest,
    idempotency: Idempotency,
) -> JSONResponse:
    return idempotency.run(
        lambda: submitted(
            jobs.submit_engine_job(
                settings,
                user,
                kind,
                body.payload(),
                dry_run=body.dry_run,
                idempotency_key=idempotency.key,
            )
        )
    )


_ROUTE: dict[str, Any] = {
    "status_code": status.HTTP_202_ACCEPTED,
    "response_model": None,
    "responses": SUBMIT_RESPONSES,
}


@router.post("/video-generate", summary="A shot from a prompt and/or an image", **_ROUTE)
def video_generate(
    body: VideoGenerate, user: CurrentUser, settings: SettingsDep, idempotency: IdempotencyDep
) -> JSONResponse:
    return _submit(settings, user, "video", body, idempotency)


@router.post("/audio-generate", summary="Narration in a voice", **_ROUTE)
def audio_generate(
    body: AudioGenerate, user: CurrentUser, settings: SettingsDep, idempotency: IdempotencyDep
) -> JSONResponse:
    return _submit(settings, user, "audio", body, idempotency)


@router.post("/lip-sync", summary="A character's face speaking a text", **_ROUTE)
def lip_sync(
    body: LipSyncGenerate, user: CurrentUser, settings: SettingsDep, idempotency: IdempotencyDep
) -> JSONResponse:
    return _submit(settings, user, "lipsync", body, idempotency)


@router.post("/music-generate", summary="A music bed", **_ROUTE)
def music_generate(
    body: MusicGenerate, user: CurrentUser, settings: SettingsDep, idempotency: IdempotencyDep
) -> JSONResponse:
    return _submit(settings, user, "music", body, idempotency)
