"""The language a story is written in, from its script and its commonest words.

A stop-word count over the languages the CPU voice speaks well: small, deterministic, and good
enough at story length (a few sentences). The voices and captions of the plan follow it.
"""

from __future__ import annotations

import re

_STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        [
            "the",
            "and",
            "of",
            "to",
            "a",
            "in",
            "was",
            "he",
            "she",
            "it",
            "that",
            "his",
            "her",
            "said",
            "with",
            "for",
            "on",
            "is",
            "you",
            "i",
        ]
    ),
    "fr": frozenset(
        [
            "le",
            "la",
            "les",
            "et",
            "de",
            "des",
            "un",
            "une",
            "est",
            "il",
            "elle",
            "que",
            "qui",
            "dans",
            "pas",
            "pour",
            "sur",
            "au",
            "du",
        ]
    ),
    "de": frozenset(
        [
            "der",
            "die",
            "das",
            "und",
            "ist",
            "ein",
            "eine",
            "nicht",
            "sie",
            "er",
            "zu",
            "den",
            "mit",
            "sich",
            "des",
            "auf",
            "dem",
        ]
    ),
    "es": frozenset(
        [
            "el",
            "la",
            "los",
            "las",
            "y",
            "de",
            "que",
            "en",
            "un",
            "una",
            "es",
            "por",
            "con",
            "no",
            "se",
            "su",
            "para",
            "al",
            "lo",
        ]
    ),
    "it": frozenset(
        [
            "il",
            "lo",
            "la",
            "gli",
            "le",
            "e",
            "di",
            "che",
            "un",
            "una",
            "è",
            "per",
            "non",
            "con",
            "si",
            "del",
            "della",
            "sono",
        ]
    ),
    "pt": frozenset(
        [
            "o",
            "a",
            "os",
            "as",
            "e",
            "de",
            "que",
            "em",
            "um",
            "uma",
            "é",
            "não",
            "com",
            "se",
            "do",
            "da",
            "para",
            "por",
            "ao",
        ]
    ),
    "nl": frozenset(
        [
            "de",
            "het",
            "een",
            "en",
            "van",
            "is",
            "dat",
            "niet",
            "in",
            "op",
            "te",
            "zijn",
            "met",
            "voor",
            "hij",
            "zij",
        ]
    ),
}
_SCRIPTS: tuple[tuple[str, str], ...] = (
    ("hi", r"[\u0900-\u097F]"),
    ("ru", r"[\u0400-\u04FF]"),
    ("ar", r"[\u0600-\u06FF]"),
    ("zh", r"[\u4E00-\u9FFF]"),
    ("ja", r"[\u3040-\u30FF]"),
    ("ko", r"[\uAC00-\uD7AF]"),
    ("el", r"[\u0370-\u03FF]"),
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
SAMPLE_CHARS = 4000


def detect_language(text: str, default: str = "en") -> str:
    """A two-letter code; `default` when the text says too little. The opening 4,000
    characters are enough to tell."""
    text = text[:SAMPLE_CHARS]
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return default
    for code, script in _SCRIPTS:
        if len(re.findall(script, text)) > len(letters) / 3:
            return code
    words = [word.lower() for word in _WORD.findall(text)]
    scores = {code: sum(word in stop for word in words) for code, stop in _STOP_WORDS.items()}
    best = max(scores, key=lambda code: (scores[code], code == default))
    return best if scores[best] >= 2 else default
