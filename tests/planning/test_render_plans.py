"""Plans render: the three texts and an idea planned through the chat-completions fake become
films that pass the same decode checks as the examples (tiny frames, to keep it quick)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.settings import Settings
from pipeline.planning.casting import words_per_second
from pipeline.planning.llm import plan_text
from pipeline.planning.planner import PlanStyle, plan_story
from pipeline.render.assemble import inspect_film
from pipeline.render.dag import LEAD_S, TAIL_S, RenderInputs, render_film
from pipeline.render.spec import FilmSpec
from tests.fakes.chat_completions import FakeChat
from tests.planning.conftest import LINES, story

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("cpu_engines")]

TINY = PlanStyle(resolution=144, fps=12, scene_seconds=8)
IDEA = "Three bears come home to find that someone has eaten their porridge"
SHORT_STORY = """The Lost Kite

"My kite!" cried Mia, as the wind carried it over the hill.

"I will find it," said Ravi, and he ran after it until the sun went down."""


def render(settings: Settings, spec: FilmSpec, out: Path, **kw: object) -> dict[str, bytes]:
    inputs = RenderInputs(settings=settings, spec=spec, **kw)
    _, files = render_film(inputs, lambda stage, status, progress: None)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def assert_plays(spec: FilmSpec, film: Path) -> None:
    """The decode checks of the examples' films."""
    info = inspect_film(film)
    assert (info.width, info.height) == spec.frame_size
    assert (info.video_codec, info.audio_codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
    assert info.faststart
    assert abs(info.video_duration_s - info.audio_duration_s) < 0.1


@pytest.mark.parametrize("name", sorted(LINES))
def test_a_planned_text_renders_to_a_correct_film(
    settings: Settings, tmp_path: Path, name: str
) -> None:
    spec = plan_story(story(name), TINY).spec
    files = render(settings, spec, tmp_path)
    assert_plays(spec, tmp_path / "film.mp4")
    assert {"subtitles.srt", "thumbnail.jpg", "storyboard.png"} <= set(files)


def test_spoken_scenes_last_about_their_target(settings: Settings, tmp_path: Path) -> None:
    """Measured on the voice itself: the plan's estimate at the voice's rate holds when spoken."""
    spec = plan_story(story("fox_and_crow"), TINY).spec
    files = render(settings, spec, tmp_path, stop_at="voice")
    plans = json.loads(files["plan.json"])
    for plan, scene in zip(plans, spec.scenes, strict=True):
        spoken = plan["frames"] / spec.fps - LEAD_S - TAIL_S
        estimate = scene.word_count / words_per_second(scene.voice)
        assert estimate <= TINY.scene_seconds
        assert spoken <= TINY.scene_seconds, (scene.narration, spoken)


def test_an_idea_becomes_a_film_through_the_model_with_a_repair_and_a_fallback(
    llm_settings: Settings, chat: FakeChat, tmp_path: Path
) -> None:
    settings = llm_settings
    # 1. idea -> story -> plan, the model's first plan invalid (repaired on the second answer)
    model_plan = plan_story(story("three_bears"), TINY).spec.model_dump(mode="json")
    broken = {**model_plan, "scenes": [{**model_plan["scenes"][0], "camera": "crane"}]}
    chat.reply(story("three_bears"), json.dumps(broken), json.dumps(model_plan))
    repaired = plan_text(settings, IDEA, TINY)
    assert (repaired.planner, repaired.warnings) == (
        "llm",
        ["the model's first answer was repaired"],
    )
    assert "scenes.0.camera" in chat.requests[2].body["messages"][-1]["content"]

    # 2. the same again, the model wrong twice: the CPU plans the story the model wrote
    chat.reply(SHORT_STORY, "{not json", json.dumps({"title": "x"}))
    fallback = plan_text(settings, IDEA, TINY)
    assert fallback.planner == "cpu"
    assert fallback.warnings[0].startswith("planned on CPU: the model's plan was invalid twice")
    assert [s.speaker for s in fallback.spec.scenes if s.speaker] == ["Mia", "Ravi"]

    # 3. both plans render
    for number, plan in enumerate((repaired, fallback)):
        render(settings, plan.spec, tmp_path / str(number))
        assert_plays(plan.spec, tmp_path / str(number) / "film.mp4")
