"""The storyboard sheet: one tile per scene under the title, in a grid sized to the count."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.render.storyboard import StoryboardTile, make_storyboard

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200)]


def tiles(count: int, height: int = 360, width: int = 640) -> list[StoryboardTile]:
    return [
        StoryboardTile(
            frame=np.full((height, width, 3), COLOURS[index % len(COLOURS)], np.uint8),
            duration_s=4.0 + index,
            narration="The rocket rose over the desert at dawn. " * (index + 1),
        )
        for index in range(count)
    ]


def sheet(title: str, scene_tiles: list[StoryboardTile]) -> np.ndarray:
    png = make_storyboard(title, scene_tiles)
    assert png.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def pixels_of(picture: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((np.abs(picture.astype(int) - colour).max(axis=2) <= 2).sum())


def test_every_scene_has_a_tile_showing_its_frame() -> None:
    picture = sheet("The Long Way Home", tiles(5))
    for colour in COLOURS:
        assert pixels_of(picture, colour) > 0.8 * 320 * 180


def test_the_title_and_texts_are_drawn() -> None:
    picture = sheet("The Long Way Home", tiles(1))
    header = picture[:60]
    assert (header.min(axis=2) > 200).sum() > 300
    below_tile = picture[60 + 180 :]
    assert (below_tile.min(axis=2) > 150).sum() > 500


@pytest.mark.parametrize(("count", "columns"), [(1, 1), (3, 2), (6, 3), (12, 5), (24, 6)])
def test_the_grid_grows_with_the_scene_count(count: int, columns: int) -> None:
    picture = sheet("Title", tiles(count, 36, 64))
    assert picture.shape[1] == 16 + columns * (320 + 16)


def test_vertical_frames_keep_their_shape() -> None:
    picture = sheet("Tall", tiles(2, height=640, width=360))
    assert pixels_of(picture, COLOURS[0]) == pytest.approx(180 * 320, rel=0.05)
