"""Animatic shots: one keyframe and an eased camera move, the CPU stand-in for a video model.

The keyframe (the uploaded image, or a generated card) is laid out `MARGIN` times larger than the
frame, so that every move stays inside it; each frame is one warp of that keyframe. The camera is
a centre point and a zoom per frame; a zoom of 1 shows a frame-sized window of the keyframe. A
dolly also magnifies the bottom of the picture (the foreground) faster than the top, a
perspective warp that reads as parallax.

The engine returns `ShotFrames`: the keyframe and the camera path, drawn into pixels where the
frames are first used. The engine's replica does the layout; the render task that composes and
encodes the scene draws it, so a scene crosses the object store as a keyframe and a path
instead of its raw frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import cv2
import numpy as np

from models.base import CameraMove, Frames, VideoRequest
from models.cards import CardImageEngine

MARGIN = 1.1
"""Keyframe size over frame size: the room that pans travel through."""

ZOOM = 1.2
"""The zoom that zoom moves reach (or start from); a dolly goes a little further."""


@dataclass(frozen=True)
class Shot:
    """The camera at the start and at the end of a move, in keyframe pixels off its centre."""

    zoom: tuple[float, float]
    dx: tuple[float, float] = (0.0, 0.0)
    dy: tuple[float, float] = (0.0, 0.0)
    parallax: float = 0.0
    """How much more the bottom edge is magnified than the top at the end of the move."""

    def corners(self, t: float, width: int, height: int, centre: tuple[float, float]) -> np.ndarray:
        """The keyframe points seen at the frame's corners (clockwise from top left) at `t`."""
        zoom, dx, dy = (a + (b - a) * t for a, b in (self.zoom, self.dx, self.dy))
        cx, cy = centre[0] + dx, centre[1] + dy
        half_top = (width - 1) / 2 / zoom
        half_bottom = half_top / (1 + self.parallax * t)
        half_height = (height - 1) / 2 / zoom
        return np.array(
            [
                [cx - half_top, cy - half_height],
                [cx + half_top, cy - half_height],
                [cx + half_bottom, cy + half_height],
                [cx - half_bottom, cy + half_height],
            ],
            np.float32,
        )


class ShotFrames(Frames):
    """Frames drawn on first use of `pixels` from a keyframe and a camera path: `path[i]` is the
    keyframe quad that frame i shows (`Shot.corners`). Pickled, it is the keyframe and the path,
    never the drawn frames."""

    def __init__(
        self,
        keyframe: np.ndarray,
        path: np.ndarray,
        size: tuple[int, int],
        fps: int,
        *,
        perspective: bool,
    ) -> None:
        self.keyframe, self.path, self.size = keyframe, path, size
        self.fps, self.perspective = fps, perspective

    @cached_property
    def pixels(self) -> np.ndarray:  # type: ignore[override]
        width, height = self.size
        pixels = np.empty((len(self.path), height, width, 3), np.uint8)
        scratch = np.empty((height, width, 4), np.uint8)
        for index, source in enumerate(self.path):
            if index and np.array_equal(source, self.path[index - 1]):
                pixels[index] = pixels[index - 1]
            else:
                self._draw(source, scratch, out=pixels[index])
        return pixels

    def __len__(self) -> int:
        return len(self.path)

    def frame(self, index: int) -> np.ndarray:
        if "pixels" in self.__dict__:
            return self.pixels[index]
        width, height = self.size
        out = np.empty((height, width, 3), np.uint8)
        self._draw(self.path[index], np.empty((height, width, 4), np.uint8), out)
        return out

    @cached_property
    def _keyframe_rgba(self) -> np.ndarray:
        """The keyframe with an opaque alpha channel: OpenCV warps 4-channel images on a
        faster, vectorised path than 3-channel ones, to the same RGB values."""
        return cv2.cvtColor(self.keyframe, cv2.COLOR_RGB2RGBA)

    def _draw(self, source: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> None:
        width, height = self.size
        _warp(self._keyframe_rgba, _frame_corners(width, height), source, self.perspective, scratch)
        cv2.cvtColor(scratch, cv2.COLOR_RGBA2RGB, dst=out)

    def __reduce__(self) -> tuple[Any, ...]:
        return _shot_frames, (self.keyframe, self.path, self.size, self.fps, self.perspective)

    def __repr__(self) -> str:
        return f"ShotFrames({len(self.path)} frames at {self.fps} fps)"


def _shot_frames(
    keyframe: np.ndarray, path: np.ndarray, size: tuple[int, int], fps: int, perspective: bool
) -> ShotFrames:
    return ShotFrames(keyframe, path, size, fps, perspective=perspective)


class AnimaticVideoEngine:
    """Renders a `VideoRequest` as a keyframe under a camera move; equal requests, equal frames."""

    name: ClassVar[str] = "animatic"
    version: ClassVar[str] = "1"
    licence: ClassVar[str] = "MIT"

    def __init__(self, cards: CardImageEngine | None = None) -> None:
        self.cards = cards or CardImageEngine()

    def generate(self, request: VideoRequest) -> Frames:
        count = round(request.duration_s * request.fps)
        if count < 1:
            raise ValueError(f"a shot of {request.duration_s} s at {request.fps} fps has no frames")
        keyframe = self._keyframe(request)
        shot = _shot(request.camera, request.width, request.height)
        size = (request.width, request.height)
        centre = ((keyframe.shape[1] - 1) / 2, (keyframe.shape[0] - 1) / 2)
        steps = [_ease(i / (count - 1)) if count > 1 else 0.0 for i in range(count)]
        path = np.stack([shot.corners(t, *size, centre) for t in steps])
        return ShotFrames(keyframe, path, size, request.fps, perspective=shot.parallax > 0)

    def _keyframe(self, request: VideoRequest) -> np.ndarray:
        width, height = round(request.width * MARGIN), round(request.height * MARGIN)
        if request.keyframe_png is not None:
            return cover(decode_image(request.keyframe_png), width, height)
        caption = request.prompt if request.caption is None else request.caption
        return self.cards.keyframe(request.keyframe_request(width, height), caption=caption)


def decode_image(data: bytes) -> np.ndarray:
    """PNG or JPEG bytes as uint8 RGB; grey and alpha images become RGB."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("keyframe is not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale `image` to cover width x height, keeping its aspect, and crop the centre."""
    scale = max(width / image.shape[1], height / image.shape[0])
    size = (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    scaled = cv2.resize(image, size, interpolation=interpolation)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


def _shot(move: CameraMove, width: int, height: int) -> Shot:
    """Start and end of each move; pans travel 90% of the margin so edges never show."""
    travel = 0.9 * (MARGIN - 1) * width / 2
    drift = 0.9 * (MARGIN - 1) * height / 2
    match move:
        case CameraMove.static:
            return Shot((1.0, 1.0))
        case CameraMove.zoom_in:
            return Shot((1.0, ZOOM))
        case CameraMove.zoom_out:
            return Shot((ZOOM, 1.0))
        case CameraMove.pan_left:
            return Shot((1.0, 1.0), dx=(travel, -travel))
        case CameraMove.pan_right:
            return Shot((1.0, 1.0), dx=(-travel, travel))
        case CameraMove.dolly_in:
            return Shot(
                (1.0, ZOOM),
                dx=(-0.3 * travel, 0.3 * travel),
                dy=(drift, -drift),
                parallax=0.12,
            )


def _ease(t: float) -> float:
    """Cosine ease-in-out: the camera starts and stops gently."""
    return 0.5 - 0.5 * math.cos(math.pi * t)


def _frame_corners(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)


def _warp(
    keyframe: np.ndarray,
    frame_corners: np.ndarray,
    source: np.ndarray,
    perspective: bool,
    out: np.ndarray,
) -> None:
    """Fill `out` with the keyframe quad `source`; an affine warp unless the move needs more."""
    height, width = out.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    if perspective:
        matrix = cv2.getPerspectiveTransform(frame_corners, source)
        cv2.warpPerspective(
            keyframe, matrix, (width, height), dst=out, flags=flags, borderMode=cv2.BORDER_REFLECT
        )
    else:
        matrix = cv2.getAffineTransform(frame_corners[:3], source[:3])
        cv2.warpAffine(
            keyframe, matrix, (width, height), dst=out, flags=flags, borderMode=cv2.BORDER_REFLECT
        )
