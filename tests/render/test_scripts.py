"""Text in Devanagari, rendered for real: the captions of a rendered sloka, its storyboard's
title and a thumbnail's title match references drawn with Pillow directly in the same font,
shaped by Raqm (conjuncts and vowel signs in place), and not the unshaped or boxed text."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from cluster.settings import Settings
from models.fonts import AILERON, MUKTA, missing
from pipeline.render.assemble import frames_at
from pipeline.render.narration import split_sentences
from pipeline.render.thumbnails import with_title
from tests.render.conftest import example
from tests.render.test_render import render, srt_cues

RAQM, BASIC = ImageFont.Layout.RAQM, ImageFont.Layout.BASIC


def drawn(text: str, size: int, layout: ImageFont.Layout, *, stroke: int = 0) -> np.ndarray:
    """`text` in Mukta, white on black, drawn by Pillow directly."""
    return drawn_in(ImageFont.truetype(str(MUKTA.path), size, layout_engine=layout), text, stroke)


def drawn_in(font: ImageFont.FreeTypeFont, text: str, stroke: int = 0) -> np.ndarray:
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    image = Image.new("L", (right - left + 8, bottom - top + 8))
    ImageDraw.Draw(image).text((4 - left, 4 - top), text, 255, font, stroke_width=stroke)
    return np.asarray(image)


def match(picture: np.ndarray, template: np.ndarray) -> float:
    """How well `template` matches `picture` (RGB) at its best place: normalised correlation."""
    grey = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
    return float(cv2.matchTemplate(grey, template, cv2.TM_CCOEFF_NORMED).max())


def best_size(picture: np.ndarray, text: str, sizes: range) -> tuple[int, float]:
    """The font size whose shaped rendering of `text` matches `picture` best, and how well."""
    templates = {size: drawn(text, size, RAQM) for size in sizes}
    scores = {
        size: match(picture, template)
        for size, template in templates.items()
        if all(t <= p for t, p in zip(template.shape, picture.shape, strict=False))
    }
    size = max(scores, key=lambda s: scores[s])
    return size, scores[size]


@pytest.mark.ray
@pytest.mark.usefixtures("cpu_engines")
def test_the_sloka_renders_with_shaped_devanagari_captions(
    settings: Settings, tmp_path: Path
) -> None:
    """The sloka's third scene (Devanagari, with its IAST under it) at 480p: a frame decoded
    while the first sentence is heard carries that sentence in the caption font's size (5% of
    the short side), matching Pillow's shaped rendering and not the unshaped one."""
    sloka = example("sloka")
    scene = sloka.scenes[2].model_dump() | {"transition": "cut"}
    spec = example("sloka", resolution=480, scenes=[scene])
    assert spec.scenes[0].narration is not None and spec.scenes[0].transliteration is not None
    _report, out = render(settings, spec, tmp_path / "sloka")
    (start, end, heard), *_ = srt_cues((out / "subtitles.srt").read_text())
    sentence = split_sentences(spec.scenes[0].narration)[0]
    iast = split_sentences(spec.scenes[0].transliteration)[0]
    assert heard == sentence
    (frame,) = frames_at(out / "film.mp4", [(start + end) / 2])
    size = round(0.05 * 480)
    shaped, unshaped = (match(frame, drawn(sentence, size, layout)) for layout in (RAQM, BASIC))
    assert shaped > 0.95, "the caption is the shaped Devanagari sentence"
    assert unshaped < shaped - 0.15, "and not its letters drawn one by one"
    assert match(frame, drawn(iast, size, RAQM)) > 0.95, "the transliteration is under it"
    storyboard = np.asarray(Image.open(out / "storyboard.png").convert("RGB"))
    assert missing(MUKTA, spec.title) == "" and missing(AILERON, spec.title)
    title_size, score = best_size(storyboard, spec.title, range(14, 36, 2))
    assert score > 0.97
    assert match(storyboard, drawn(spec.title, title_size, BASIC)) < score - 0.1


def test_a_thumbnails_devanagari_title_is_shaped_not_boxed() -> None:
    title = "मा विद्विषावहै"
    picture = with_title(Image.new("RGB", (1280, 720), (90, 110, 140)), title)
    thumbnail = np.asarray(Image.open(io.BytesIO(_jpeg(picture))).convert("RGB"))
    size, stroke = 720 // 7, max(1, (720 // 7) // 30)
    shaped = match(thumbnail, drawn(title, size, RAQM, stroke=stroke))
    assert shaped > 0.9
    assert match(thumbnail, drawn(title, size, BASIC, stroke=stroke)) < shaped - 0.2
    boxes = ImageFont.load_default(size)
    assert isinstance(boxes, ImageFont.FreeTypeFont)
    assert match(thumbnail, drawn_in(boxes, title, stroke)) < shaped - 0.2
    assert missing(MUKTA, title) == "" and missing(AILERON, title)


def _jpeg(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
