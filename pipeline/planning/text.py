"""Reading the text a user plans from: checking it, telling its kind, cutting it into sentences.

A story arrives as prose (paragraphs), a screenplay (scene headings, `NAME:` or upper-case cues,
parentheticals) or a one-line idea. Whatever cannot be planned is refused here, before any work
or charge, with `StoryInvalid` naming the problem.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from cluster.errors import StudioError
from pipeline.render.spec import MAX_FILM_WORDS

MAX_STORY_WORDS = MAX_FILM_WORDS
IDEA_MAX_WORDS = 40

StoryKind = Literal["prose", "screenplay", "idea"]

HEADING = re.compile(r"^\s*(INT\.|EXT\.|INT/EXT\.|I/E\.|SCENE\b|ACT\b)", re.IGNORECASE)
COLON_CUE = re.compile(r"^\s*([A-Z][A-Z0-9 .'\-]{0,38}[A-Z0-9.])\s*(\([^)]*\))?\s*:\s*(\S.*)$")
BARE_CUE = re.compile(r"^\s*([A-Z][A-Z0-9 .'\-]{0,38}[A-Z0-9.])\s*(\([^)]*\))?\s*$")
PARENTHETICAL = re.compile(r"\([^)]*\)")
_SENTENCE_END = re.compile(
    r"(?<=[.!?…])[\"\u201d\u2019')\]]*\s+(?=[\"\u201c\u2018'(\[]?[A-Z0-9\u0900-\u097F])"
)
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Mt.", "Jr.", "Sr.", "vs.", "e.g.", "i.e.")


class StoryInvalid(StudioError):
    """Text that cannot be planned: empty, too long, binary, or with nothing to speak."""

    slug, status, title = "story-invalid", 422, "Story cannot be planned"


def decode_story(data: bytes) -> str:
    """Text from an upload: UTF-8 (with or without a byte-order mark), else refused as binary."""
    if b"\x00" in data:
        raise StoryInvalid("the upload is binary, not text (it holds NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise StoryInvalid(f"the upload is not UTF-8 text: {error.reason}") from error


def check_story(text: str, max_words: int = MAX_STORY_WORDS) -> str:
    """The text with normalised line ends, or `StoryInvalid` for text no plan can come from."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise StoryInvalid("the story is empty")
    controls = sum(
        1
        for char in text
        if unicodedata.category(char) in ("Cc", "Cs", "Co") and char not in "\n\t"
    )
    if controls > max(2, len(text) // 200):
        raise StoryInvalid("the story is binary, not text (it holds control characters)")
    words = len(text.split())
    if words > max_words:
        raise StoryInvalid(
            f"the story has {words} words; a plan takes at most {max_words}",
            words=words,
            max_words=max_words,
        )
    return text


def story_kind(text: str) -> StoryKind:
    """A screenplay has scene headings or several character cues; one short line of a sentence
    or two is an idea."""
    lines = [line for line in text.splitlines() if line.strip()]
    cues = sum(1 for line in lines if is_cue(line))
    headings = sum(1 for line in lines if HEADING.match(line))
    if headings or cues >= 2:
        return "screenplay"
    if len(lines) == 1 and len(text.split()) <= IDEA_MAX_WORDS and len(sentences(text)) <= 2:
        return "idea"
    return "prose"


def is_cue(line: str) -> bool:
    """A character cue: `NAME:` with a line after it, or an upper-case name on its own line."""
    if HEADING.match(line):
        return False
    if COLON_CUE.match(line):
        return True
    match = BARE_CUE.match(line)
    if match is None:
        return False
    return len(match.group(1).split()) <= 3 and not line.rstrip().endswith(".")


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each on one line."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def sentences(paragraph: str) -> list[str]:
    """The paragraph's sentences, cut after `.`, `!`, `?` (and closing quotes) before a capital."""
    protected = paragraph
    for abbreviation in _ABBREVIATIONS:
        protected = protected.replace(abbreviation, abbreviation.replace(".", "\x00"))
    parts = _SENTENCE_END.split(protected)
    return [part.replace("\x00", ".").strip() for part in parts if part.strip()]


def clauses(sentence: str) -> list[str]:
    """A long sentence cut after its commas, semicolons, colons and dashes."""
    return [part.strip() for part in re.split(r"(?<=[,;:—])\s+", sentence) if part.strip()]


def word_count(text: str) -> int:
    return len(text.split())
