"""Text no plan can come from is refused naming the problem; kinds and languages are told apart."""

from __future__ import annotations

import pytest

from pipeline.planning.language import detect_language
from pipeline.planning.planner import plan_story
from pipeline.planning.text import StoryInvalid, decode_story, story_kind
from tests.planning.conftest import story


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("  \n\n\t ", "empty"),
        ("word " * 3001, "3001 words; a plan takes at most 3000"),
        ("\x01\x02\x03\x04\x05\x06 binary \x07\x08\x0e\x0f", "binary"),
        ("INT. ROOM - DAY\n\nJOHN\n\nMARY\n", "no lines to speak"),
    ],
)
def test_unplannable_text_is_refused_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(StoryInvalid, match=says) as refused:
        plan_story(text)
    assert refused.value.status == 422


def test_uploads_must_be_utf8_text() -> None:
    assert decode_story("\ufeffOnce upon a time.".encode()) == "Once upon a time."
    with pytest.raises(StoryInvalid, match="binary"):
        decode_story(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(StoryInvalid, match="not UTF-8"):
        decode_story(b"caf\xe9 au lait")


def test_prose_screenplay_and_idea_are_told_apart() -> None:
    assert story_kind(story("fox_and_crow")) == "prose"
    assert story_kind(story("balcony")) == "screenplay"
    assert story_kind("ALICE: Hello.\nBOB: Hi there.") == "screenplay"
    assert story_kind("A robot learns to paint in a city without colour") == "idea"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("The fox said that he was hungry and the crow was on the branch.", "en"),
        ("Der Fuchs sah den Raben auf dem Ast, und er wollte den Käse.", "de"),
        ("El zorro vio al cuervo en la rama y quería el queso para su cena.", "es"),
        ("एक लोमड़ी ने पेड़ पर एक कौआ देखा।", "hi"),
    ],
)
def test_language_is_detected_from_the_text(text: str, code: str) -> None:
    assert detect_language(text) == code
