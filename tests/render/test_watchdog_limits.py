"""The render watchdog's limits: the floor, then longer for more pixels, frames and text, and for
a neural engine than for a CPU one."""

from __future__ import annotations

from pathlib import Path

from cluster.settings import Settings
from models.registry import Capability, EngineInfo, engine_info
from pipeline.render.watchdog import Work, watch

ANIMATIC = engine_info(Capability.video, "animatic")
WAN = engine_info(Capability.video, "wan")


def test_a_small_call_gets_the_floor_and_its_stage_is_named(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, watchdog_floor_s=30, _env_file=None)
    shot = watch(settings, ANIMATIC, "video", 2, Work.frames(256, 144, 12))
    assert shot.limit_s == 30
    assert shot.name == "the video stage of scene 3"
    assert watch(settings, ANIMATIC, "music", None, Work(audio_s=1)).name == "the music stage"


def test_the_limit_grows_with_resolution_duration_and_a_neural_engine(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, watchdog_floor_s=1, watchdog_factor=3, _env_file=None)

    def limit(engine: EngineInfo, width: int, height: int, frames: int) -> float:
        return watch(settings, engine, "video", 0, Work.frames(width, height, frames)).limit_s

    small = limit(ANIMATIC, 1280, 720, 120)
    assert limit(ANIMATIC, 1920, 1080, 120) > small
    assert limit(ANIMATIC, 1280, 720, 240) > small
    assert limit(WAN, 1280, 720, 120) > 5 * small
    voice = engine_info(Capability.voice, "espeak")
    short = watch(settings, voice, "voice", 0, Work(characters=200)).limit_s
    assert watch(settings, voice, "voice", 0, Work(characters=2000)).limit_s > short > 1
