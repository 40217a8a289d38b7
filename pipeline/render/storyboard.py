"""The storyboard: a contact sheet with one tile per scene (a frame, the scene's number and
length, the start of its narration) under the film's title, as a PNG."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.fonts import load_font
from pipeline.render.compose import wrap_text

TILE_WIDTH = 320
_MARGIN = 16
_TEXT_LINES = 3
_BACKGROUND = (24, 24, 28)
_SHEET_ASPECT = 16 / 9


@dataclass(frozen=True)
class StoryboardTile:
    frame: np.ndarray
    duration_s: float
    narration: str | None = None


def make_storyboard(title: str, tiles: Sequence[StoryboardTile]) -> bytes:
    """The sheet, as PNG bytes. The grid's columns are chosen so that the sheet is as close to
    16:9 as the scene count allows; tiles keep their frames' aspect ratio."""
    if not tiles:
        raise ValueError("a storyboard needs at least one scene")
    frame_height, frame_width = tiles[0].frame.shape[:2]
    scale = TILE_WIDTH / max(frame_width, frame_height)
    image_size = (round(frame_width * scale), round(frame_height * scale))
    image_height = image_size[1]
    line_height = 20
    tile_height = image_height + 8 + 24 + _TEXT_LINES * line_height
    columns = _columns(len(tiles), TILE_WIDTH + _MARGIN, tile_height + _MARGIN)
    rows = math.ceil(len(tiles) / columns)
    header = 34 + 2 * _MARGIN
    sheet = Image.new(
        "RGB",
        (
            columns * (TILE_WIDTH + _MARGIN) + _MARGIN,
            header + rows * (tile_height + _MARGIN),
        ),
        _BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    title_font = _fitting_font(title, sheet.width - 2 * _MARGIN, largest=34)
    draw.text((_MARGIN, _MARGIN), title, font=title_font, fill="white")
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        left = _MARGIN + column * (TILE_WIDTH + _MARGIN)
        top = header + row * (tile_height + _MARGIN)
        picture = Image.fromarray(tile.frame).resize(image_size, Image.Resampling.LANCZOS)
        image_left = left + (TILE_WIDTH - image_size[0]) // 2
        sheet.paste(picture, (image_left, top))
        heading = f"Scene {index + 1} · {tile.duration_s:.1f} s"
        heading_font = load_font(heading, 18)
        _badge(draw, (image_left + 6, top + 6), str(index + 1), heading_font)
        text_top = top + image_height + 8
        draw.text(
            (left, text_top),
            heading,
            font=heading_font,
            fill=(255, 214, 102),
        )
        body_font = load_font(tile.narration or "", 15)
        for line_number, line in enumerate(_excerpt(tile.narration, body_font)):
            draw.text(
                (left, text_top + 24 + line_number * line_height),
                line,
                font=body_font,
                fill=(220, 220, 220),
            )
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def _columns(count: int, tile_width: int, tile_height: int) -> int:
    """The column count whose grid comes closest to a 16:9 sheet."""

    def distance(columns: int) -> float:
        rows = math.ceil(count / columns)
        return abs(math.log(columns * tile_width / (rows * tile_height) / _SHEET_ASPECT))

    return min(range(1, count + 1), key=distance)


def _fitting_font(text: str, width: int, *, largest: int) -> ImageFont.FreeTypeFont:
    """The largest font, down to 14 px, in which `text` fits on one line of `width`."""
    size = largest
    font = load_font(text, size)
    while size > 14 and font.getlength(text) > width:
        size -= 2
        font = load_font(text, size)
    return font


def _excerpt(narration: str | None, font: ImageFont.FreeTypeFont) -> list[str]:
    """The narration's first lines, with an ellipsis when it goes on."""
    if not narration:
        return ["(no narration)"]
    lines = wrap_text(narration, font, TILE_WIDTH)
    if len(lines) <= _TEXT_LINES:
        return lines
    shown = lines[:_TEXT_LINES]
    last = shown[-1]
    while last and font.getlength(last + " …") > TILE_WIDTH:
        last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
    shown[-1] = last + " …"
    return shown


def _badge(
    draw: ImageDraw.ImageDraw, corner: tuple[int, int], text: str, font: ImageFont.FreeTypeFont
) -> None:
    left, top = corner
    box = draw.textbbox((left + 8, top + 4), text, font=font)
    draw.rounded_rectangle(
        (left, top, box[2] + 8, box[3] + 6), radius=6, fill=(0, 0, 0), outline=(255, 214, 102)
    )
    draw.text((left + 8, top + 4), text, font=font, fill="white")
