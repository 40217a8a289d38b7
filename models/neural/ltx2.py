"""LTX-2 text-to-video and image-to-video through diffusers' LTX2Pipeline and
LTX2ImageToVideoPipeline (one set of weights serves both)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import LTX2ImageToVideoPipeline, LTX2Pipeline

from models.base import Audio, VideoRequest
from models.neural.device import RuntimeLike, runtime_options, seeded_generator
from models.neural.diffusion import (
    Shot,
    Take,
    TextOrImageVideoEngine,
    free_shot,
    load_pipeline,
)
from models.neural.prompts import describe

NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


class Ltx2VideoEngine(TextOrImageVideoEngine):
    """Frames of 8k+1 at up to `max_frames`, sides on a 32 px grid, at the model's 24 fps unless
    the scene is longer than `max_frames` allows. LTX-2 generates a sound with the picture: it
    comes back with the frames (`SoundFrames`, mono), and the render lays it under the narration
    as an ambience bed or drops it (STUDIO_VIDEO_SOUND). Spatio-temporal guidance (`stg_scale`,
    `stg_blocks`) is the model card's default; a model with fewer blocks sets `stg_blocks` to
    ones it has, or none."""

    name: ClassVar[str] = "ltx-2"
    version: ClassVar[str] = "1"
    # Lightricks LTX-2 model card: the LTX-2 Community License, free for commercial use by
    # entities under USD 10M annual revenue.
    licence: ClassVar[str] = "ltx-2-community"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        runtime: RuntimeLike = None,
        steps: int = 40,
        guidance_scale: float = 3.0,
        stg_scale: float = 1.0,
        stg_blocks: Sequence[int] | None = (28,),
        base_size: tuple[int, int] = (768, 512),
        native_fps: float = 24.0,
        max_frames: int = 121,
    ) -> None:
        options = runtime_options(runtime)
        loaded = load_pipeline(LTX2Pipeline, model_dir, options, ("LTX2Pipeline",))
        super().__init__(loaded, steps)
        self.image_pipe = LTX2ImageToVideoPipeline.from_pipe(self.pipe)
        self.guidance_scale = guidance_scale
        self.stg_scale = stg_scale
        self.stg_blocks = list(stg_blocks) if stg_blocks else None
        self.base_size = base_size
        self.native_fps = native_fps
        self.max_frames = max_frames

    def plan(self, request: VideoRequest) -> Shot:
        grid = max(32, self.pipe.vae_spatial_compression_ratio)
        step = self.pipe.vae_temporal_compression_ratio
        return free_shot(request, self.base_size, grid, step, self.native_fps, self.max_frames)

    def _call(
        self, pipe: Any, requests: Sequence[VideoRequest], shot: Shot, **image: Any
    ) -> list[Take]:
        guidance = self.stg_scale if self.stg_blocks else 0.0
        out = pipe(
            prompt=[describe(request) for request in requests],
            negative_prompt=NEGATIVE_PROMPT,
            width=shot.width,
            height=shot.height,
            num_frames=shot.frames,
            frame_rate=shot.fps,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            stg_scale=guidance,
            audio_stg_scale=guidance,
            spatio_temporal_guidance_blocks=self.stg_blocks,
            generator=[seeded_generator(request.seed) for request in requests],
            output_type="np",
            **image,
        )
        rate = int(self.pipe.vocoder.config.output_sampling_rate)
        sounds = [_mono(sound, rate) for sound in out.audio]
        return [Take(video, sound) for video, sound in zip(out.frames, sounds, strict=True)]


def _mono(sound: torch.Tensor, rate: int) -> Audio:
    """The vocoder's (channels, samples) waveform as mono samples in [-1, 1]."""
    samples = sound.float().cpu().numpy().reshape(-1, sound.shape[-1]).mean(axis=0)
    return Audio(np.clip(samples, -1.0, 1.0).astype(np.float32), rate)
