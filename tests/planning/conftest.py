"""The public-domain texts the planner is shown with, and what a plan of them must say."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.settings import Settings
from tests.fakes.chat_completions import API_KEY, FakeChat

STORIES = Path(__file__).resolve().parents[2] / "examples" / "stories"

LINES: dict[str, list[tuple[str, str]]] = {
    "fox_and_crow": [
        ("That cheese is for me", "Fox"),
        ("Good day, Mistress Crow", "Fox"),
        ("Queen of Birds", "Fox"),
        ("That will do", "Fox"),
        ("do not trust flatterers", "Fox"),
        ("Caw.", "Crow"),
    ],
    "balcony": [
        ("But soft, what light", "Romeo"),
        ("Ay me!", "Juliet"),
        ("O, speak again, bright angel", "Romeo"),
        ("wherefore art thou Romeo", "Juliet"),
        ("Madam!", "Nurse"),
        ("Anon, good nurse!", "Juliet"),
    ],
    "three_bears": [
        ("Somebody has been eating my porridge!", "Father Bear"),
        ("Somebody has been eating my porridge!", "Mother Bear"),
        ("has eaten it all up", "Baby Bear"),
        ("here she is", "Baby Bear"),
    ],
}
"""Every quoted or cued line of each text (a distinctive part of it), in order, and who says it."""


def story(name: str) -> str:
    return (STORIES / f"{name}.txt").read_text(encoding="utf-8")


@pytest.fixture
def chat() -> Iterator[FakeChat]:
    fake = FakeChat()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def llm_settings(tmp_path: Path, chat: FakeChat) -> Settings:
    """Settings that plan with the fake chat-completions server."""
    return Settings(
        data_dir=tmp_path / "var",
        llm_base_url=chat.url,
        llm_model="qwen2.5-0.5b-instruct",
        llm_api_key=API_KEY,
        _env_file=None,
    )
