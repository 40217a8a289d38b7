"""Procedural music: an arrangement written as MIDI and played by a small numpy synthesiser.

A score is a chord progression in the mood's mode, a melody over it, a bass line and (for the
moods that move) drums. A sloka bed is a tanpura drone alone: Pa, Sa, Sa, low Sa, each pluck
ringing for seconds with the buzzing bridge (jivari) of the instrument. The arrangement is a list
of notes; the MIDI file and the audio are both made from it, so they always agree.

The synthesiser renders each distinct (instrument, pitch, length) once with numpy and mixes
copies, so a repeated note costs only its copy.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import mido
import numpy as np

from models.base import Audio, Mood, MusicRequest, MusicResult, MusicStyle

SAMPLE_RATE = 44100
PEAK = 10 ** (-3 / 20)
"""Output peak: -3 dBFS."""

FADE_OUT_S = 2.0
TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9
KICK, SNARE, HAT, TOM = 36, 38, 42, 45

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}


@dataclass(frozen=True)
class MoodScore:
    """How a mood is scored. `progression` holds scale degrees (0 = tonic), one chord per bar."""

    tonic: int
    scale: str
    progression: tuple[int, ...]
    melody: str
    pad: str
    notes_per_bar: tuple[int, ...]
    drums: str | None


MOODS: dict[Mood, MoodScore] = {
    Mood.calm: MoodScore(62, "major", (0, 4, 5, 3), "keys", "pad", (2, 3, 4), None),
    Mood.joyful: MoodScore(60, "major", (0, 5, 3, 4), "pluck", "pad", (4, 6, 8), "pop"),
    Mood.mysterious: MoodScore(57, "dorian", (0, 3, 0, 6), "bell", "pad", (2, 3), "pulse"),
    Mood.dramatic: MoodScore(
        55, "harmonic_minor", (0, 5, 3, 4), "brass", "strings", (3, 4, 6), "toms"
    ),
    Mood.sad: MoodScore(57, "minor", (0, 5, 2, 6), "keys", "strings", (1, 2, 3), None),
    Mood.epic: MoodScore(50, "minor", (0, 5, 2, 6), "brass", "strings", (2, 4), "epic"),
    Mood.devotional: MoodScore(61, "mixolydian", (0, 3, 0, 6), "reed", "reed_pad", (2, 3, 4), None),
}

DRUMS: dict[str, tuple[tuple[int, float], ...]] = {
    "pop": (
        (KICK, 0), (KICK, 2), (KICK, 2.5), (SNARE, 1), (SNARE, 3),
        *((HAT, beat / 2) for beat in range(8)),
    ),
    "pulse": ((KICK, 0), (TOM, 2.5), *((HAT, beat) for beat in range(4))),
    "toms": ((KICK, 0), (TOM, 1.5), (TOM, 2), (KICK, 2.5), (SNARE, 3)),
    "epic": ((KICK, 0), (KICK, 0.75), (TOM, 1.5), (KICK, 2), (SNARE, 3), (TOM, 3.5)),
}  # fmt: skip
"""One bar of each groove: (General MIDI drum, beat)."""

PROGRAMS: dict[str, int] = {
    "bell": 11, "keys": 4, "pluck": 46, "brass": 61, "reed": 21, "pad": 89, "strings": 48,
    "reed_pad": 20, "bass": 33, "tanpura": 104,
}  # fmt: skip
"""General MIDI program (0-based) each instrument is written with."""

SA = 49
"""The tanpura's middle Sa: C#3, a common tonic for male voices."""


Motif = list[tuple[float, float, int]]
"""One bar of melody: (beat, length in beats, scale step)."""


PAD = tuple(1 / k**1.6 for k in range(1, 9))
STRINGS = tuple(1 / k**1.2 for k in range(1, 13))
REED = (1.0, 0.35, 0.6, 0.25, 0.4, 0.15, 0.25, 0.1, 0.12, 0.05)
BASS = (1.0, 0.45, 0.2, 0.08)
"""Harmonic amplitudes of the steady voices: soft saw, bright saw, odd-heavy reed, round bass."""


@dataclass(frozen=True)
class Note:
    """One note; `start` and `length` are in seconds."""

    start: float
    length: float
    pitch: int
    velocity: int
    instrument: str
    """A key of `PROGRAMS`, or 'drums' (then `pitch` is a General MIDI drum)."""


class MidiMusicEngine:
    name: ClassVar[str] = "midi-synth"
    version: ClassVar[str] = "1"
    licence: ClassVar[str] = "MIT"

    def compose(self, request: MusicRequest) -> MusicResult:
        length = round(request.duration_s * SAMPLE_RATE)
        if request.style is MusicStyle.none:
            return MusicResult(Audio(np.zeros(length, np.float32), SAMPLE_RATE))
        if request.tempo_bpm <= 0:
            raise ValueError(f"tempo must be positive, not {request.tempo_bpm}")
        rng = np.random.default_rng(request.seed)
        if request.style is MusicStyle.sloka:
            notes = tanpura(request.tempo_bpm, request.duration_s)
        else:
            notes = score(MOODS[request.mood], request.tempo_bpm, request.duration_s, rng)
        midi = to_midi(notes, request.tempo_bpm)
        samples = _master(Synth(rng).render(notes, length))
        return MusicResult(Audio(samples, SAMPLE_RATE), midi)


def score(mood: MoodScore, tempo: int, duration_s: float, rng: np.random.Generator) -> list[Note]:
    """Chords, melody, bass and drums, one chord per bar of four beats, past `duration_s`."""
    beat = 60 / tempo
    bars = math.ceil(duration_s / (4 * beat)) + 1
    scale = SCALES[mood.scale]
    first, second = _motif(mood, rng), _motif(mood, rng)
    phrases = (first, second, first, _vary(second, rng))
    notes: list[Note] = []
    for bar in range(bars):
        start = bar * 4 * beat
        degree = mood.progression[bar % len(mood.progression)]
        chord = [mood.tonic + _degree(scale, degree + step) for step in (0, 2, 4)]
        notes += [Note(start, 4 * beat, pitch - 12, 52, mood.pad) for pitch in chord]
        notes += _bass(chord[0] - 24, start, beat, driving=mood.drums is not None)
        for offset, length, step in phrases[bar % 4]:
            pitch = mood.tonic + 12 + _degree(scale, _on_chord(step, degree, offset))
            notes.append(Note(start + offset * beat, length * beat, pitch, 84, mood.melody))
        if mood.drums is not None:
            notes += [
                Note(start + at * beat, 0.25 * beat, drum, 100 if at % 1 == 0 else 70, "drums")
                for drum, at in DRUMS[mood.drums]
            ]
    return notes


def _motif(mood: MoodScore, rng: np.random.Generator) -> Motif:
    """A seeded walk over the scale, in the mood's rhythmic density."""
    count = int(rng.choice(mood.notes_per_bar))
    onsets = np.sort(rng.choice(np.arange(0, 4, 0.5), size=count, replace=False))
    onsets[0] = 0.0
    lengths = np.diff(np.append(onsets, 4.0))
    steps = np.cumsum(rng.choice([-2, -1, 1, 2], size=count, p=[0.2, 0.3, 0.3, 0.2]))
    return [
        (float(onset), float(length), int(step))
        for onset, length, step in zip(onsets, lengths, np.clip(steps, -3, 7), strict=True)
    ]


def _vary(motif: Motif, rng: np.random.Generator) -> Motif:
    """The motif with its last note moved to a chord tone: the close of a four-bar phrase."""
    *head, (onset, length, _) = motif
    return [*head, (onset, length, int(rng.choice([0, 2, 4])))]


def _on_chord(step: int, root: int, beat: float) -> int:
    """`step`, moved to the nearest tone of the chord on `root` if it falls on a beat."""
    if beat % 1 or (step - root) % 7 in (0, 2, 4):
        return step
    return step + 1 if (step - root) % 7 == 6 else step - 1


def _degree(scale: tuple[int, ...], step: int) -> int:
    """Semitones above the tonic of scale degree `step` (any integer, octaves included)."""
    octave, index = divmod(step, len(scale))
    return 12 * octave + scale[index]


def _bass(root: int, start: float, beat: float, driving: bool) -> list[Note]:
    if driving:
        return [
            Note(start + b * beat, beat * 0.9, root + (7 if b == 2 else 0), 96, "bass")
            for b in range(4)
        ]
    return [Note(start, 4 * beat, root, 90, "bass")]


def tanpura(tempo: int, duration_s: float) -> list[Note]:
    """The tanpura's cycle, Pa Sa Sa Sa (low), the low Sa held longer, until past `duration_s`.

    Pa is the fifth below the middle Sa; the two middle Sa strings are plucked in turn. The pace
    follows the tempo but stays in the instrument's unhurried range.
    """
    pluck = min(max(60 / tempo, 0.6), 1.5)
    cycle = ((SA - 5, 0), (SA, 1), (SA, 2), (SA - 12, 3))
    notes: list[Note] = []
    start = 0.0
    while start < duration_s:
        notes += [Note(start + at * pluck, 6 * pluck, pitch, 90, "tanpura") for pitch, at in cycle]
        start += 5 * pluck
    return notes


def to_midi(notes: list[Note], tempo: int) -> bytes:
    """A type 1 .mid file: a conductor track, then one track per instrument on its own channel."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="conductor", time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0),
            mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
        ]
    )
    midi.tracks.append(conductor)
    instruments = list(dict.fromkeys(note.instrument for note in notes))
    melodic = iter(channel for channel in range(16) if channel != DRUM_CHANNEL)
    for instrument in instruments:
        channel = DRUM_CHANNEL if instrument == "drums" else next(melodic)
        header: list[mido.Message | mido.MetaMessage] = [
            mido.MetaMessage("track_name", name=instrument, time=0)
        ]
        if instrument != "drums":
            header.append(
                mido.Message("program_change", channel=channel, program=PROGRAMS[instrument])
            )
        events = _events([n for n in notes if n.instrument == instrument], tempo, channel)
        midi.tracks.append(mido.MidiTrack(header + events))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _events(notes: list[Note], tempo: int, channel: int) -> list[mido.Message]:
    """Note on/off messages with delta times in ticks; offs sort before ons at the same tick."""
    ticks_per_s = TICKS_PER_BEAT * tempo / 60
    timed = []
    for note in notes:
        on = round(note.start * ticks_per_s)
        off = max(on + 1, round((note.start + note.length) * ticks_per_s))
        timed.append((on, 1, "note_on", note.pitch, note.velocity))
        timed.append((off, 0, "note_off", note.pitch, 0))
    messages = []
    now = 0
    for tick, _, kind, pitch, velocity in sorted(timed):
        messages.append(
            mido.Message(kind, channel=channel, note=pitch, velocity=velocity, time=tick - now)
        )
        now = tick
    return messages


def _hz(pitch: float) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


SUSTAINED = frozenset({"tanpura", "pad", "strings", "reed_pad"})
"""Instruments that ring on for 1.5 s after their note ends (the others for 0.3 s)."""


class Synth:
    """Renders notes to mono float audio; each distinct sound is computed once and reused."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.cache: dict[tuple[str, int, int], np.ndarray] = {}
        self.voices: dict[str, Callable[[float, np.ndarray], np.ndarray]] = {
            "pad": _pad, "strings": _strings, "reed_pad": _reed, "reed": _reed,
            "bell": _bell, "keys": _keys, "pluck": _pluck, "brass": _brass, "bass": _bass_voice,
            "tanpura": _tanpura,
        }  # fmt: skip

    def render(self, notes: list[Note], length: int) -> np.ndarray:
        out = np.zeros(length, np.float32)
        for note in notes:
            begin = round(note.start * SAMPLE_RATE)
            if begin >= length:
                continue
            sound = self._sound(note)
            end = min(length, begin + len(sound))
            out[begin:end] += sound[: end - begin] * (note.velocity / 127)
        return out

    def _sound(self, note: Note) -> np.ndarray:
        key = (note.instrument, note.pitch, round(note.length * 100))
        if key not in self.cache:
            if note.instrument == "drums":
                self.cache[key] = _drum(note.pitch, self.rng)
            else:
                release = 1.5 if note.instrument in SUSTAINED else 0.3
                t = np.arange(round((note.length + release) * SAMPLE_RATE)) / SAMPLE_RATE
                self.cache[key] = self.voices[note.instrument](_hz(note.pitch), t) * _gate(
                    t, note.length, release
                )
        return self.cache[key]


def _gate(t: np.ndarray, hold: float, release: float) -> np.ndarray:
    """1 while the key is held, then a linear release to 0; 5 ms attack against clicks."""
    attack = np.clip(t / 0.005, 0, 1)
    return (attack * np.clip(1 - (t - hold) / release, 0, 1)).astype(np.float32)


def _additive(
    frequency: float, t: np.ndarray, amplitudes: tuple[float, ...], detune: float = 0.0
) -> np.ndarray:
    """A steady spectrum (harmonic k at `amplitudes[k - 1]`), read from a one-period table."""
    table = _period(amplitudes)
    index = (frequency * (1 + detune) * len(table)) * t
    return table[index.astype(np.int64) % len(table)]


@cache
def _period(amplitudes: tuple[float, ...], size: int = 4096) -> np.ndarray:
    phase = 2 * np.pi * np.arange(size)[:, None] / size
    harmonics = np.arange(1, len(amplitudes) + 1)
    return (np.sin(phase * harmonics) @ np.array(amplitudes)).astype(np.float32)


def _swell(t: np.ndarray, attack: float) -> np.ndarray:
    return np.clip(t / attack, 0, 1)


def _pad(frequency: float, t: np.ndarray) -> np.ndarray:
    """Two detuned soft saws: a warm synth pad."""
    voices = _additive(frequency, t, PAD, -0.003) + _additive(frequency, t, PAD, 0.003)
    return 0.25 * voices * _swell(t, 0.6)


def _strings(frequency: float, t: np.ndarray) -> np.ndarray:
    """A bowed ensemble: bright saws with a slow attack and a gentle vibrato."""
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t)
    return 0.22 * _additive(frequency, t * vibrato, STRINGS) * _swell(t, 0.35)


def _reed(frequency: float, t: np.ndarray) -> np.ndarray:
    """A harmonium: a reedy, odd-heavy spectrum with a slight bellows tremolo."""
    tremolo = 1 + 0.08 * np.sin(2 * np.pi * 4.5 * t)
    return 0.3 * _additive(frequency, t, REED) * tremolo * _swell(t, 0.08)


def _bell(frequency: float, t: np.ndarray) -> np.ndarray:
    """FM bell: an inharmonic 1:3.5 modulator whose index decays."""
    return _fm(frequency, t, ratio=3.5, index=2.0 * np.exp(-t * 3), decay=1.6)


def _keys(frequency: float, t: np.ndarray) -> np.ndarray:
    """FM electric piano: a 1:1 modulator, bright at the strike and mellowing."""
    return _fm(frequency, t, ratio=1.0, index=1.4 * np.exp(-t * 4), decay=1.2)


def _fm(
    frequency: float, t: np.ndarray, ratio: float, index: np.ndarray, decay: float
) -> np.ndarray:
    modulator = index * np.sin(2 * np.pi * ratio * frequency * t)
    return (0.5 * np.sin(2 * np.pi * frequency * t + modulator) * np.exp(-t * decay)).astype(
        np.float32
    )


def _pluck(frequency: float, t: np.ndarray) -> np.ndarray:
    """A bright plucked string: upper harmonics die faster than the fundamental."""
    harmonics = np.arange(1, 13)
    return 0.6 * _partials(
        frequency, t, harmonics, lambda t: np.exp(-t * (2 + 1.5 * harmonics)) / harmonics
    )


def _brass(frequency: float, t: np.ndarray) -> np.ndarray:
    """FM brass: the modulation index swells with the note, brightening it."""
    index = 1.8 * _swell(t, 0.12)
    tone = np.sin(2 * np.pi * frequency * t + index * np.sin(2 * np.pi * frequency * t))
    return (0.35 * tone * _swell(t, 0.05)).astype(np.float32)


def _bass_voice(frequency: float, t: np.ndarray) -> np.ndarray:
    return 0.45 * _additive(frequency, t, BASS) * np.exp(-t * 0.8)


def _tanpura(frequency: float, t: np.ndarray) -> np.ndarray:
    """A tanpura pluck: 40 harmonics under a formant that sweeps down them as the note rings.

    The jivari (a thread under the strings on a flat bridge) makes the string graze the bridge,
    which feeds energy into high harmonics; the bright band then slides slowly downwards.
    """
    harmonics = np.arange(1, 41)

    def amplitudes(t: np.ndarray) -> np.ndarray:
        centre = 4 + 22 * np.exp(-t / 1.8)
        formant = np.exp(-(((harmonics - centre) / 6) ** 2))
        return (0.7 / harmonics + 0.5 * formant) * np.exp(-t * (0.35 + 0.03 * harmonics))

    return 0.5 * _partials(frequency, t, harmonics, amplitudes) * _swell(t, 0.004)


def _partials(
    frequency: float,
    t: np.ndarray,
    harmonics: np.ndarray,
    amplitudes: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Harmonics of `frequency` whose amplitudes change in time: `amplitudes(t[:, None])` gives
    one column per harmonic. Computed a second at a time to bound memory."""
    keep = harmonics * frequency < 18000
    out = np.empty(len(t), np.float32)
    for begin in range(0, len(t), SAMPLE_RATE):
        chunk = t[begin : begin + SAMPLE_RATE, None]
        phases = np.sin((2 * np.pi * frequency) * chunk * harmonics[keep])
        out[begin : begin + len(chunk)] = (phases * amplitudes(chunk)[:, keep]).sum(axis=1)
    return out


def _drum(drum: int, rng: np.random.Generator) -> np.ndarray:
    """Kick and toms: a falling sine; snare: a tone under a noise burst; hat: bright noise."""
    t = np.arange(round(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
    noise = rng.standard_normal(len(t))
    if drum == KICK:
        phase = 2 * np.pi * (45 * t + (120 - 45) * 0.04 * (1 - np.exp(-t / 0.04)))
        sound = np.sin(phase) * np.exp(-t * 9)
    elif drum == TOM:
        phase = 2 * np.pi * (95 * t + 60 * 0.06 * (1 - np.exp(-t / 0.06)))
        sound = 0.8 * np.sin(phase) * np.exp(-t * 7)
    elif drum == SNARE:
        sound = 0.4 * np.sin(2 * np.pi * 185 * t) * np.exp(-t * 20) + 0.5 * noise * np.exp(-t * 16)
    else:
        sound = 0.25 * np.diff(noise, prepend=0.0) * np.exp(-t * 45)
    return sound.astype(np.float32)


def _master(samples: np.ndarray) -> np.ndarray:
    """Peak-normalise to -3 dBFS, with a fade-out over the last two seconds (or fifth)."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 0:
        samples = samples * (PEAK / peak)
    fade = min(round(FADE_OUT_S * SAMPLE_RATE), len(samples) // 5)
    if fade:
        samples[-fade:] *= np.cos(np.linspace(0, np.pi / 2, fade)) ** 2
    return samples.astype(np.float32)
