"""The render watchdog: how long an engine call may go without an answer.

A stage's progress is its engine calls' answers (a voice stage makes one call per sentence), so
each call is watched from the moment it is sent (`engine_calls.call_engine`): one that gives no
answer within its limit is cancelled and sent again once, and a second silence fails the render
with StageTimedOut naming the stage and scene; the job runner then fails the job and releases
its credits, as for any failed render.

A call's limit is max(floor, factor * its estimated seconds) (`Settings.watchdog_floor_s`,
`watchdog_factor`). The estimate is the work asked (megapixel-frames from the resolution, frame
rate and duration; characters of speech; seconds of music) at the throughput of the engine's kind:
neural engines (`EngineInfo.gpu`) do far less per second than the procedural CPU ones. The floor
covers what the estimate cannot see: a replica starting and loading its model, and other renders'
requests queued ahead at the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.settings import Settings
from models.registry import EngineInfo


@dataclass(frozen=True)
class Work:
    """What one engine call is asked to make, in the units its time grows with."""

    megapixel_frames: float = 0.0
    characters: int = 0
    audio_s: float = 0.0

    @classmethod
    def frames(cls, width: int, height: int, count: float) -> Work:
        return cls(megapixel_frames=width * height * count / 1e6)


THROUGHPUT: dict[bool, Work] = {
    False: Work(megapixel_frames=2.0, characters=200, audio_s=20.0),
    True: Work(megapixel_frames=0.2, characters=20, audio_s=2.0),
}
"""Work done per second by an engine, by `EngineInfo.gpu`: the CPU engines draw, speak and score
procedurally; the neural ones' figures are a slow GPU's (a 720p five-second shot: ~9 min)."""


def estimate_s(info: EngineInfo, work: Work) -> float:
    """The seconds `work` should take on the engine."""
    rate = THROUGHPUT[info.gpu]
    return (
        work.megapixel_frames / rate.megapixel_frames
        + work.characters / rate.characters
        + work.audio_s / rate.audio_s
    )


@dataclass(frozen=True)
class Watch:
    """The stage an engine call belongs to, for the error that names it, and the call's limit."""

    stage: str
    scene: int | None
    """The scene's index; None for a stage of the whole film (the music)."""
    limit_s: float

    @property
    def name(self) -> str:
        where = "" if self.scene is None else f" of scene {self.scene + 1}"
        return f"the {self.stage} stage{where}"


def watch(settings: Settings, info: EngineInfo, stage: str, scene: int | None, work: Work) -> Watch:
    """The watch of one call of `info` doing `work` for `stage` (see the module)."""
    limit = max(settings.watchdog_floor_s, settings.watchdog_factor * estimate_s(info, work))
    return Watch(stage, scene, limit)
