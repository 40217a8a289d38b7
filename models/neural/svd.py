"""Stable Video Diffusion: image-to-video from the scene's keyframe."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from diffusers import StableVideoDiffusionPipeline
from PIL import Image

from models.base import CameraMove, ImageEngine, VideoRequest
from models.errors import UnsupportedRequest
from models.neural.device import RuntimeLike, runtime_options, seeded_generator
from models.neural.diffusion import DiffusionVideoEngine, Shot, Take, load_pipeline
from models.neural.frames import cover, native_size


class StableVideoDiffusionEngine(DiffusionVideoEngine):
    """Animates `keyframe_png`, or a keyframe drawn by `keyframes` when the scene has none.

    The model makes its trained frame count (14 for SVD, 25 for SVD-XT); its fps conditioning is
    set so that those frames span the scene, and a static camera asks for less motion.
    """

    name: ClassVar[str] = "stable-video-diffusion"
    version: ClassVar[str] = "1"
    # stable-video-diffusion-img2vid(-xt) weights: Stability AI Community License since July 2024
    # (free under USD 1M annual revenue, enterprise licence above).
    licence: ClassVar[str] = "stability-community"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        runtime: RuntimeLike = None,
        keyframes: ImageEngine | None = None,
        steps: int = 25,
        base_size: tuple[int, int] = (1024, 576),
        noise_aug_strength: float = 0.02,
        decode_chunk_size: int = 8,
    ) -> None:
        loaded = load_pipeline(
            StableVideoDiffusionPipeline,
            model_dir,
            runtime_options(runtime),
            ("StableVideoDiffusionPipeline",),
        )
        super().__init__(loaded, steps)
        self.keyframes = keyframes
        self.base_size = base_size
        self.noise_aug_strength = noise_aug_strength
        self.decode_chunk_size = decode_chunk_size

    def plan(self, request: VideoRequest) -> Shot:
        levels = len(self.pipe.unet.config.block_out_channels) - 1
        grid = max(8, self.pipe.vae_scale_factor * 2**levels)
        width, height = native_size(request.width, request.height, self.base_size, grid)
        frames = self.pipe.unet.config.num_frames
        fps = min(30.0, max(5.0, round(frames / request.duration_s)))
        return Shot(width, height, frames, fps)

    def render(self, requests: Sequence[VideoRequest], shot: Shot) -> list[Take]:
        """One pipeline call per request: the temporal decoder decodes `decode_chunk_size` frames
        at a time across the whole batch, so batch-mates would change each other's frames."""
        return [Take(self._render_one(request, shot)) for request in requests]

    def _render_one(self, request: VideoRequest, shot: Shot) -> np.ndarray:
        out = self.pipe(
            image=Image.fromarray(self._start_image(request, shot)),
            width=shot.width,
            height=shot.height,
            num_frames=shot.frames,
            num_inference_steps=self.steps,
            fps=round(shot.fps),
            motion_bucket_id=64 if request.camera == CameraMove.static else 127,
            noise_aug_strength=self.noise_aug_strength,
            decode_chunk_size=self.decode_chunk_size,
            generator=seeded_generator(request.seed),
            output_type="np",
        )
        return out.frames[0]

    def _start_image(self, request: VideoRequest, shot: Shot) -> np.ndarray:
        if request.keyframe_png is not None:
            image = np.asarray(Image.open(io.BytesIO(request.keyframe_png)).convert("RGB"))
            return cover(image, shot.width, shot.height)
        if self.keyframes is None:
            raise UnsupportedRequest(
                "Stable Video Diffusion animates an image: the scene has no keyframe_png and the"
                " engine has no keyframe engine"
            )
        return self.keyframes.keyframe(request.keyframe_request(shot.width, shot.height))
