"""Character sheets in the spec: one voice, reference and seed per character, in every scene."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cluster.settings import Settings
from pipeline.errors import SpecInvalid
from pipeline.planning.planner import PlanStyle, plan_story
from pipeline.render.dag import RenderInputs, ScenePlan, video_request
from pipeline.render.spec import FilmSpec
from tests.planning.conftest import story
from tests.render.conftest import EXAMPLES, example


def sheet_spec(**scene: Any) -> dict[str, Any]:
    return {
        "title": "Sheets",
        "characters": [
            {
                "name": "Asha",
                "voice": {"gender": "female", "age": "elder"},
                "reference": "assets/astronaut.png",
                "seed": 42,
            }
        ],
        "scenes": [
            {"narration": "Hello.", "prompt": "p", "speaker": "Asha", **scene},
            {"narration": "Goodbye.", "prompt": "q", "cast": ["Asha"]},
            {"narration": "The end.", "prompt": "r"},
        ],
    }


def test_a_speaker_without_a_voice_of_its_own_speaks_with_its_sheets() -> None:
    spec = FilmSpec.model_validate(sheet_spec())
    assert spec.scenes[0].voice == spec.characters[0].voice


def test_scenes_with_a_character_take_its_seed_and_reference() -> None:
    spec = FilmSpec.model_validate(sheet_spec())
    assert [spec.scene_seed(i) for i in range(3)] == [42, 42, spec.seed + 2]
    reference = spec.characters[0].reference
    assert [spec.scene_reference(i) for i in range(3)] == [reference, reference, None]


def test_a_scene_image_of_its_own_wins_over_the_reference() -> None:
    spec = FilmSpec.model_validate(sheet_spec(image="assets/other.png"))
    reference = spec.scene_reference(0)
    assert reference is not None
    assert reference.path == "assets/other.png"


@pytest.mark.parametrize(
    ("scene", "says"),
    [
        ({"speaker": "Ravi"}, "no character sheet named 'Ravi'"),
        ({"cast": ["Ravi"]}, "no character sheet named 'Ravi'"),
        ({"voice": {"gender": "male"}}, "voice differs from 'Asha'"),
    ],
)
def test_sheets_and_scenes_must_agree(scene: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecInvalid, match=says):
        FilmSpec.from_text(json.dumps(sheet_spec(**scene)), "json")


def test_a_spec_without_sheets_hashes_as_before_they_existed() -> None:
    spec = example("story")
    assert spec.content_hash() == (
        "c96c84862dd56251ad902782d8e24499074d0b6c1c21b54683857c364a279fce"
    )


def test_a_planned_character_keeps_its_sheet_in_every_scene() -> None:
    spec = plan_story(story("three_bears")).spec
    for index, scene in enumerate(spec.scenes):
        for name in scene.characters:
            sheet = spec.character(name)
            if scene.speaker == name:
                assert scene.voice == sheet.voice
        first = spec.scene_character(index)
        if first is not None:
            assert spec.scene_seed(index) == first.seed
    baby = [i for i, s in enumerate(spec.scenes) if "Baby Bear" in s.characters]
    assert len(baby) >= 3
    led = [i for i in baby if spec.scenes[i].characters[0] == "Baby Bear"]
    assert {spec.scene_seed(i) for i in led} == {spec.character("Baby Bear").seed}


def test_every_scene_of_a_character_asks_the_engines_for_its_voice_reference_and_seed(
    settings: Settings,
) -> None:
    planned = plan_story(story("three_bears"), PlanStyle(resolution=144, fps=12)).spec
    data = planned.model_dump(mode="json")
    for sheet in data["characters"]:
        sheet["reference"] = "assets/astronaut.png"
    spec = FilmSpec.model_validate(data)
    inputs = RenderInputs(settings=settings, spec=spec, spec_dir=str(EXAMPLES))
    reference = (EXAMPLES / "assets" / "astronaut.png").read_bytes()
    seen: dict[str, set[tuple[int, bytes | None]]] = {}
    for index, scene in enumerate(spec.scenes):
        stage = ScenePlan(
            index=index, frames=12, offset_frames=0, voice_key=None, clip_key="", edges={}
        )
        request = video_request(inputs, stage)
        if not scene.characters:
            assert request.seed == spec.seed + index
            assert request.keyframe_png is None
            continue
        lead = scene.characters[0]
        assert request.seed == spec.character(lead).seed
        assert request.keyframe_png == reference
        seen.setdefault(lead, set()).add((request.seed, request.keyframe_png))
        if scene.speaker is not None:
            assert scene.voice == spec.character(scene.speaker).voice
    assert set(seen) == {"Father Bear", "Mother Bear", "Baby Bear"}
    assert all(len(looks) == 1 for looks in seen.values()), "one seed and one look each"
