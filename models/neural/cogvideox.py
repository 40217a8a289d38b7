"""CogVideoX text-to-video and image-to-video through diffusers' CogVideoXPipeline and
CogVideoXImageToVideoPipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

from models.base import VideoRequest
from models.errors import ModelUnavailable
from models.neural.device import RuntimeLike, runtime_options, seeded_generator
from models.neural.diffusion import (
    Shot,
    Take,
    TextOrImageVideoEngine,
    load_pipeline,
)
from models.neural.frames import requested_frames, snap_frames
from models.neural.prompts import describe


class CogVideoXEngine(TextOrImageVideoEngine):
    """The model's trained size (720x480 for CogVideoX 1.0) and up to its trained length
    (49 frames, 8k+1) at 8 fps; scenes of another shape or length are fitted afterwards. A
    scene with an image is animated by the I2V checkpoint in `image_model_dir`
    (CogVideoX-5b-I2V), which this engine requires."""

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
        image_model_dir: str | Path | None = None,
        runtime: RuntimeLike = None,
        steps: int = 50,
        guidance_scale: float = 6.0,
    ) -> None:
        options = runtime_options(runtime)
        loaded = load_pipeline(CogVideoXPipeline, model_dir, options, ("CogVideoXPipeline",))
        if self.apache_2b_only and loaded.pipe.transformer.config.use_rotary_positional_embeddings:
            raise ModelUnavailable(
                f"{loaded.folder} holds a CogVideoX-5b family model (rotary embeddings), whose"
                " weights are under the CogVideoX licence: serve it with CogVideoXEngine"
            )
        super().__init__(loaded, steps)
        self.image_pipe: Any = None
        if image_model_dir is not None:
            expected = ("CogVideoXImageToVideoPipeline",)
            self.image_pipe = load_pipeline(
                CogVideoXImageToVideoPipeline, image_model_dir, options, expected
            ).pipe
        elif not self.apache_2b_only:
            raise ModelUnavailable(
                "CogVideoX animates a scene's image with its image-to-video checkpoint: give a"
                " CogVideoX-5b-I2V folder (cogvideox-i2v)"
            )
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

    def _call(
        self, pipe: Any, requests: Sequence[VideoRequest], shot: Shot, **image: Any
    ) -> list[Take]:
        config = pipe.transformer.config
        out = pipe(
            prompt=[describe(request) for request in requests],
            width=shot.width,
            height=shot.height,
            num_frames=shot.frames,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            use_dynamic_cfg=config.use_rotary_positional_embeddings,
            generator=[seeded_generator(request.seed) for request in requests],
            max_sequence_length=config.max_text_seq_length,
            output_type="np",
            **image,
        )
        return [Take(video[: shot.frames]) for video in out.frames]


class CogVideoX2bEngine(CogVideoXEngine):
    """CogVideoX-2b, whose weights are Apache-2.0; refuses folders of the 5b family. No
    Apache-2.0 image-to-video CogVideoX exists (the I2V checkpoints are 5b, under the CogVideoX
    licence), so this engine takes no scene image and is not chosen for one."""

    name: ClassVar[str] = "cogvideox-2b"
    licence: ClassVar[str] = "apache-2.0"
    apache_2b_only: ClassVar[bool] = True
