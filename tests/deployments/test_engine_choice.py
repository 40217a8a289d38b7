"""Engine choice by licence: per capability, the first engine of the shipped GPU config's order
that the plan allows and that is deployed and healthy; picture scenes go to an engine that takes
an image; a plan that allows none is refused naming the capability and the engines considered.
Serve's state is given as a function, so these run without a cluster."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest
from pydantic import SecretStr

from cluster.settings import Settings
from models.registry import CPU_DEFAULTS, ENGINES, LICENCES, Capability, EngineInfo, Use
from pipeline.errors import EngineUnavailable, LicenceRefused
from pipeline.render.engine_choice import (
    EngineState,
    StateOf,
    choose_engines,
    engine_record,
    final_candidates,
)
from pipeline.render.spec import FilmSpec
from tests.deployments.conftest import GPU_CONFIG

COMMERCIAL = [name for name, terms in LICENCES.items() if terms.use is not Use.non_commercial]
NON_COMMERCIAL_ONLY = [name for name, terms in LICENCES.items() if terms.use is Use.non_commercial]
CPU = ["MIT", "BSD-3-Clause", "GPL-3.0-or-later"]

TEXT_ONLY = FilmSpec.model_validate(
    {"title": "t", "scenes": [{"prompt": "a lake", "duration_s": 1}]}
)
WITH_IMAGE = FilmSpec.model_validate(
    {
        "title": "t",
        "scenes": [
            {"prompt": "a lake", "duration_s": 1},
            {"image": "assets/astronaut.png", "duration_s": 1},
        ],
    }
)


def settings(**fields: Any) -> Settings:
    return Settings(serve_config=GPU_CONFIG, _env_file=None, **fields)


CPU_DEPLOYMENTS = {f"{capability}-{name}" for capability, name in CPU_DEFAULTS.items()}


def deployed(*names: str, failing: Collection[str] = (), cpu: bool = True) -> StateOf:
    """Serve's state with the named deployments running (or failing to start), and the CPU
    engines unless `cpu` is false."""
    serving = set(names) | (CPU_DEPLOYMENTS if cpu else set())

    def state(info: EngineInfo) -> EngineState:
        if info.deployment in failing:
            return EngineState.failing
        return EngineState.serving if info.deployment in serving else EngineState.absent

    return state


EVERYTHING = deployed(*(info.deployment for info in ENGINES))


def test_a_commercial_plan_gets_the_first_commercial_engines_of_the_config() -> None:
    choice = choose_engines(settings(), "final", "creator", COMMERCIAL + CPU, TEXT_ONLY, EVERYTHING)
    assert (choice.video, choice.voice, choice.lipsync) == ("wan", "kokoro", "musetalk")


def test_a_plan_allowing_only_non_commercial_engines_gets_those() -> None:
    allowed = NON_COMMERCIAL_ONLY + CPU
    choice = choose_engines(settings(), "final", "free", allowed, WITH_IMAGE, EVERYTHING)
    assert (choice.video, choice.voice, choice.lipsync) == ("ltx", "coqui-xtts", "musetalk")
    # MuseTalk is MIT, as the CPU engines are; without it the plan gets Wav2Lip.
    no_musetalk = deployed(*(i.deployment for i in ENGINES if i.name != "musetalk"))
    choice = choose_engines(settings(), "final", "free", allowed, WITH_IMAGE, no_musetalk)
    assert choice.lipsync == "wav2lip"


def test_an_engine_not_deployed_or_failing_falls_to_the_next() -> None:
    state = deployed("video-ltx-2", failing={"video-wan"})
    choice = choose_engines(settings(), "final", "creator", COMMERCIAL + CPU, TEXT_ONLY, state)
    assert (choice.video, choice.voice) == ("ltx-2", "espeak")


def test_a_failing_engine_is_taken_when_no_allowed_engine_serves() -> None:
    """Its render then fails with the engine's reason, as a pinned engine's does."""
    others = CPU_DEPLOYMENTS - {"video-animatic"}
    state = deployed(*others, failing={"video-wan"}, cpu=False)
    choice = choose_engines(settings(), "final", "creator", COMMERCIAL, TEXT_ONLY, state)
    assert choice.video == "wan"


def test_a_scene_with_an_image_goes_to_an_engine_that_takes_one() -> None:
    state = deployed("video-cogvideox-2b", "video-svd")
    choice = choose_engines(settings(), "final", "free", COMMERCIAL + NON_COMMERCIAL_ONLY + CPU,
                            WITH_IMAGE, state)  # fmt: skip
    assert (choice.video, choice.image_video) == ("cogvideox-2b", "svd")
    assert choice.scene_video(WITH_IMAGE.scenes[1]).takes_image


def test_every_video_engine_a_picture_scene_may_get_takes_an_image() -> None:
    """Whatever is deployed, a scene's image never goes to an engine that would drop it."""
    for info in (i for i in ENGINES if i.capability is Capability.video):
        state = deployed(info.deployment)
        choice = choose_engines(settings(), "final", "free", list(LICENCES), WITH_IMAGE, state)
        assert choice.scene_video(WITH_IMAGE.scenes[1]).takes_image, info.name


def test_a_plan_allowing_none_of_the_engines_is_refused_naming_them() -> None:
    with pytest.raises(LicenceRefused) as refused:
        choose_engines(settings(), "final", "nothing", [], TEXT_ONLY, EVERYTHING)
    assert refused.value.extra["capability"] == "video"
    assert refused.value.extra["engines"][:3] == ["wan", "ltx-2", "cogvideox-2b"]
    assert "no video engine the nothing plan may use: considered wan (apache-2.0" in str(
        refused.value
    )


def test_allowed_engines_none_of_them_deployed_is_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="no video engine the creator plan may use is"):
        choose_engines(settings(), "final", "creator", COMMERCIAL + CPU, TEXT_ONLY,
                       deployed(cpu=False))  # fmt: skip


def test_a_pinned_engine_is_the_only_candidate() -> None:
    assert final_candidates(settings(video_engine="ltx"))[Capability.video] == ["ltx"]


def test_hosted_voices_are_candidates_only_with_their_key() -> None:
    assert "openai" not in final_candidates(settings())[Capability.voice]
    keyed = settings(openai_api_key=SecretStr("k"))
    assert final_candidates(keyed)[Capability.voice][:2] == ["kokoro", "openai"]


def test_an_animatic_uses_the_cpu_engines_whatever_the_plan() -> None:
    choice = choose_engines(settings(), "animatic", "nothing", [], WITH_IMAGE, EVERYTHING)
    assert (choice.video, choice.voice, choice.image_video) == ("animatic", "espeak", None)


def test_the_record_names_each_stage_engine_and_licence() -> None:
    state = deployed("video-cogvideox-2b", "video-ltx-2", "voice-kokoro")
    choice = choose_engines(settings(), "final", "creator", COMMERCIAL + CPU, WITH_IMAGE, state)
    record = engine_record(choice.model_dump())
    assert record["video"] == {"engine": "ltx-2", "licence": "ltx-2-community",
                               "use": "revenue-cap", "revenue_cap_usd": 10_000_000}  # fmt: skip
    assert record["voice"]["engine"] == "kokoro" and record["voice"]["use"] == "commercial"
    assert "video_from_image" not in record, "LTX-2 animates the image scene itself"


def test_the_record_says_what_makes_the_thumbnails() -> None:
    """The image engine the plan may use draws them; with the CPU cards (here: the only image
    engine a non-commercial plan may use) they are frames, under the video engine's terms; a
    render whose engine failed records the fallback."""
    state = deployed("image-diffusers")
    choice = choose_engines(settings(), "final", "creator", COMMERCIAL + CPU, TEXT_ONLY, state)
    assert engine_record(choice.model_dump())["thumbnails"] == {
        "engine": "diffusers", "licence": "creativeml-openrail-m", "use": "commercial",
        "revenue_cap_usd": None,
    }  # fmt: skip
    frames = {"engine": "frames", "licence": "MIT", "use": "commercial", "revenue_cap_usd": None}
    failed = engine_record(choice.model_dump(), "frames")["thumbnails"]
    assert failed == {**frames, "fallback_from": "diffusers"}
    allowed = NON_COMMERCIAL_ONLY + CPU
    free = choose_engines(settings(), "final", "free", allowed, TEXT_ONLY, state)
    assert (free.image, engine_record(free.model_dump())["thumbnails"]) == ("card", frames)


def test_picture_scenes_without_a_configured_engine_that_takes_an_image_are_refused() -> None:
    pinned = settings(video_engine="cogvideox-2b")
    with pytest.raises(EngineUnavailable, match="animates a scene's image: considered cogvideox"):
        choose_engines(pinned, "final", "creator", COMMERCIAL, WITH_IMAGE, EVERYTHING)


WITH_DRIVING_VIDEO = FilmSpec.model_validate(
    {
        "title": "t",
        "scenes": [
            {"prompt": "a lake", "duration_s": 1, "narration": "Hello.",
             "character": "assets/astronaut.png"},
            {"prompt": "a lake", "duration_s": 1, "narration": "Hello.",
             "character": "assets/astronaut.png", "driving_video": "assets/nod.mp4"},
        ],
    }
)  # fmt: skip


def test_a_scene_with_a_driving_video_goes_to_a_character_animation_engine() -> None:
    """The other talking scenes keep the lip-sync engine; the record names both."""
    choice = choose_engines(settings(), "final", "free", NON_COMMERCIAL_ONLY + CPU,
                            WITH_DRIVING_VIDEO, EVERYTHING)  # fmt: skip
    assert (choice.lipsync, choice.motion_lipsync) == ("musetalk", "fomm")
    scenes = WITH_DRIVING_VIDEO.scenes
    assert [choice.scene_lipsync(scene).name for scene in scenes] == ["musetalk", "fomm"]
    record = engine_record(choice.model_dump())
    assert record["lipsync_from_driving_video"] == {
        "engine": "fomm", "licence": "fomm-noncommercial", "use": "non-commercial",
        "revenue_cap_usd": None,
    }  # fmt: skip


def test_a_driving_video_the_plan_may_not_animate_is_refused_at_submit() -> None:
    with pytest.raises(LicenceRefused) as refused:
        choose_engines(settings(), "final", "creator", COMMERCIAL + CPU, WITH_DRIVING_VIDEO,
                       EVERYTHING)  # fmt: skip
    assert refused.value.extra == {"capability": "lipsync", "engines": ["musetalk", "wav2lip",
                                   "fomm", "mouth"]}  # fmt: skip
    assert "moves a character by a driving video: considered musetalk (MIT" in str(refused.value)
    not_deployed = deployed(*(i.deployment for i in ENGINES if i.name != "fomm"))
    with pytest.raises(EngineUnavailable, match="no lipsync engine the free plan may use is"):
        choose_engines(settings(), "final", "free", NON_COMMERCIAL_ONLY + CPU,
                       WITH_DRIVING_VIDEO, not_deployed)  # fmt: skip
