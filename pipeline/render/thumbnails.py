"""Thumbnail candidates for the film: sharp, colourful frames spread across it, at 1280x720 with
the title in large outlined type.

A frame's score is its sharpness (variance of the Laplacian) times its colourfulness
(Hasler and Suesstrunk, 2003); the film is cut into equal stretches and each stretch gives
its best frame, so the candidates show different moments. A picture a neural image engine drew
for the film (its key art) is composed with the title the same way, leads the candidates and is
chosen.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from models.fonts import load_font
from pipeline.render.compose import wrap_text

THUMBNAIL_SIZE = (1280, 720)
ImageFormat = Literal["JPEG", "PNG"]
_SCORING_WIDTH = 320


@dataclass(frozen=True)
class Thumbnail:
    image: bytes
    format: ImageFormat
    score: float
    frame_index: int | None
    """The frame it was picked from; None for drawn key art."""


@dataclass(frozen=True)
class Thumbnails:
    candidates: list[Thumbnail]
    chosen: Thumbnail


def sharpness(frame: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: high where edges are crisp."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def colourfulness(frame: np.ndarray) -> float:
    """Hasler and Suesstrunk's metric on the opponent axes rg = R - G, yb = (R + G) / 2 - B."""
    red, green, blue = (frame[..., channel].astype(np.float64) for channel in range(3))
    rg, yb = red - green, (red + green) / 2 - blue
    spread = np.hypot(rg.std(), yb.std())
    centre = np.hypot(rg.mean(), yb.mean())
    return float(spread + 0.3 * centre)


def frame_score(frame: np.ndarray) -> float:
    """Sharpness times colourfulness, measured at a fixed width so that sizes compare."""
    height, width = frame.shape[:2]
    size = (_SCORING_WIDTH, max(1, round(height * _SCORING_WIDTH / width)))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return sharpness(small) * colourfulness(small)


def make_thumbnails(
    frames: Sequence[np.ndarray],
    title: str,
    *,
    count: int = 3,
    image_format: ImageFormat = "JPEG",
    key_art: np.ndarray | None = None,
) -> Thumbnails:
    """`count` candidates from `frames` (RGB uint8, in film order), each the best-scoring frame
    of its stretch; `chosen` scores highest. Give frames without burned-in captions (the scenes'
    frames before `compose_clip`): a caption would sit under the title and its sharp text would
    raise the frame's score. `key_art`, a picture drawn for the film, comes first and is
    chosen."""
    if not frames:
        raise ValueError("thumbnails need at least one frame")
    scores = [frame_score(frame) for frame in frames]
    bounds = np.linspace(0, len(frames), min(count, len(frames)) + 1).round().astype(int)
    candidates = []
    for start, end in itertools.pairwise(bounds):
        best = start + int(np.argmax(scores[start:end]))
        picture = with_title(fill_frame(frames[best], THUMBNAIL_SIZE), title)
        image = _encode(picture, image_format)
        candidates.append(Thumbnail(image, image_format, scores[best], best))
    if key_art is not None:
        picture = with_title(fill_frame(key_art, THUMBNAIL_SIZE), title)
        drawn = Thumbnail(_encode(picture, image_format), image_format, frame_score(key_art), None)
        return Thumbnails([drawn, *candidates], drawn)
    return Thumbnails(candidates, max(candidates, key=lambda thumbnail: thumbnail.score))


def fill_frame(frame: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The frame at `size`: resized when the shapes match, otherwise fitted whole over a
    blurred, darkened cover-crop of itself (no black bars for 9:16 and 1:1 films)."""
    picture = Image.fromarray(frame)
    width, height = size
    cover = max(width / picture.width, height / picture.height)
    fit = min(width / picture.width, height / picture.height)
    if abs(cover - fit) < 0.01:
        return picture.resize(size, Image.Resampling.LANCZOS)
    background = picture.resize(
        (round(picture.width * cover), round(picture.height * cover)), Image.Resampling.BILINEAR
    )
    left, top = (background.width - width) // 2, (background.height - height) // 2
    background = background.crop((left, top, left + width, top + height))
    background = background.filter(ImageFilter.GaussianBlur(24)).point(lambda value: value * 0.6)
    foreground = picture.resize(
        (round(picture.width * fit), round(picture.height * fit)), Image.Resampling.LANCZOS
    )
    background.paste(
        foreground, ((width - foreground.width) // 2, (height - foreground.height) // 2)
    )
    return background


def with_title(picture: Image.Image, title: str) -> Image.Image:
    """The title in bold white type with a black outline, centred in the lower part; the font
    shrinks until the title fits in three lines."""
    picture = picture.convert("RGB")
    draw = ImageDraw.Draw(picture)
    size = picture.height // 7
    while True:
        font = load_font(title, size)
        lines = wrap_text(title, font, picture.width * 0.9)
        if len(lines) <= 3 or size <= 24:
            break
        size = round(size * 0.85)
    bold, outline = max(1, size // 30), max(3, size // 12)
    line_height = round(size * 1.2)
    top = picture.height - round(picture.height * 0.08) - len(lines) * line_height
    for colour, stroke in (("black", bold + outline), ("white", bold)):
        for number, line in enumerate(lines):
            draw.text(
                (picture.width // 2, top + number * line_height),
                line,
                font=font,
                fill=colour,
                anchor="ma",
                stroke_width=stroke,
                stroke_fill=colour,
            )
    return picture


def _encode(picture: Image.Image, image_format: ImageFormat) -> bytes:
    buffer = io.BytesIO()
    options = {"quality": 90, "optimize": True} if image_format == "JPEG" else {}
    picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()
