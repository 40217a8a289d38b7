"""The card engine: a mood's palette, prompt-seeded shapes, and readable text at any size."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.base import ImageRequest, Mood
from models.cards import TEXT_WIDTH, CardImageEngine

ENGINE = CardImageEngine()


def card(caption: str | None = None, **fields: object) -> np.ndarray:
    request = {"prompt": "a lamp on the river", "width": 320, "height": 180, **fields}
    return ENGINE.keyframe(ImageRequest.model_validate(request), caption=caption)


def text_mask(with_text: np.ndarray, without: np.ndarray) -> np.ndarray:
    return np.abs(with_text.astype(int) - without.astype(int)).max(axis=2) > 40


@pytest.mark.parametrize(
    ("width", "height"),
    [(1920, 1080), (1080, 1920), (1080, 1080), (1280, 720), (720, 1280), (256, 144), (97, 61)],
)
def test_every_aspect_and_resolution_gives_its_shape(width: int, height: int) -> None:
    image = card(title="The Little Lamp", width=width, height=height)
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8


def test_equal_requests_give_equal_pixels() -> None:
    assert np.array_equal(card(title="A", seed=3), card(title="A", seed=3))


def test_different_prompts_and_seeds_look_different() -> None:
    base = card(prompt="a lamp on the river").astype(int)
    for other in (card(prompt="a tiger in the forest"), card(seed=1)):
        assert np.abs(base - other).mean() > 8


def test_moods_give_different_palettes() -> None:
    means = {mood: card(mood=mood).reshape(-1, 3).mean(axis=0) for mood in Mood}
    for first, second in itertools.combinations(Mood, 2):
        assert np.abs(means[first] - means[second]).max() > 15, (first, second)


def test_title_is_larger_than_caption() -> None:
    plain = card()
    title_rows = text_mask(card(title="Lamp"), plain).any(axis=1).sum()
    caption_rows = text_mask(card(caption="Lamp"), plain).any(axis=1).sum()
    assert title_rows > 1.6 * caption_rows
    assert title_rows > 0.08 * plain.shape[0]


def test_text_is_centred_and_wrapped_inside_the_margins() -> None:
    width = 640
    long = "a title long enough that it must wrap over several lines " * 3
    plain = card(width=width, height=360)
    mask = text_mask(card(title=long, caption=long, width=width, height=360), plain)
    columns = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    slack = 0.03 * width
    assert columns.min() >= (1 - TEXT_WIDTH) / 2 * width - slack
    assert columns.max() <= (1 + TEXT_WIDTH) / 2 * width + slack
    assert rows.max() - rows.min() > 0.3 * 360
    assert abs((rows.min() + rows.max()) / 2 - 180) < 0.1 * 360


def test_text_has_a_dark_outline_for_contrast() -> None:
    plain = card(mood=Mood.calm)
    titled = card(mood=Mood.calm, title="LAMP")
    changed = titled[text_mask(titled, plain)].astype(int).sum(axis=1)
    assert (changed > 600).any()
    assert (changed < 250).any()
