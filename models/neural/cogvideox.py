"""CogVideoX text-to-video through diffusers' CogVideoXPipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from diffusers import CogVideoXPipeline

from models.base import VideoRequest
from models.errors import ModelUnavailable
from models.neural.device import RuntimeLike, runtime_options, seeded_generator
from models.neural.diffusion import DiffusionVideoEngine, Shot, describe, load_pipeline
from models.neural.frames import requested_frames, snap_frames


class CogVideoXEngine(DiffusionVideoEngine):
    """The model's trained size (720x480 for CogVideoX 1.0) and up to its trained length
    (49 frames, 8k+1) at 8 fps; scenes of another shape or length are fitted afterwards."""

    name: ClassVar[str] = "cogvideox"
    version: ClassVar[str] = "1"
    # CogVideoX-5b, -5b-I2V and 1.5-5b weights: the "CogVideoX LICENSE" (THUDM), which restricts
    # commercial use (registration). The 2b weights are Apache-2.0: see CogVideoX2bEngine.
    licence: ClassVar[str] = "cogvideox-license"

    native_fps: ClassVar[float] = 8.0
    apache_2b_only: ClassVar[bool] = False

    def __init__(
        self,
        model_dir: str | Path,
        *,
        runtime: RuntimeLike = None,
        steps: int = 50,
        guidance_scale: float = 6.0,
    ) -> None:
        loaded = load_pipeline(
            CogVideoXPipeline, model_dir, runtime_options(runtime), ("CogVideoXPipeline",)
        )
        if self.apache_2b_only and loaded.pipe.transformer.config.use_rotary_positional_embeddings:
            raise ModelUnavailable(
                f"{loaded.folder} holds a CogVideoX-5b family model (rotary embeddings), whose"
                " weights are under the CogVideoX licence: serve it with CogVideoXEngine"
            )
        super().__init__(loaded, steps)
        self.guidance_scale = guidance_scale

    def plan(self, request: VideoRequest) -> Shot:
        config = self.pipe.transformer.config
        scale = self.pipe.vae_scale_factor_spatial
        step = self.pipe.vae_scale_factor_temporal * 2
        wanted = requested_frames(request.duration_s, self.native_fps)
        frames = snap_frames(wanted, step, config.sample_frames)
        return Shot(
            config.sample_width * scale, config.sample_height * scale, frames, self.native_fps
        )

    def render(self, requests: Sequence[VideoRequest], shot: Shot) -> list[np.ndarray]:
        out = self.pipe(
            prompt=[describe(request) for request in requests],
            width=shot.width,
            height=shot.height,
            num_frames=shot.frames,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            use_dynamic_cfg=self.pipe.transformer.config.use_rotary_positional_embeddings,
            generator=[seeded_generator(request.seed) for request in requests],
            max_sequence_length=self.pipe.transformer.config.max_text_seq_length,
            output_type="np",
        )
        return [video[: shot.frames] for video in out.frames]


class CogVideoX2bEngine(CogVideoXEngine):
    """CogVideoX-2b, whose weights are Apache-2.0; refuses folders of the 5b family."""

    name: ClassVar[str] = "cogvideox-2b"
    licence: ClassVar[str] = "apache-2.0"
    apache_2b_only: ClassVar[bool] = True
