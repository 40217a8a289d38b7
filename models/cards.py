"""Generated keyframe cards: the CPU stand-in for a text-to-image model.

A card is a gradient sky, soft orbs, optional stars and layered hills in the mood's palette, with
the title and a caption on top. The shapes are drawn from a hash of the prompt and the seed, so
equal requests give equal pixels and different prompts give visibly different cards. The fonts
are Pillow's embedded one and one a Python package ships (`models.fonts`, chosen by the text's
script), so nothing depends on the fonts of the machine.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from models.base import ImageRequest, Mood
from models.fonts import load_font

RGB = tuple[int, int, int]

TEXT_WIDTH = 0.74
"""Share of the card's width that text may use; the rest is margin that camera moves may crop."""


@dataclass(frozen=True)
class Palette:
    sky_top: RGB
    sky_bottom: RGB
    accents: tuple[RGB, ...]
    ground: RGB
    text: RGB
    outline: RGB
    uppercase: bool
    stars: bool


PALETTES: dict[Mood, Palette] = {
    Mood.calm: Palette(
        (120, 178, 204), (236, 222, 196), ((255, 250, 230), (170, 214, 222), (250, 214, 170)),
        (62, 104, 112), (255, 255, 250), (34, 62, 72), False, False,
    ),
    Mood.joyful: Palette(
        (255, 196, 70), (255, 120, 150), ((255, 246, 140), (120, 220, 255), (255, 255, 255)),
        (70, 150, 80), (255, 255, 255), (150, 40, 70), False, False,
    ),
    Mood.mysterious: Palette(
        (22, 16, 58), (60, 30, 90), ((120, 90, 220), (60, 200, 200), (200, 160, 255)),
        (10, 8, 26), (226, 220, 255), (8, 4, 24), False, True,
    ),
    Mood.dramatic: Palette(
        (120, 14, 20), (16, 8, 10), ((255, 120, 40), (200, 40, 30), (255, 200, 120)),
        (8, 4, 4), (255, 240, 230), (30, 0, 0), True, False,
    ),
    Mood.sad: Palette(
        (92, 104, 122), (40, 44, 54), ((150, 160, 180), (110, 120, 140), (190, 196, 206)),
        (30, 32, 40), (226, 230, 236), (20, 22, 30), False, False,
    ),
    Mood.epic: Palette(
        (232, 164, 60), (20, 30, 70), ((255, 220, 130), (255, 170, 60), (255, 240, 200)),
        (14, 18, 40), (255, 244, 214), (40, 24, 0), True, True,
    ),
    Mood.devotional: Palette(
        (255, 170, 50), (120, 20, 40), ((255, 220, 90), (255, 140, 40), (255, 250, 200)),
        (70, 10, 24), (255, 248, 225), (90, 20, 0), False, False,
    ),
}  # fmt: skip


class CardImageEngine:
    """Keyframe cards at any size; `caption` adds a smaller line of text under the title."""

    name: ClassVar[str] = "cards"
    version: ClassVar[str] = "1"
    licence: ClassVar[str] = "MIT"

    def keyframe(self, request: ImageRequest, caption: str | None = None) -> np.ndarray:
        palette = PALETTES[request.mood]
        rng = np.random.default_rng(_seed_of(request.prompt, request.seed))
        size = (request.width, request.height)
        card = Image.fromarray(_gradient(size, palette, rng))
        card = _draw_orbs(card, palette, rng)
        if palette.stars:
            _draw_stars(card, rng)
        _draw_hills(card, palette, rng)
        _draw_text(card, palette, request.title, caption)
        return np.asarray(card, dtype=np.uint8).copy()


def _seed_of(prompt: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _gradient(size: tuple[int, int], palette: Palette, rng: np.random.Generator) -> np.ndarray:
    """A tilted two-colour gradient, darkened towards the corners.

    It is smooth, so it is computed on a grid eight times coarser and scaled up.
    """
    width, height = size
    angle = float(rng.uniform(-0.45, 0.45))
    x = np.linspace(-0.5, 0.5, max(2, width // 8), dtype=np.float32)[None, :]
    y = np.linspace(-0.5, 0.5, max(2, height // 8), dtype=np.float32)[:, None]
    t = np.clip(0.5 + x * (math.sin(angle) * width / height) + y * math.cos(angle), 0.0, 1.0)
    top = np.array(palette.sky_top, np.float32)
    bottom = np.array(palette.sky_bottom, np.float32)
    sky = (top + t[..., None] * (bottom - top)) * (1.0 - 0.35 * (x**2 + y**2))[..., None]
    return cv2.resize(sky.astype(np.uint8), size, interpolation=cv2.INTER_LINEAR)


def _draw_orbs(card: Image.Image, palette: Palette, rng: np.random.Generator) -> Image.Image:
    """Soft glowing discs in the accent colours: suns, moons, bokeh.

    The discs are drawn opaque on a copy of the card and blended through a blurred mask, so their
    soft edges fade into the sky rather than into black.
    """
    width, height = card.size
    short = min(width, height)
    colours = card.copy()
    mask = Image.new("L", card.size, 0)
    colour_draw, mask_draw = ImageDraw.Draw(colours), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(3, 8))):
        cx, cy = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.7) * height
        radius = rng.uniform(0.04, 0.22) * short
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        colour_draw.ellipse(box, palette.accents[int(rng.integers(len(palette.accents)))])
        mask_draw.ellipse(box, int(rng.integers(70, 170)))
    blur = ImageFilter.GaussianBlur(short / 70)
    return Image.composite(colours.filter(blur), card, mask.filter(blur))


def _draw_stars(card: Image.Image, rng: np.random.Generator) -> None:
    width, height = card.size
    draw = ImageDraw.Draw(card)
    dot = max(1.0, min(width, height) / 500)
    for _ in range(int(rng.integers(80, 200))):
        x, y = rng.uniform(0, width), rng.uniform(0, 0.6 * height)
        radius = dot * rng.uniform(0.5, 1.6)
        shade = int(rng.integers(170, 256))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), (shade, shade, 255))


def _draw_hills(card: Image.Image, palette: Palette, rng: np.random.Generator) -> None:
    """Two to four ridges, each a sum of sines, fading from the sky colour into the ground."""
    width, height = card.size
    draw = ImageDraw.Draw(card)
    xs = np.linspace(0, width, 96)
    layers = int(rng.integers(2, 5))
    for layer in range(layers):
        depth = (layer + 1) / layers
        base = height * (0.62 + 0.28 * depth)
        ridge = np.full_like(xs, base)
        for _ in range(3):
            frequency = rng.uniform(0.5, 3.0) / width
            ridge -= (
                rng.uniform(0.02, 0.09)
                * height
                * np.sin(2 * np.pi * frequency * xs + rng.uniform(0, 2 * np.pi))
            )
        colour = _mix(palette.sky_bottom, palette.ground, 0.35 + 0.65 * depth)
        outline = [(0.0, float(height)), *zip(xs.tolist(), ridge.tolist(), strict=True)]
        draw.polygon([*outline, (float(width), float(height))], fill=colour)


def _draw_text(card: Image.Image, palette: Palette, title: str | None, caption: str | None) -> None:
    """Title and caption, centred as one block, with an outline and a soft drop shadow."""
    width, height = card.size
    short = min(width, height)
    max_width = TEXT_WIDTH * width
    blocks: list[tuple[list[str], ImageFont.FreeTypeFont]] = []
    if title:
        text = title.upper() if palette.uppercase else title
        blocks.append(_fit(text, 0.1 * short, max_width, max_lines=3))
    if caption:
        blocks.append(_fit(caption, 0.05 * short, max_width, max_lines=4))
    if not blocks:
        return
    lines = [(line, font) for block_lines, font in blocks for line in block_lines]
    advances = [font.size * 1.22 for _, font in lines]
    if title and caption:
        advances[len(blocks[0][0]) - 1] += blocks[0][1].size * 0.3
    top = (height - sum(advances)) / 2
    origins = [
        ((width - font.getlength(line)) / 2, top + sum(advances[:index]))
        for index, (line, font) in enumerate(lines)
    ]
    shadow = Image.new("L", card.size, 0)
    shadow_draw, draw = ImageDraw.Draw(shadow), ImageDraw.Draw(card)
    offset = short / 160
    for (line, font), (x, y) in zip(lines, origins, strict=True):
        stroke = max(1, round(font.size / 16))
        shadow_draw.text((x + offset, y + offset), line, 200, font, stroke_width=stroke)
    card.paste((0, 0, 0), (0, 0), shadow.filter(ImageFilter.GaussianBlur(short / 150)))
    for (line, font), (x, y) in zip(lines, origins, strict=True):
        stroke = max(1, round(font.size / 16))
        draw.text(
            (x, y), line, palette.text, font, stroke_width=stroke, stroke_fill=palette.outline
        )


def _fit(
    text: str, size: float, max_width: float, max_lines: int
) -> tuple[list[str], ImageFont.FreeTypeFont]:
    """Wrap `text` to `max_width`, shrinking the font (to half) before truncating with '...'."""
    for scale in (1.0, 0.85, 0.7, 0.6, 0.5):
        font = load_font(text, max(10, round(size * scale)))
        lines = _wrap(text, font, max_width)
        if len(lines) <= max_lines:
            return lines, font
    kept = lines[:max_lines]
    kept[-1] = _truncate(kept[-1], font, max_width)
    return kept, font


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Greedy word wrap; a word longer than a line is cut at the character that overflows."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while font.getlength(current) > max_width and len(current) > 1:
            cut = next(
                i for i in range(1, len(current) + 1) if font.getlength(current[:i]) > max_width
            )
            lines.append(current[: max(1, cut - 1)])
            current = current[max(1, cut - 1) :]
    if current:
        lines.append(current)
    return lines


def _truncate(line: str, font: ImageFont.FreeTypeFont, max_width: float) -> str:
    while line and font.getlength(line + "...") > max_width:
        line = line[:-1]
    return line.rstrip() + "..."


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )
