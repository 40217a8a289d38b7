"""Narration timing and the subtitle files made from it: cues hold at most two lines of 42
characters and are timed to the millisecond of the voice."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import Audio
from pipeline.render.narration import Segment, narrate, split_sentences, with_transliteration
from pipeline.render.subtitles import cues, to_srt, to_vtt

VOICE_RATE = 22_050
LEAD_S = 0.1


def fake_voice(text: str) -> Audio:
    """A tone 20 ms per character, wrapped in 0.1 s of silence like a real engine's output."""
    tone = np.sin(np.arange(round(0.02 * len(text) * VOICE_RATE)) * 2 * np.pi * 300 / VOICE_RATE)
    silence = np.zeros(round(LEAD_S * VOICE_RATE))
    return Audio(np.concatenate([silence, 0.5 * tone, silence]).astype(np.float32), VOICE_RATE)


def test_sentences_split_at_terminators_but_not_after_abbreviations() -> None:
    text = 'Dr. Rao walked 3.5 km with J. R. Smith. "Was it far?" she asked!  Yes…\n\nNew part'
    assert split_sentences(text) == [
        "Dr. Rao walked 3.5 km with J. R. Smith.",
        '"Was it far?"',
        "she asked!",
        "Yes…",
        "New part",
    ]


def test_devanagari_dandas_end_sentences() -> None:
    assert split_sentences("ॐ सह नाववतु । सह नौ भुनक्तु ॥ end") == [
        "ॐ सह नाववतु ।",
        "सह नौ भुनक्तु ॥",
        "end",
    ]


def test_narration_segments_are_the_sentences_times_in_the_audio() -> None:
    narration = narrate(fake_voice, "One two three. Four five.", pause_s=0.25)
    assert narration.audio.sample_rate == 48_000
    first, second = narration.segments
    assert (first.text, second.text) == ("One two three.", "Four five.")
    assert first.start_s == 0
    assert first.end_s - first.start_s == pytest.approx(0.02 * 14 + 0.04, abs=0.002)
    assert second.start_s == pytest.approx(first.end_s + 0.25, abs=1e-9)
    assert second.end_s == pytest.approx(narration.duration_s, abs=1e-9)
    samples = narration.audio.samples
    rate = narration.audio.sample_rate

    def heard(start_s: float, end_s: float) -> float:
        return float(np.abs(samples[round(start_s * rate) : round(end_s * rate)]).max())

    assert heard(first.start_s + 0.025, first.end_s - 0.025) > 0.4
    assert heard(first.end_s + 0.005, second.start_s - 0.005) == 0


def test_empty_narration_is_silent_with_no_segments() -> None:
    narration = narrate(fake_voice, "  ")
    assert narration.duration_s == 0 and narration.segments == []


def test_srt_numbers_cues_with_comma_milliseconds() -> None:
    segments = [Segment("Hello there.", 0.1234, 1.5), Segment("Bye & <go>.", 3661.25, 3662)]
    assert to_srt(segments) == (
        "1\n00:00:00,123 --> 00:00:01,500\nHello there.\n\n"
        "2\n01:01:01,250 --> 01:01:02,000\nBye & <go>.\n"
    )


def test_vtt_has_a_header_dot_milliseconds_and_escaped_text() -> None:
    segments = [Segment("Hello there.", 0.1234, 1.5), Segment("Bye & <go>.", 3661.25, 3662)]
    assert to_vtt(segments) == (
        "WEBVTT\n\n"
        "00:00:00.123 --> 00:00:01.500\nHello there.\n\n"
        "01:01:01.250 --> 01:01:02.000\nBye &amp; &lt;go&gt;.\n"
    )


def test_long_segments_split_into_cues_of_two_short_lines_sharing_the_time() -> None:
    text = (
        "Every summer, when the stars came out over the village, Grandfather told us the "
        "story of the woman who went to space, and of the long road she took to come home."
    )
    parts = cues([Segment(text, 10.0, 18.0)])
    assert len(parts) == 2
    for cue in parts:
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
    assert " ".join(" ".join(cue.text.split("\n")) for cue in parts) == text
    assert parts[0].start_s == 10.0 and parts[-1].end_s == 18.0
    assert parts[0].end_s == parts[1].start_s
    share = len(parts[0].text) / sum(len(cue.text) for cue in parts)
    assert parts[0].end_s == pytest.approx(10.0 + 8.0 * share, abs=0.001)


def test_film_level_times_come_from_shifting_scene_segments() -> None:
    narration = narrate(fake_voice, "First. Second.")
    shifted = [segment.shifted(12.5) for segment in narration.segments]
    srt = to_srt(shifted)
    start_ms = round((12.5 + narration.segments[1].start_s) * 1000)
    assert f"00:00:{start_ms // 1000:02d},{start_ms % 1000:03d} -->" in srt


def test_a_sentence_with_its_transliteration_stays_one_cue_each_line_wrapped() -> None:
    spoken = "सह वीर्यं करवावहै। तेजस्वि नावधीतमस्तु।"
    segments = [Segment("सह वीर्यं करवावहै।", 1.0, 2.0), Segment("तेजस्वि नावधीतमस्तु।", 2.5, 3.5)]
    shown = with_transliteration(segments, "saha vīryaṃ karavāvahai. tejasvi nāvadhītamastu.")
    assert split_sentences(spoken) == [segment.text for segment in segments]
    assert [(c.text, c.start_s, c.end_s) for c in cues(shown)] == [
        ("सह वीर्यं करवावहै।\nsaha vīryaṃ karavāvahai.", 1.0, 2.0),
        ("तेजस्वि नावधीतमस्तु।\ntejasvi nāvadhītamastu.", 2.5, 3.5),
    ]
    long = Segment(f"{'शान्तिः ' * 8}\n{'śāntiḥ ' * 8}", 0.0, 4.0)
    (cue,) = cues([long], max_chars=30)
    lines = cue.text.splitlines()
    devanagari = [any("\u0900" <= c <= "\u097f" for c in line) for line in lines]
    assert devanagari == [True, True, True, False, False]
    assert max(len(line) for line in lines) <= 30
