"""The CPU planner on three public-domain texts: who speaks, how long, how it is shot."""

from __future__ import annotations

import pytest

from models.base import AgeBand, Gender
from pipeline.planning.casting import words_per_second
from pipeline.planning.planner import PlanStyle, plan_story
from pipeline.render.spec import FilmSpec
from tests.planning.conftest import LINES, story

TEXTS = sorted(LINES)


@pytest.mark.parametrize("name", TEXTS)
def test_every_line_is_spoken_by_its_character_in_its_voice(name: str) -> None:
    spec = plan_story(story(name)).spec
    lines = LINES[name]
    current = -1  # the expected line being spoken; a long one may run over several scenes
    for scene in spec.scenes:
        text = scene.narration or ""
        if scene.speaker is None:
            assert not any(line in text for line, _ in lines), f"narrator speaks {text!r}"
            continue
        if current + 1 < len(lines) and lines[current + 1][0] in text:
            current += 1
        line, speaker = lines[current]
        assert scene.speaker == speaker, (line, text, scene.speaker)
        assert scene.voice == spec.character(speaker).voice
    assert current == len(lines) - 1, "every line was spoken"


@pytest.mark.parametrize("name", TEXTS)
def test_narration_has_its_own_voice_and_characters_each_another(name: str) -> None:
    spec = plan_story(story(name)).spec
    narrated = {str(s.voice) for s in spec.scenes if s.speaker is None and s.narration}
    voices = [str(sheet.voice) for sheet in spec.characters]
    assert len(narrated) == 1
    assert len(set(voices)) == len(voices)
    assert narrated.isdisjoint(voices)


def test_the_mother_father_and_child_get_voices_of_their_gender_and_age() -> None:
    spec = plan_story(story("three_bears")).spec
    voices = {sheet.name: (sheet.voice.gender, sheet.voice.age) for sheet in spec.characters}
    assert voices == {
        "Father Bear": (Gender.male, AgeBand.adult),
        "Mother Bear": (Gender.female, AgeBand.adult),
        "Baby Bear": (Gender.male, AgeBand.child),
    }


@pytest.mark.parametrize("name", TEXTS)
@pytest.mark.parametrize("seconds", [5.0, 10.0])
def test_scene_narration_fits_the_target_length(name: str, seconds: float) -> None:
    spec = plan_story(story(name), PlanStyle(scene_seconds=seconds)).spec
    for scene in spec.scenes:
        assert scene.word_count / words_per_second(scene.voice) <= seconds


@pytest.mark.parametrize("name", TEXTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_consecutive_scenes_differ_in_camera_and_transition(name: str, seed: int) -> None:
    spec = plan_story(story(name), PlanStyle(seed=seed)).spec
    for before, after in zip(spec.scenes, spec.scenes[1:], strict=False):
        assert before.camera != after.camera
        assert before.transition != after.transition


def test_the_same_text_and_seed_give_the_same_plan() -> None:
    first = plan_story(story("fox_and_crow"), PlanStyle(seed=5)).spec
    again = plan_story(story("fox_and_crow"), PlanStyle(seed=5)).spec
    other = plan_story(story("fox_and_crow"), PlanStyle(seed=6)).spec
    assert first.content_hash() == again.content_hash()
    assert [s.camera for s in first.scenes] != [s.camera for s in other.scenes]


def test_title_comes_from_a_standalone_first_line_or_the_opening_words() -> None:
    assert plan_story(story("balcony")).spec.title == "Romeo And Juliet: The Balcony"
    assert plan_story(story("fox_and_crow")).spec.title == "The Fox and the Crow"
    untitled = plan_story("The rain fell on the old town all night long. Nobody slept.")
    assert untitled.spec.title == "The rain fell on the old town all"


def test_screenplay_headings_set_the_place_and_parentheticals_are_not_spoken() -> None:
    plan = plan_story(story("balcony"))
    assert plan.kind == "screenplay"
    assert all("capulet orchard, night" in s.prompt for s in plan.spec.scenes if s.prompt)
    assert not any("sighing" in (s.narration or "") for s in plan.spec.scenes)
    assert not any("CUT TO" in (s.narration or "") for s in plan.spec.scenes)


def test_mood_follows_the_words_of_each_scene() -> None:
    text = (
        "The happy children laughed and sang and danced in the sunny meadow all day long.\n\n"
        "Then, suddenly, a storm broke, thunder roared and the frightened children ran home."
    )
    moods = [scene.mood.value for scene in plan_story(text).spec.scenes]
    assert moods == ["joyful", "dramatic"]


def test_the_language_of_voices_and_captions_follows_the_text() -> None:
    text = (
        "Il était une fois un petit renard qui vivait dans la forêt. Il aimait le fromage et "
        "il ne pensait qu'à cela. Un jour, il vit un corbeau sur une branche."
    )
    spec = plan_story(text).spec
    assert spec.language == "fr"
    assert {scene.voice.language for scene in spec.scenes} == {"fr"}


def test_a_one_line_idea_becomes_a_film_of_the_target_length() -> None:
    plan = plan_story("A lighthouse keeper befriends a whale", PlanStyle(target_duration_s=30))
    assert plan.kind == "idea"
    spec = plan.spec
    assert spec.scenes[0].narration == "A lighthouse keeper befriends a whale"
    assert sum(scene.duration_s or 0 for scene in spec.scenes) == pytest.approx(30, abs=0.1)


def test_a_plan_is_an_ordinary_spec_that_reads_back_from_yaml() -> None:
    import yaml

    spec = plan_story(story("three_bears")).spec
    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    assert FilmSpec.from_text(text, "yaml") == spec
