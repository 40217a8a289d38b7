"""A scene's narration: spoken sentence by sentence, so that every sentence's time in the audio
is known to the sample; captions and subtitles are timed from these segments."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.base import Audio
from pipeline.render.audio import SAMPLE_RATE, resample, trim_silence

_TERMINATOR = re.compile(r"[.!?\u2026\u0964\u0965]+[\"'\u201d\u2019)\]]*(?=\s)")
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "mt", "jr", "sr", "vs", "etc"})


@dataclass(frozen=True)
class Segment:
    """A stretch of text and when it is heard, in seconds."""

    text: str
    start_s: float
    end_s: float

    def shifted(self, offset_s: float) -> Segment:
        return Segment(self.text, self.start_s + offset_s, self.end_s + offset_s)


@dataclass
class Narration:
    audio: Audio
    segments: list[Segment]

    @property
    def duration_s(self) -> float:
        return self.audio.duration_s


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, with whitespace collapsed. Ends at `.`, `!`, `?`, `…` and the
    Devanagari dandas `।` `॥`, and at blank lines; not after common abbreviations (`Dr.`),
    initials (`J. R.`) or inside numbers (`3.5`)."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        start = 0
        for match in _TERMINATOR.finditer(flat):
            if _is_abbreviation(flat[start : match.start()], match.group()):
                continue
            sentences.append(flat[start : match.end()].strip())
            start = match.end()
        sentences.append(flat[start:].strip())
    return [sentence for sentence in sentences if sentence]


def with_transliteration(segments: Sequence[Segment], transliteration: str) -> list[Segment]:
    """Each sentence's segment with the transliteration's sentence of that number as a second
    line (the spec checks that the two have as many sentences)."""
    lines = split_sentences(transliteration)
    return [
        Segment(f"{segment.text}\n{line}", segment.start_s, segment.end_s)
        for segment, line in zip(segments, lines, strict=True)
    ]


def narrate(
    synthesize: Callable[[str], Audio],
    text: str,
    *,
    pause_s: float = 0.25,
    rate: int = SAMPLE_RATE,
) -> Narration:
    """Speak `text` one sentence at a time, each trimmed of the engine's own leading and
    trailing silence and followed by `pause_s` of silence (none after the last)."""
    return narrate_lines([(synthesize, text)], pause_s=pause_s, rate=rate)


def narrate_lines(
    lines: Sequence[tuple[Callable[[str], Audio], str]],
    *,
    pause_s: float = 0.25,
    turn_pause_s: float = 0.5,
    rate: int = SAMPLE_RATE,
) -> Narration:
    """Speak each line's text with its own `synthesize` (a dialogue's speakers), one after
    another, as `narrate` speaks one text; a line starts `turn_pause_s` after the one before.
    The segments are the sentences of all lines, in order."""
    pieces: list[np.ndarray] = []
    segments = []
    position = 0
    for number, (synthesize, text) in enumerate(lines):
        for nth, sentence in enumerate(split_sentences(text)):
            spoken = trim_silence(resample(synthesize(sentence), rate)).samples.astype(np.float32)
            if pieces:
                gap = turn_pause_s if number and nth == 0 else pause_s
                pieces.append(np.zeros(round(gap * rate), np.float32))
                position += len(pieces[-1])
            segments.append(Segment(sentence, position / rate, (position + len(spoken)) / rate))
            pieces.append(spoken)
            position += len(spoken)
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return Narration(Audio(samples, rate), segments)


def _is_abbreviation(before: str, terminator: str) -> bool:
    if terminator != ".":
        return False
    words = before.split()
    last = words[-1] if words else ""
    initial = len(last) == 1 and last.isalpha() and last != "I"
    return last.lower() in _ABBREVIATIONS or initial or bool(_DOTTED.fullmatch(last))
