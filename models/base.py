"""The engine interfaces: one per capability, shared by the CPU engines and the neural ones.

Requests are pydantic models (they cross process boundaries through Serve handles); results are
small dataclasses around numpy arrays, which Ray moves through its object store without copying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, Field


class Gender(StrEnum):
    female = "female"
    male = "male"


class AgeBand(StrEnum):
    child = "child"
    adult = "adult"
    elder = "elder"


class Mood(StrEnum):
    calm = "calm"
    joyful = "joyful"
    mysterious = "mysterious"
    dramatic = "dramatic"
    sad = "sad"
    epic = "epic"
    devotional = "devotional"


class CameraMove(StrEnum):
    static = "static"
    zoom_in = "zoom_in"
    zoom_out = "zoom_out"
    pan_left = "pan_left"
    pan_right = "pan_right"
    dolly_in = "dolly_in"


class MusicStyle(StrEnum):
    score = "score"
    sloka = "sloka"
    none = "none"


class Voice(BaseModel):
    gender: Gender = Gender.female
    age: AgeBand = AgeBand.adult
    language: str = Field(default="en", max_length=35, pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")


class VoiceRequest(BaseModel):
    text: str
    voice: Voice
    seed: int = 0


class VideoRequest(BaseModel):
    """One scene's shot. `keyframe_png` is an uploaded or generated image the shot starts from."""

    prompt: str
    title: str | None = None
    caption: str | None = None
    mood: Mood = Mood.calm
    camera: CameraMove = CameraMove.static
    width: int
    height: int
    fps: int
    duration_s: float
    keyframe_png: bytes | None = None
    seed: int = 0

    def keyframe_request(self, width: int, height: int) -> ImageRequest:
        """What an image engine is asked for this shot's keyframe when it has none, drawn at
        width x height (a video engine may want a margin or its own size)."""
        return ImageRequest(
            prompt=self.prompt,
            title=self.title,
            mood=self.mood,
            width=width,
            height=height,
            seed=self.seed,
        )


class ImageRequest(BaseModel):
    prompt: str
    title: str | None = None
    mood: Mood = Mood.calm
    width: int
    height: int
    seed: int = 0


class MusicRequest(BaseModel):
    mood: Mood = Mood.calm
    tempo_bpm: int = 90
    style: MusicStyle = MusicStyle.score
    duration_s: float
    seed: int = 0


@dataclass
class Audio:
    """Mono float32 samples in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class Frames:
    """uint8 RGB frames, shape (T, H, W, 3)."""

    pixels: np.ndarray
    fps: int

    @property
    def duration_s(self) -> float:
        return len(self) / self.fps

    def __len__(self) -> int:
        return len(self.pixels)

    def frame(self, index: int) -> np.ndarray:
        """One frame; frames drawn on demand draw only this one."""
        return self.pixels[index]


class StillFrames(Frames):
    """One picture held for `count` frames, stored once: `pixels` is a read-only view."""

    def __init__(self, image: np.ndarray, count: int, fps: int) -> None:
        self.image, self.count, self.fps = image, count, fps

    @property
    def pixels(self) -> np.ndarray:  # type: ignore[override]
        return np.broadcast_to(self.image, (self.count, *self.image.shape))

    def __len__(self) -> int:
        return self.count

    def frame(self, index: int) -> np.ndarray:
        return self.image

    def __repr__(self) -> str:
        return f"StillFrames({self.count} frames at {self.fps} fps)"


@dataclass
class SoundFrames(Frames):
    """Frames with the sound the video model made with them (LTX-2 generates both), as long as
    the frames; the render keeps it as an ambience bed or drops it (STUDIO_VIDEO_SOUND)."""

    sound: Audio = field(kw_only=True)


@dataclass(frozen=True)
class ProviderCost:
    """What a hosted engine's provider charged for one clip: `amount` in `unit` (Runway
    credits, US dollars) for `seconds` of video of `model`."""

    provider: str
    model: str
    seconds: float
    amount: float
    unit: str


@dataclass
class HostedFrames(Frames):
    """Frames a hosted provider made, with what it charged for them (recorded on the job)."""

    cost: ProviderCost = field(kw_only=True)


@dataclass
class LipSyncResult:
    frames: Frames
    warnings: list[str] = field(default_factory=list)


@dataclass
class MusicResult:
    audio: Audio
    midi: bytes | None = None


@runtime_checkable
class Engine(Protocol):
    """What every engine declares: a name, a version that enters the stage-cache key, and the
    licence of the model it runs (licence-aware routing refuses engines a plan may not use)."""

    name: ClassVar[str]
    version: ClassVar[str]
    licence: ClassVar[str]


class VideoEngine(Engine, Protocol):
    def generate(self, request: VideoRequest) -> Frames: ...


class ImageEngine(Engine, Protocol):
    def keyframe(self, request: ImageRequest) -> np.ndarray: ...


class VoiceEngine(Engine, Protocol):
    def synthesize(self, request: VoiceRequest) -> Audio: ...


class LipSyncEngine(Engine, Protocol):
    def sync(self, frames: Frames, audio: Audio) -> LipSyncResult: ...


class MusicEngine(Engine, Protocol):
    def compose(self, request: MusicRequest) -> MusicResult: ...
