"""The font of a text follows its script: Latin keeps Pillow's embedded font, Devanagari and
transliterated Sanskrit take Mukta, shaped by Raqm."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageFont

from models.fonts import AILERON, MUKTA, face_for, load_font, missing

SLOKA = "ॐ सह नाववतु। सह वीर्यं करवावहै॥ ᳚"
IAST = "oṃ saha nāvavatu. saha vīryaṃ karavāvahai. śāntiḥ ṛṣi"


def mask(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    image = font.getmask(text)
    return np.asarray(image, dtype=np.uint8).reshape(image.size[1], image.size[0])


def test_latin_text_keeps_pillows_embedded_font_pixel_for_pixel() -> None:
    text = "The sky is a road home: 3.5 km, “said” she…"
    assert face_for(text) is AILERON
    assert np.array_equal(mask(load_font(text, 24), text), mask(ImageFont.load_default(24), text))


@pytest.mark.parametrize(
    "text", [SLOKA, IAST, f"{SLOKA}\n{IAST}", "सह नाववतु, a Prayer", "Ça va — naïve señor"]
)
def test_text_the_embedded_font_lacks_takes_one_with_a_glyph_for_every_character(
    text: str,
) -> None:
    assert missing(AILERON, text), "the embedded font would draw boxes"
    assert face_for(text) is MUKTA
    assert missing(MUKTA, text) == ""


def test_devanagari_is_shaped_into_conjuncts() -> None:
    """Raqm joins क ् ष into one conjunct narrower than its letters side by side, and moves the
    reph of र्य above; Pillow's basic layout would draw each code point in turn."""
    font = load_font(SLOKA, 40)
    assert font.layout_engine == ImageFont.Layout.RAQM
    letters = sum(font.getlength(c) for c in "क्ष")
    assert font.getlength("क्ष") < 0.8 * letters
    basic = ImageFont.truetype(str(MUKTA.path), 40, layout_engine=ImageFont.Layout.BASIC)
    shaped, unshaped = mask(font, "वीर्यं"), mask(basic, "वीर्यं")
    assert shaped.shape != unshaped.shape or not np.array_equal(shaped, unshaped)
