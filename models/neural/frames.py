"""Fitting what a video model makes (its native size, length and rate) to what a scene asks for."""

from __future__ import annotations

import math

import cv2
import numpy as np


def requested_frames(duration_s: float, fps: int | float) -> int:
    return max(1, round(duration_s * fps))


def snap_frames(wanted: int, step: int, most: int) -> int:
    """The nearest count of the form step*k + 1 (k >= 1) not above `most` (itself of that form)."""
    k = max(1, round((wanted - 1) / step))
    return min(step * k + 1, most)


def native_size(width: int, height: int, base: tuple[int, int], multiple: int) -> tuple[int, int]:
    """A size with the model's pixel budget (`base` area), the request's aspect, on its grid."""
    area = base[0] * base[1]
    aspect = width / height
    w = math.sqrt(area * aspect)
    h = w / aspect
    return max(multiple, round(w / multiple) * multiple), max(
        multiple, round(h / multiple) * multiple
    )


def to_uint8(video: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] to uint8."""
    return (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover width x height and crop the centre, like CSS object-fit: cover."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    crop_w, crop_h = min(w, round(width / scale)), min(h, round(height / scale))
    x, y = (w - crop_w) // 2, (h - crop_h) // 2
    crop = image[y : y + crop_h, x : x + crop_w]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(crop, (width, height), interpolation=interpolation)


def fit_video(video: np.ndarray, width: int, height: int, count: int) -> np.ndarray:
    """Cover-fit every frame and stretch the clip over `count` frames (nearest frame in time)."""
    source = len(video)
    index = np.round(np.linspace(0, source - 1, count)).astype(int) if count > 1 else [0]
    return np.stack([cover(video[i], width, height) for i in index])
