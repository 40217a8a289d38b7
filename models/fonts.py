"""The font for a piece of text, chosen by the characters it holds.

Text that the scalable font Pillow embeds (Aileron, basic Latin) can show keeps it, so that its
pictures stay as they were. Text that Aileron cannot show (Devanagari; accented Latin such as é,
ñ and the dotted and macroned letters of transliterated Sanskrit, ā ṃ ḥ ṣ) takes Mukta, an OFL
font shipped by the `fontpkg-mukta` package, which covers Devanagari, its Vedic marks and IAST
in one face, so that a sloka and its transliteration share a font. Text set in Mukta is laid out
by Raqm (HarfBuzz), which forms the conjuncts and places the vowel signs; Pillow's basic layout
would draw the letters one by one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import fontpkg_mukta
from fontTools.ttLib import TTFont
from PIL import ImageFont, features


@dataclass(frozen=True)
class Face:
    """A font file, or Pillow's embedded font where `path` is None."""

    name: str
    path: Path | None


AILERON = Face("Aileron", None)
MUKTA = Face("Mukta", fontpkg_mukta.ROOT / "files" / "Mukta-Regular.ttf")
FACES = (AILERON, MUKTA)
"""In order of preference: a text takes the first face that has a glyph for each character."""


def load_font(text: str, size: int) -> ImageFont.FreeTypeFont:
    """The font for `text` (`face_for`) at `size` pixels."""
    face = face_for(text)
    if face.path is None:
        return _embedded(size)
    if not features.check("raqm"):
        raise RuntimeError(f"Pillow was built without Raqm, which shaping {face.name} text needs")
    return ImageFont.truetype(str(face.path), size, layout_engine=ImageFont.Layout.RAQM)


def face_for(text: str) -> Face:
    """The first face that has every character of `text` (spaces aside); where none has, the one
    missing the fewest."""
    return min(FACES, key=lambda face: len(missing(face, text)))


def missing(face: Face, text: str) -> str:
    """The characters of `text` that `face` has no glyph for (each once, spaces aside)."""
    mapped = _code_points(face)
    return "".join(sorted({c for c in text if not c.isspace() and ord(c) not in mapped}))


@cache
def _code_points(face: Face) -> frozenset[int]:
    source: Path | io.BytesIO
    if face.path is None:
        embedded = _embedded(10).path
        if not isinstance(embedded, io.BytesIO):
            raise RuntimeError("Pillow's embedded font is expected in memory")
        source = io.BytesIO(embedded.getvalue())
    else:
        source = face.path
    with TTFont(source, lazy=True) as font:
        return frozenset(font.getBestCmap())


def _embedded(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("Pillow was built without FreeType, which sized text needs")
    return font
