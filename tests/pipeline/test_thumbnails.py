"""Thumbnails: three distinct 1280x720 candidates from across the film, the best one chosen."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipeline.render.thumbnails import colourfulness, frame_score, make_thumbnails, sharpness


def mosaic(height: int, width: int, seed: int) -> np.ndarray:
    """Sharp, colourful: random 20-pixel tiles of colour."""
    blocks = np.random.default_rng(seed).integers(0, 256, (height // 20, width // 20, 3))
    return np.kron(blocks, np.ones((20, 20, 1))).astype(np.uint8)


def film_frames(height: int = 360, width: int = 640) -> list[np.ndarray]:
    """Thirty frames: dark fades, flat grey frames, dull low-contrast frames and mosaics."""
    frames = []
    for index in range(30):
        kind = index % 5
        if kind == 0:
            frame = np.full((height, width, 3), 3, np.uint8)
        elif kind == 1:
            frame = np.full((height, width, 3), 128, np.uint8)
        else:
            frame = mosaic(height, width, seed=index)
            if kind == 2:
                frame = (frame // 4 + 100).astype(np.uint8)
        frames.append(frame)
    return frames


def decode(image: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))


def test_candidates_are_three_distinct_1280x720_images() -> None:
    thumbnails = make_thumbnails(film_frames(), "The Long Way Home")
    assert len(thumbnails.candidates) == 3
    pictures = [decode(candidate.image) for candidate in thumbnails.candidates]
    assert all(picture.shape == (720, 1280, 3) for picture in pictures)
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(pictures[i].astype(int) - pictures[j]).mean() > 10


def test_candidates_are_spread_across_the_film_and_skip_flat_frames() -> None:
    frames = film_frames()
    thumbnails = make_thumbnails(frames, "Title")
    indices = [candidate.frame_index for candidate in thumbnails.candidates]
    assert [index // 10 for index in indices] == [0, 1, 2]
    assert all(index % 5 in (3, 4) for index in indices)


def test_the_chosen_thumbnail_has_the_highest_score() -> None:
    thumbnails = make_thumbnails(film_frames(), "Title", image_format="PNG")
    assert thumbnails.chosen.score == max(candidate.score for candidate in thumbnails.candidates)
    assert thumbnails.chosen.image.startswith(b"\x89PNG")
    assert thumbnails.chosen in thumbnails.candidates


def test_score_prefers_sharp_colourful_frames() -> None:
    sharp, flat = film_frames()[3], film_frames()[1]
    assert sharpness(sharp) > sharpness(flat) == 0
    assert colourfulness(sharp) > colourfulness(flat) == 0
    assert frame_score(sharp) > frame_score(film_frames()[2])


def test_the_title_is_drawn_in_white_and_black_in_the_lower_part() -> None:
    frames = [np.full((720, 1280, 3), (40, 90, 160), np.uint8)] * 3
    picture = decode(make_thumbnails(frames, "Hello", image_format="PNG").chosen.image)
    lower, upper = picture[400:], picture[:300]
    assert (lower.min(axis=2) > 240).sum() > 2000
    assert (lower.max(axis=2) < 15).sum() > 2000
    assert np.abs(upper.astype(int) - (40, 90, 160)).max() <= 2


def test_vertical_films_fill_the_frame_with_a_blurred_cover() -> None:
    frames = [mosaic(height=1280, width=720, seed=1)] * 3
    picture = decode(make_thumbnails(frames, "Tall", image_format="PNG").chosen.image)
    assert picture.shape == (720, 1280, 3)
    left_edge = picture[:300, :100]
    assert left_edge.mean() > 20
    assert left_edge.std() < picture[:300, 540:740].std()
