"""Loading diffusers pipelines from local folders, and the steps every video engine shares."""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from models.base import Audio, Frames, SoundFrames, VideoRequest
from models.errors import ModelUnavailable, UnsupportedRequest
from models.neural.device import Runtime, RuntimeOptions, compile_module, pick_runtime, pin_sdpa
from models.neural.folders import model_revision, resolve_model_dir
from models.neural.frames import (
    cover,
    fit_video,
    native_size,
    requested_frames,
    snap_frames,
    to_uint8,
)


@dataclass(frozen=True)
class LoadedPipeline:
    pipe: Any
    runtime: Runtime
    folder: Path
    revision: str


def load_pipeline(
    loader: Any, model_dir: str | Path, options: RuntimeOptions, expected: tuple[str, ...] = ()
) -> LoadedPipeline:
    """Load a diffusers pipeline folder with `loader.from_pretrained`, never touching a hub.

    `expected` lists the pipeline class names the folder may hold (empty: any). Every failure to
    read the folder becomes ModelUnavailable with the reason.
    """
    folder = resolve_model_dir(model_dir, ("model_index.json",))
    try:
        held = json.loads((folder / "model_index.json").read_text())["_class_name"]
    except (ValueError, KeyError) as error:
        raise ModelUnavailable(f"{folder}/model_index.json is unreadable: {error}") from error
    if expected and held not in expected:
        raise ModelUnavailable(f"{folder} holds a {held}, expected {' or '.join(expected)}")
    runtime = pick_runtime(options)
    try:
        pipe = loader.from_pretrained(folder, dtype=runtime.dtype, local_files_only=True)
    except Exception as error:
        raise ModelUnavailable(
            f"cannot load {held} from {folder}: {type(error).__name__}: {error}"
        ) from error
    pipe.to(runtime.device)
    pipe.set_progress_bar_config(disable=True)
    _prepare(pipe, runtime, options)
    return LoadedPipeline(pipe, runtime, folder, model_revision(folder))


def _prepare(pipe: Any, runtime: Runtime, options: RuntimeOptions) -> None:
    vae: Any = getattr(pipe, "vae", None)
    # Autoencoders without tiling or slicing (SVD's temporal decoder) lack these flags.
    if options.vae_tiling and hasattr(vae, "use_tiling"):
        vae.enable_tiling()
    if options.vae_slicing and hasattr(vae, "use_slicing"):
        vae.enable_slicing()
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            pin_sdpa(component)
    denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    if runtime.compile and denoiser is not None:
        compile_module(denoiser)


def start_image(request: VideoRequest, shot: Shot) -> Image.Image:
    """The scene's image, cover-fitted to the native shot: what an image-to-video pipeline
    starts from."""
    assert request.keyframe_png is not None
    pixels = np.asarray(Image.open(io.BytesIO(request.keyframe_png)).convert("RGB"))
    return Image.fromarray(cover(pixels, shot.width, shot.height))


@dataclass(frozen=True)
class Take:
    """One request's render at the native shot: float frames (T, H, W, 3) in [0, 1], and the
    sound the model made with them where it makes any."""

    video: np.ndarray
    sound: Audio | None = None


@dataclass(frozen=True)
class Shot:
    """What the model renders natively before fitting to the request."""

    width: int
    height: int
    frames: int
    fps: float


class DiffusionVideoEngine(ABC):
    """A video engine on a diffusers pipeline: plan the native shot, render it, fit it."""

    name: ClassVar[str]
    version: ClassVar[str]
    licence: ClassVar[str]

    def __init__(self, loaded: LoadedPipeline, steps: int) -> None:
        self.pipe = loaded.pipe
        self.runtime = loaded.runtime
        self.model_revision = loaded.revision
        self.steps = steps

    def generate(self, request: VideoRequest) -> Frames:
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: Sequence[VideoRequest]) -> list[Frames]:
        """One `render` per group of requests with the same native shot and the same kind of
        start (a scene's image or none), so that `render` sends each group to one pipeline.
        Each request keeps its own seeded generator, so it draws the same noise as it would
        alone."""
        groups: dict[tuple[Shot, bool], list[int]] = {}
        for index, request in enumerate(requests):
            key = (self.plan(request), request.keyframe_png is not None)
            groups.setdefault(key, []).append(index)
        made: dict[int, Frames] = {}
        for (shot, _), indices in groups.items():
            with torch.inference_mode():
                takes = self.render([requests[i] for i in indices], shot)
            for index, take in zip(indices, takes, strict=True):
                made[index] = _fit(requests[index], take)
        return [made[i] for i in range(len(requests))]

    @abstractmethod
    def plan(self, request: VideoRequest) -> Shot:
        """The native size, frame count and rate for this request."""

    @abstractmethod
    def render(self, requests: Sequence[VideoRequest], shot: Shot) -> list[Take]:
        """A take for each request, in one pipeline call where the pipeline allows it. The
        requests all start from an image (`keyframe_png`), which the engine's image-to-video
        pipeline must use, or none do."""


class TextOrImageVideoEngine(DiffusionVideoEngine):
    """An engine with a text-to-video pipeline (`pipe`) and, when it has one, an image-to-video
    pipeline (`image_pipe`) for the scenes that start from a picture."""

    image_pipe: Any | None

    def render(self, requests: Sequence[VideoRequest], shot: Shot) -> list[Take]:
        """Text-to-video in one call for the batch; image-to-video one request per call (the
        pipelines take a single image)."""
        if requests[0].keyframe_png is None:
            return self._call(self.pipe, requests, shot)
        if self.image_pipe is None:
            raise UnsupportedRequest(f"{self.name} has no image-to-video model for an image")
        return [self._call(self.image_pipe, [r], shot, image=start_image(r, shot))[0]
                for r in requests]  # fmt: skip

    @abstractmethod
    def _call(
        self, pipe: Any, requests: Sequence[VideoRequest], shot: Shot, **image: Any
    ) -> list[Take]:
        """One pipeline call for `requests` (with `image=` for image-to-video)."""


def free_shot(
    request: VideoRequest,
    base_size: tuple[int, int],
    grid: int,
    step: int,
    native_fps: float,
    max_frames: int,
) -> Shot:
    """The native shot of a model that takes any size on a `grid` and frame counts of
    `step`k+1: the request's aspect with the pixels of `base_size`, as many frames as the scene
    needs at `native_fps` up to `max_frames`, slowed down when the scene is longer than that."""
    width, height = native_size(request.width, request.height, base_size, grid)
    frames = snap_frames(requested_frames(request.duration_s, native_fps), step, max_frames)
    fps = min(native_fps, (frames - 1) / request.duration_s) if frames > 1 else 1.0
    return Shot(width, height, frames, max(1.0, fps))


def _fit(request: VideoRequest, take: Take) -> Frames:
    """The take at the request's size, frame count and rate; its sound fitted to the same
    length."""
    count = requested_frames(request.duration_s, request.fps)
    pixels = fit_video(to_uint8(take.video), request.width, request.height, count)
    if take.sound is None:
        return Frames(pixels=pixels, fps=request.fps)
    rate = take.sound.sample_rate
    samples = np.zeros(round(count / request.fps * rate), np.float32)
    kept = take.sound.samples[: len(samples)]
    samples[: len(kept)] = kept
    return SoundFrames(pixels=pixels, fps=request.fps, sound=Audio(samples, rate))
