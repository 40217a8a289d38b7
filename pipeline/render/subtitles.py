"""Subtitle files (.srt, .vtt) from timed narration segments at film-level times.

A segment too long for one cue (more than `max_lines` lines of `max_chars`) is split into
several cues, its time shared in proportion to their length; times are whole milliseconds, and
split cues meet exactly, with no gap or overlap. A segment of several lines (a sentence and its
transliteration) stays one cue, each of its lines wrapped on its own.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from pipeline.render.narration import Segment

MAX_CHARS = 42
MAX_LINES = 2


def cues(
    segments: Sequence[Segment], *, max_chars: int = MAX_CHARS, max_lines: int = MAX_LINES
) -> list[Segment]:
    """The cues to show: each holds at most `max_lines` lines (joined by newlines)."""
    result = []
    for segment in segments:
        given = segment.text.splitlines()
        lines = [
            wrapped
            for line in given
            for wrapped in textwrap.wrap(line, max_chars, break_on_hyphens=False)
        ]
        step = len(lines) if len(given) > 1 else max_lines
        chunks = ["\n".join(lines[i : i + step]) for i in range(0, len(lines), step)]
        start_ms, end_ms = _ms(segment.start_s), _ms(segment.end_s)
        total = sum(len(chunk) for chunk in chunks)
        done = 0
        for chunk in chunks:
            chunk_start = start_ms + (end_ms - start_ms) * done // total
            done += len(chunk)
            chunk_end = start_ms + (end_ms - start_ms) * done // total
            result.append(Segment(chunk, chunk_start / 1000, chunk_end / 1000))
    return result


def to_srt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{number}\n{_timestamp(cue.start_s, ',')} --> {_timestamp(cue.end_s, ',')}\n{cue.text}\n"
        for number, cue in enumerate(cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{_timestamp(cue.start_s, '.')} --> {_timestamp(cue.end_s, '.')}\n{_escape(cue.text)}\n"
        for cue in cues(segments)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _timestamp(seconds: float, separator: str) -> str:
    hours, rest = divmod(_ms(seconds), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{separator}{millis:03d}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
