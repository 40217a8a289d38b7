"""Wan 2.1 / 2.2 text-to-video and image-to-video through diffusers' WanPipeline and
WanImageToVideoPipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from diffusers import WanImageToVideoPipeline, WanPipeline

from models.base import VideoRequest
from models.errors import ModelUnavailable
from models.neural.device import RuntimeLike, runtime_options, seeded_generator
from models.neural.diffusion import (
    Shot,
    Take,
    TextOrImageVideoEngine,
    free_shot,
    load_pipeline,
)
from models.neural.prompts import describe

# The negative prompt of the Wan authors' examples, in short.
NEGATIVE_PROMPT = (
    "static, blurred details, worst quality, low quality, jpeg artifacts, deformed, ugly"
)


class WanVideoEngine(TextOrImageVideoEngine):
    """Frames of 4k+1 at up to `max_frames` and `native_fps`, sides on the transformer's patch
    grid. A scene with an image is animated by the image-to-video pipeline: Wan 2.2 TI2V
    checkpoints (`expand_timesteps`) run it on their own weights; Wan 2.1 needs its separate
    I2V checkpoint in `image_model_dir`."""

    name: ClassVar[str] = "wan"
    version: ClassVar[str] = "1"
    # Wan2.1-T2V-1.3B / 14B, Wan2.1-I2V-14B, Wan2.2-TI2V-5B model cards: Apache-2.0.
    licence: ClassVar[str] = "apache-2.0"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        image_model_dir: str | Path | None = None,
        runtime: RuntimeLike = None,
        steps: int = 40,
        guidance_scale: float = 5.0,
        base_size: tuple[int, int] = (832, 480),
        native_fps: float = 16.0,
        max_frames: int = 81,
    ) -> None:
        options = runtime_options(runtime)
        super().__init__(load_pipeline(WanPipeline, model_dir, options, ("WanPipeline",)), steps)
        self.image_pipe = self._image_pipeline(image_model_dir, options)
        self.guidance_scale = guidance_scale
        self.base_size = base_size
        self.native_fps = native_fps
        self.max_frames = max_frames

    def _image_pipeline(self, image_model_dir: str | Path | None, options: Any) -> Any:
        if image_model_dir is not None:
            expected = ("WanImageToVideoPipeline",)
            return load_pipeline(WanImageToVideoPipeline, image_model_dir, options, expected).pipe
        if self.pipe.config.expand_timesteps:
            return WanImageToVideoPipeline.from_pipe(self.pipe)
        raise ModelUnavailable(
            "Wan animates a scene's image with an image-to-video model: give a Wan 2.1 I2V"
            " folder (wan-i2v) or serve a Wan 2.2 TI2V checkpoint"
        )

    def plan(self, request: VideoRequest) -> Shot:
        patch = self.pipe.transformer.config.patch_size
        grid = self.pipe.vae_scale_factor_spatial * max(patch[1], patch[2])
        step = self.pipe.vae_scale_factor_temporal
        return free_shot(request, self.base_size, grid, step, self.native_fps, self.max_frames)

    def _call(
        self, pipe: Any, requests: Sequence[VideoRequest], shot: Shot, **image: Any
    ) -> list[Take]:
        prompts = [describe(request) for request in requests]
        out = pipe(
            prompt=prompts if len(prompts) > 1 else prompts[0],
            negative_prompt=NEGATIVE_PROMPT,
            width=shot.width,
            height=shot.height,
            num_frames=shot.frames,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            generator=[seeded_generator(request.seed) for request in requests],
            output_type="np",
            **image,
        )
        return [Take(video) for video in out.frames]
