"""LTX-Video text-to-video and image-to-video through diffusers' LTXPipeline and
LTXImageToVideoPipeline (one set of weights serves both)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from diffusers import LTXImageToVideoPipeline, LTXPipeline

from models.base import VideoRequest
from models.neural.device import RuntimeLike, runtime_options, seeded_generator
from models.neural.diffusion import (
    Shot,
    Take,
    TextOrImageVideoEngine,
    free_shot,
    load_pipeline,
)
from models.neural.prompts import describe

# The negative prompt the LTX-Video authors recommend.
NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


class LtxVideoEngine(TextOrImageVideoEngine):
    """Frames of 8k+1 at up to `max_frames`, sides on a 32 px grid, at the model's 25 fps unless
    the scene is longer than `max_frames` allows (then at a lower rate passed to the model). A
    scene with an image starts from it (LTXImageToVideoPipeline on the same weights)."""

    name: ClassVar[str] = "ltx-video"
    version: ClassVar[str] = "1"
    # The LTX-Video 0.9.x model cards declare "license: other" and ship their own License.txt:
    # the LTX-Video open-weights licence (OpenRAIL-style use restrictions), not Apache-2.0 as
    # the code is. Check that file in the deployed folder.
    licence: ClassVar[str] = "ltxv-open-weights"

    native_fps: ClassVar[float] = 25.0

    def __init__(
        self,
        model_dir: str | Path,
        *,
        runtime: RuntimeLike = None,
        steps: int = 40,
        guidance_scale: float = 3.0,
        base_size: tuple[int, int] = (704, 480),
        max_frames: int = 161,
    ) -> None:
        super().__init__(
            load_pipeline(LTXPipeline, model_dir, runtime_options(runtime), ("LTXPipeline",)),
            steps,
        )
        self.image_pipe = LTXImageToVideoPipeline.from_pipe(self.pipe)
        self.guidance_scale = guidance_scale
        self.base_size = base_size
        self.max_frames = max_frames

    def plan(self, request: VideoRequest) -> Shot:
        grid = max(32, self.pipe.vae_spatial_compression_ratio)
        step = self.pipe.vae_temporal_compression_ratio
        return free_shot(request, self.base_size, grid, step, self.native_fps, self.max_frames)

    def _call(
        self, pipe: Any, requests: Sequence[VideoRequest], shot: Shot, **image: Any
    ) -> list[Take]:
        decode = {}
        if self.pipe.vae.config.timestep_conditioning:
            decode = {"decode_timestep": 0.05, "decode_noise_scale": 0.025}
        out = pipe(
            prompt=[describe(request) for request in requests],
            negative_prompt=NEGATIVE_PROMPT,
            width=shot.width,
            height=shot.height,
            num_frames=shot.frames,
            frame_rate=round(shot.fps),
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            generator=[seeded_generator(request.seed) for request in requests],
            output_type="np",
            **decode,
            **image,
        )
        return [Take(video) for video in out.frames]
