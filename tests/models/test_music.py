"""The MIDI music engine: a parseable arrangement per mood, rendered to a mastered bed."""

from __future__ import annotations

import io
import time

import mido
import numpy as np
import pytest

from models.base import Mood, MusicRequest, MusicResult, MusicStyle
from models.music import MOODS, PEAK, SA, SAMPLE_RATE, SCALES, MidiMusicEngine

ENGINE = MidiMusicEngine()


def compose(**fields: object) -> MusicResult:
    return ENGINE.compose(MusicRequest.model_validate({"duration_s": 8.0, **fields}))


def parse(result: MusicResult) -> mido.MidiFile:
    assert result.midi is not None
    return mido.MidiFile(file=io.BytesIO(result.midi))


def track_names(midi: mido.MidiFile) -> list[str]:
    return [track.name for track in midi.tracks]


def pitch_classes(midi: mido.MidiFile, track: str) -> set[int]:
    (found,) = (t for t in midi.tracks if t.name == track)
    return {message.note % 12 for message in found if message.type == "note_on"}


def hz(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def on_harmonics(frequencies: np.ndarray, fundamental: float) -> np.ndarray:
    """Whether each frequency lies within 2 Hz of a harmonic of `fundamental`."""
    return np.abs(frequencies - fundamental * np.round(frequencies / fundamental)) < 2


@pytest.mark.parametrize(
    ("mood", "tracks"),
    [
        (Mood.joyful, ["conductor", "pad", "bass", "pluck", "drums"]),
        (Mood.epic, ["conductor", "strings", "bass", "brass", "drums"]),
        (Mood.calm, ["conductor", "pad", "bass", "keys"]),
        (Mood.sad, ["conductor", "strings", "bass", "keys"]),
        (Mood.devotional, ["conductor", "reed_pad", "bass", "reed"]),
    ],
)
def test_midi_parses_with_the_moods_tracks(mood: Mood, tracks: list[str]) -> None:
    midi = parse(compose(mood=mood, tempo_bpm=100))
    assert midi.type == 1
    assert track_names(midi) == tracks
    tempos = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(100)]
    assert midi.length >= 8.0


def test_drums_play_on_the_drum_channel() -> None:
    midi = parse(compose(mood=Mood.joyful))
    (drums,) = (track for track in midi.tracks if track.name == "drums")
    assert {m.channel for m in drums if m.type == "note_on"} == {9}


@pytest.mark.parametrize("mood", list(Mood))
def test_harmony_stays_in_the_moods_mode(mood: Mood) -> None:
    score = MOODS[mood]
    allowed = {(score.tonic + step) % 12 for step in SCALES[score.scale]}
    midi = parse(compose(mood=mood, duration_s=20.0))
    for track in ("bass", score.pad, score.melody):
        assert pitch_classes(midi, track) <= allowed, track


def test_major_and_minor_moods_differ_in_their_third() -> None:
    calm, sad = parse(compose(mood=Mood.calm)), parse(compose(mood=Mood.sad))
    assert (MOODS[Mood.calm].tonic + 4) % 12 in pitch_classes(calm, "pad")
    assert (MOODS[Mood.sad].tonic + 3) % 12 in pitch_classes(sad, "strings")


@pytest.mark.parametrize("duration_s", [0.5, 3.3, 7.77, 12.0])
def test_audio_has_the_exact_length_and_a_minus_3_dbfs_peak(duration_s: float) -> None:
    audio = compose(mood=Mood.joyful, duration_s=duration_s).audio
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.samples.dtype == np.float32
    assert len(audio.samples) == round(duration_s * SAMPLE_RATE)
    assert abs(np.abs(audio.samples).max() - PEAK) < 1e-3
    assert np.sqrt(np.mean(audio.samples**2)) > 0.05


def test_music_fades_out() -> None:
    samples = compose(mood=Mood.epic, duration_s=10.0).audio.samples
    body = np.sqrt(np.mean(samples[: 6 * SAMPLE_RATE] ** 2))
    tail = np.sqrt(np.mean(samples[-SAMPLE_RATE // 20 :] ** 2))
    assert tail < 0.05 * body


def test_none_is_silence_of_the_duration() -> None:
    result = compose(style=MusicStyle.none, duration_s=2.5)
    assert len(result.audio.samples) == round(2.5 * SAMPLE_RATE)
    assert not result.audio.samples.any()


def test_moods_sound_different() -> None:
    """Drummed moods carry more high-frequency energy (hats, snares) than drumless ones."""

    def brightness(mood: Mood) -> float:
        spectrum = np.abs(np.fft.rfft(compose(mood=mood).audio.samples))
        frequencies = np.fft.rfftfreq(8 * SAMPLE_RATE, 1 / SAMPLE_RATE)
        return float((spectrum[frequencies > 4000] ** 2).sum() / (spectrum**2).sum())

    assert brightness(Mood.joyful) > 3 * brightness(Mood.calm)
    calm, sad = compose(mood=Mood.calm).audio.samples, compose(mood=Mood.sad).audio.samples
    assert abs(np.corrcoef(calm, sad)[0, 1]) < 0.5


@pytest.mark.parametrize("tempo", [60, 90, 140])
def test_sloka_is_a_steady_tanpura_drone_without_drums(tempo: int) -> None:
    """Every second, the loudest partial is a harmonic of Sa or Pa, and most of the sound lies on
    the harmonics of the low Sa: the drone never leaves the tonic."""
    result = compose(style=MusicStyle.sloka, duration_s=12.0, tempo_bpm=tempo, mood=Mood.joyful)
    assert track_names(parse(result)) == ["conductor", "tanpura"]
    frequencies = np.fft.rfftfreq(SAMPLE_RATE, 1 / SAMPLE_RATE)
    low = frequencies < 1000
    on_tonic = on_harmonics(frequencies, hz(SA - 12))
    for second in range(1, 10):
        window = result.audio.samples[second * SAMPLE_RATE : (second + 1) * SAMPLE_RATE]
        power = np.abs(np.fft.rfft(window * np.hanning(SAMPLE_RATE))) ** 2
        strongest = frequencies[low][np.argmax(power[low])]
        assert any(on_harmonics(strongest, hz(note)) for note in (SA - 12, SA - 5)), second
        assert power[low & on_tonic].sum() > 0.4 * power[low].sum(), second


def test_equal_requests_give_equal_music_and_seeds_vary_it() -> None:
    first, again, other = (compose(mood=Mood.calm, seed=seed) for seed in (1, 1, 2))
    assert first.midi == again.midi
    assert np.array_equal(first.audio.samples, again.audio.samples)
    assert first.midi != other.midi


def test_minute_of_music_renders_in_under_three_seconds() -> None:
    started = time.perf_counter()
    audio = compose(mood=Mood.epic, duration_s=60.0).audio
    assert time.perf_counter() - started < 3.0
    assert audio.duration_s == 60.0


def test_tempo_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tempo"):
        compose(tempo_bpm=0)
