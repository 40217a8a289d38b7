"""Text-to-music with Stable Audio Open through diffusers' StableAudioPipeline.

The score's mood, tempo and style become the text prompt. The model generates at most
`transformer.sample_size * vae.hop_length / vae.sampling_rate` seconds per call (about 47 s for
Stable Audio Open 1.0), so a longer film's score is generated in pieces, each with its own seed,
joined by equal-power crossfades. The result is mono at the model's rate (the render resamples
it), peak-normalised like the MIDI engine's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from diffusers import StableAudioPipeline

from models.base import Audio, Mood, MusicRequest, MusicResult, MusicStyle
from models.music import PEAK
from models.neural.device import RuntimeLike, runtime_options, seeded_generator
from models.neural.diffusion import load_pipeline

NEGATIVE_PROMPT = "vocals, singing, speech, low quality, distorted, noise"

_MOODS: dict[Mood, str] = {
    Mood.calm: "calm, gentle ambient score with soft piano and warm pads",
    Mood.joyful: "joyful, bright and uplifting score with plucked strings and light percussion",
    Mood.mysterious: "mysterious, dark ambient score with bells and low drones",
    Mood.dramatic: "dramatic orchestral score with tense strings, brass and timpani",
    Mood.sad: "sad, melancholic score with slow piano and cello",
    Mood.epic: "epic orchestral score with powerful brass, choir pads and big drums",
    Mood.devotional: "devotional, serene score with harmonium, bansuri flute and soft tabla",
}


def music_prompt(request: MusicRequest) -> str:
    """The text prompt: a tanpura drone for a sloka bed, else the mood's instrumental score,
    with the tempo in the "<n> BPM" form Stable Audio Open was trained on."""
    if request.style is MusicStyle.sloka:
        return f"Indian classical tanpura drone, {request.tempo_bpm} BPM, meditative, instrumental"
    return f"{_MOODS[request.mood]}, {request.tempo_bpm} BPM, instrumental film music"


class StableAudioMusicEngine:
    """`steps` and `guidance_scale` are diffusers' defaults for the pipeline; `crossfade_s` is
    the overlap between consecutive pieces of a score longer than one call."""

    name: ClassVar[str] = "stable-audio"
    version: ClassVar[str] = "1"
    # stabilityai/stable-audio-open-1.0 model card: the Stability AI Community License, free for
    # commercial use by entities under USD 1M annual revenue.
    licence: ClassVar[str] = "stability-community"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        runtime: RuntimeLike = None,
        steps: int = 100,
        guidance_scale: float = 7.0,
        crossfade_s: float = 2.0,
    ) -> None:
        loaded = load_pipeline(
            StableAudioPipeline, model_dir, runtime_options(runtime), ("StableAudioPipeline",)
        )
        self.pipe = loaded.pipe
        self.model_revision = loaded.revision
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.sample_rate = int(self.pipe.vae.config.sampling_rate)
        hop = int(self.pipe.vae.hop_length)
        self.piece_s = int(self.pipe.transformer.config.sample_size) * hop / self.sample_rate
        self.crossfade_s = min(crossfade_s, self.piece_s / 4)

    def compose(self, request: MusicRequest) -> MusicResult:
        length = round(request.duration_s * self.sample_rate)
        if request.style is MusicStyle.none or length == 0:
            return MusicResult(Audio(np.zeros(length, np.float32), self.sample_rate))
        if request.tempo_bpm <= 0:
            raise ValueError(f"tempo must be positive, not {request.tempo_bpm}")
        prompt = music_prompt(request)
        piece_s = min(self.piece_s, request.duration_s)
        count = pieces_needed(request.duration_s, piece_s, self.crossfade_s)
        pieces = [self._piece(prompt, piece_s, request.seed + index) for index in range(count)]
        joined = crossfade(pieces, round(self.crossfade_s * self.sample_rate))
        samples = _normalise(np.pad(joined[:length], (0, max(0, length - len(joined)))))
        return MusicResult(Audio(samples, self.sample_rate))

    def _piece(self, prompt: str, seconds: float, seed: int) -> np.ndarray:
        with torch.inference_mode():
            out = self.pipe(
                prompt=prompt,
                negative_prompt=NEGATIVE_PROMPT,
                audio_end_in_s=seconds,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance_scale,
                generator=seeded_generator(seed),
                output_type="np",
            )
        stereo: np.ndarray = out.audios[0]  # (channels, samples)
        return stereo.astype(np.float32).mean(axis=0)


def pieces_needed(duration_s: float, piece_s: float, crossfade_s: float) -> int:
    """How many pieces of `piece_s`, overlapping by `crossfade_s`, cover `duration_s`."""
    if duration_s <= piece_s:
        return 1
    return 1 + math.ceil((duration_s - piece_s) / (piece_s - crossfade_s))


def crossfade(pieces: list[np.ndarray], overlap: int) -> np.ndarray:
    """The pieces end to end, each overlapping the one before by `overlap` samples (no more
    than a piece's length) with an equal-power (sine/cosine) fade, which keeps the loudness of
    uncorrelated music steady."""
    out = pieces[0]
    ramp = np.linspace(0.0, np.pi / 2, overlap, dtype=np.float32)
    fade_in, fade_out = np.sin(ramp), np.cos(ramp)
    for piece in pieces[1:]:
        mixed = out[len(out) - overlap :] * fade_out + piece[:overlap] * fade_in
        out = np.concatenate([out[: len(out) - overlap], mixed, piece[overlap:]])
    return out


def _normalise(samples: np.ndarray) -> np.ndarray:
    peak = float(np.abs(samples).max(initial=0.0))
    if peak == 0.0:
        return samples.astype(np.float32)
    return (samples * (PEAK / peak)).astype(np.float32)
