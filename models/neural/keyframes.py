"""Keyframes from a Stable Diffusion text-to-image pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from diffusers import AutoPipelineForText2Image

from models.base import ImageRequest
from models.neural.device import RuntimeLike, runtime_options, seeded_generator
from models.neural.diffusion import load_pipeline
from models.neural.frames import cover, native_size, to_uint8

_NEGATIVE = "text, watermark, lowres, blurry, deformed"


class DiffusersKeyframeEngine:
    """Renders at the model's pixel budget in the request's aspect, then cover-fits."""

    name: ClassVar[str] = "diffusers-keyframes"
    version: ClassVar[str] = "1"
    # Stable Diffusion 1.x weights (runwayml / CompVis model cards): CreativeML OpenRAIL-M.
    licence: ClassVar[str] = "creativeml-openrail-m"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        runtime: RuntimeLike = None,
        steps: int = 30,
        guidance_scale: float = 7.5,
        base_size: tuple[int, int] = (512, 512),
    ) -> None:
        loaded = load_pipeline(
            AutoPipelineForText2Image,
            model_dir,
            runtime_options(runtime),
            ("StableDiffusionPipeline",),
        )
        self.pipe = loaded.pipe
        self.model_revision = loaded.revision
        self.steps = steps
        self.guidance_scale = guidance_scale
        self.base_size = base_size

    def keyframe(self, request: ImageRequest) -> np.ndarray:
        levels = len(self.pipe.unet.config.block_out_channels) - 1
        grid = max(8, self.pipe.vae_scale_factor * 2**levels)
        width, height = native_size(request.width, request.height, self.base_size, grid)
        with torch.inference_mode():
            out = self.pipe(
                prompt=f"{request.prompt.strip().rstrip('.')}. {request.mood.value} mood",
                negative_prompt=_NEGATIVE,
                width=width,
                height=height,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance_scale,
                generator=seeded_generator(request.seed),
                output_type="np",
            )
        return cover(to_uint8(out.images[0]), request.width, request.height)
