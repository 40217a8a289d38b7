"""The film's sound: resampling, placing clips on a timeline, music ducked under the narration,
loudness and a peak limiter. Everything is mono float32 at 48 kHz unless said otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np

from models.base import Audio

SAMPLE_RATE = 48_000
_HOP_S = 0.01


def resample(audio: Audio, rate: int = SAMPLE_RATE) -> Audio:
    """Band-limited resampling with libswresample; the result starts aligned with the input and
    has exactly round(len * rate / source rate) samples."""
    if audio.sample_rate == rate:
        return audio
    samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
    if len(samples) == 0:
        return Audio(samples, rate)
    frame = av.AudioFrame.from_ndarray(samples[np.newaxis, :], format="flt", layout="mono")
    frame.sample_rate = audio.sample_rate
    frame.pts = 0
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks = [f.to_ndarray()[0] for f in [*resampler.resample(frame), *resampler.resample(None)]]
    length = round(len(samples) * rate / audio.sample_rate)
    return Audio(fit(np.concatenate(chunks), length), rate)


def fit(samples: np.ndarray, length: int) -> np.ndarray:
    """Trim, or pad with silence, to exactly `length` samples."""
    if len(samples) >= length:
        return samples[:length]
    return np.concatenate([samples, np.zeros(length - len(samples), samples.dtype)])


def trim_silence(audio: Audio, *, threshold_db: float = -40.0, margin_s: float = 0.02) -> Audio:
    """Cut leading and trailing silence (quieter than `threshold_db` below the peak), keeping
    `margin_s` on each side, so that timings measured on the result are the speech's own."""
    magnitude = np.abs(audio.samples)
    if len(magnitude) == 0 or magnitude.max() == 0:
        return Audio(audio.samples[:0], audio.sample_rate)
    loud = np.flatnonzero(magnitude >= magnitude.max() * _gain(threshold_db))
    margin = round(margin_s * audio.sample_rate)
    start, end = max(0, loud[0] - margin), min(len(magnitude), loud[-1] + 1 + margin)
    return Audio(audio.samples[start:end], audio.sample_rate)


def place(
    clips: Sequence[tuple[float, Audio]], duration_s: float, rate: int = SAMPLE_RATE
) -> Audio:
    """Mix clips onto a silent track of `duration_s`, each starting at its offset in seconds;
    whatever runs past the end is cut."""
    track = np.zeros(round(duration_s * rate), np.float32)
    for offset_s, clip in clips:
        if offset_s < 0:
            raise ValueError(f"a clip cannot start before the track ({offset_s} s)")
        samples = resample(clip, rate).samples
        start = round(offset_s * rate)
        end = min(len(track), start + len(samples))
        if end > start:
            track[start:end] += samples[: end - start]
    return Audio(track, rate)


def normalize(audio: Audio, *, target_db: float = -18.0) -> Audio:
    """Scale so that the RMS of the audible part (10 ms windows within 40 dB of the loudest one)
    is `target_db` dBFS; pauses do not count, so a sparse narration is not pushed up."""
    power = _window_power(audio.samples, round(_HOP_S * audio.sample_rate))
    if len(power) == 0 or power.max() == 0:
        return audio
    audible = power[power >= power.max() * 1e-4]
    gain = _gain(target_db) / np.sqrt(audible.mean())
    return Audio((audio.samples * gain).astype(np.float32), audio.sample_rate)


def duck(
    music: Audio,
    voice: Audio,
    *,
    depth_db: float = 12.0,
    threshold_db: float = -45.0,
    attack_s: float = 0.08,
    release_s: float = 0.6,
    hold_s: float = 0.3,
) -> Audio:
    """Lower `music` by `depth_db` wherever `voice` speaks (a sidechain compressor keyed by the
    voice's RMS). The duck starts `attack_s` ahead of the speech (look-ahead), so the first
    syllable is never masked, holds through short pauses and recovers with `release_s`."""
    rate = music.sample_rate
    hop = round(_HOP_S * rate)
    voice_samples = fit(resample(voice, rate).samples, len(music.samples))
    speaking = _window_power(voice_samples, hop) > _gain(threshold_db) ** 2
    speaking = _dilate(speaking, before=round(attack_s / _HOP_S), after=round(hold_s / _HOP_S))
    gain_db = _smooth(np.where(speaking, -depth_db, 0.0), attack_s, release_s)
    hop_centres = (np.arange(len(gain_db)) + 0.5) * hop
    gain = _gain(np.interp(np.arange(len(music.samples)), hop_centres, gain_db))
    return Audio((music.samples * gain).astype(np.float32), rate)


def limit(audio: Audio, *, ceiling_db: float = -1.0, release_s: float = 0.1) -> Audio:
    """A look-ahead peak limiter: no sample exceeds `ceiling_db`; the gain falls instantly (one
    5 ms block ahead) and recovers over `release_s`, so single peaks do not pump the mix."""
    ceiling = _gain(ceiling_db)
    samples = audio.samples
    block = max(1, round(0.005 * audio.sample_rate))
    blocks = -(-len(samples) // block)
    if blocks == 0:
        return audio
    peaks = np.abs(fit(samples, blocks * block)).reshape(blocks, block).max(axis=1)
    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-9))
    edges = np.minimum(np.r_[needed[0], needed], np.r_[needed, needed[-1]])
    recovery = np.exp(-block / (release_s * audio.sample_rate))
    for i in range(1, len(edges)):
        edges[i] = min(edges[i], 1 - (1 - edges[i - 1]) * recovery)
    gain = np.interp(np.arange(len(samples)), np.arange(blocks + 1) * block, edges)
    limited = np.clip(samples * gain, -ceiling, ceiling)
    return Audio(limited.astype(np.float32), audio.sample_rate)


def end_at(audio: Audio, duration_s: float, *, fade_s: float) -> Audio:
    """`audio` cut (or padded with silence) to `duration_s`, its last `fade_s` faded out."""
    length = round(duration_s * audio.sample_rate)
    samples = fit(audio.samples, length).copy()
    fade = min(round(fade_s * audio.sample_rate), length)
    if fade:
        samples[length - fade :] *= np.cos(np.linspace(0, np.pi / 2, fade)) ** 2
    return Audio(samples.astype(np.float32), audio.sample_rate)


def mix_film(
    narration: Audio,
    music: Audio | None,
    *,
    music_volume: float,
    ambience: Audio | None = None,
    ambience_volume: float = 0.0,
) -> Audio:
    """The film's soundtrack: the narration normalised; the music bed at `music_volume` and the
    ambience bed (the video model's own sound, normalised first: its level is the model's
    whim) at `ambience_volume`, each ducked under the narration; then limited. The result is as
    long as the narration track."""
    voice = normalize(resample(narration))
    mixed = voice.samples.copy()
    for bed, volume in ((music, music_volume), (ambience and normalize(ambience), ambience_volume)):
        if bed is not None and volume > 0:
            level = resample(bed)
            level = Audio(fit(level.samples, len(mixed)) * np.float32(volume), SAMPLE_RATE)
            mixed += duck(level, voice).samples
    return limit(Audio(mixed, SAMPLE_RATE))


def _gain(db: float | np.ndarray) -> np.ndarray:
    return np.power(10.0, np.asarray(db) / 20)


def _window_power(samples: np.ndarray, hop: int) -> np.ndarray:
    windows = len(samples) // hop + (len(samples) % hop > 0)
    padded = fit(samples.astype(np.float64), windows * hop)
    return np.square(padded).reshape(windows, hop).mean(axis=1)


def _dilate(mask: np.ndarray, *, before: int, after: int) -> np.ndarray:
    """True wherever a True lies within `before` steps later or `after` steps earlier."""
    padded = np.r_[np.zeros(after, bool), mask, np.zeros(before, bool)]
    window = np.lib.stride_tricks.sliding_window_view(padded, before + after + 1)
    return np.asarray(window.any(axis=1))


def _smooth(target_db: np.ndarray, attack_s: float, release_s: float) -> np.ndarray:
    """One-pole smoothing per 10 ms hop: fast going down (attack), slow coming back (release)."""
    down, up = np.exp(-_HOP_S / attack_s), np.exp(-_HOP_S / release_s)
    out = np.empty_like(target_db)
    level = 0.0
    for i, target in enumerate(target_db):
        coefficient = down if target < level else up
        level = target + (level - target) * coefficient
        out[i] = level
    return out
