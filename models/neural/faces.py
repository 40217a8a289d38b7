"""Faces in video frames for the lip-sync engines: detection, tracking over a clip, blend weights.

The engines find the largest face with a frontal-face cascade every few frames, hold each box over
its neighbours and average it with them, then pad it down to take in the chin, as the Wav2Lip and
MuseTalk repositories do around their own detectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int


class FaceDetector:
    """A frontal-face cascade: OpenCV's Haar cascade where the cv2 build ships it (OpenCV 4),
    else scikit-image's LBP cascade (OpenCV 5 wheels dropped CascadeClassifier)."""

    def __init__(self) -> None:
        self._haar: Any = None
        self._lbp: Any = None
        haar_dir = getattr(getattr(cv2, "data", None), "haarcascades", "")
        haar_file = Path(haar_dir) / "haarcascade_frontalface_default.xml"
        if hasattr(cv2, "CascadeClassifier") and haar_file.is_file():
            self._haar = cv2.CascadeClassifier(str(haar_file))
            return
        try:
            from skimage import data
            from skimage.feature import Cascade
        except ImportError:
            return
        self._lbp = Cascade(data.lbp_frontal_face_cascade_filename())

    @property
    def available(self) -> bool:
        return self._haar is not None or self._lbp is not None

    def largest_face(self, rgb: np.ndarray) -> Box | None:
        """Detect on a copy at most 360 px high, return the largest face in frame pixels."""
        scale = min(1.0, 360 / rgb.shape[0])
        gray = cv2.cvtColor(cv2.resize(rgb, None, fx=scale, fy=scale), cv2.COLOR_RGB2GRAY)
        side = max(24, int(min(gray.shape) * 0.08))
        if self._haar is not None:
            found = [
                tuple(b) for b in self._haar.detectMultiScale(gray, 1.1, 5, minSize=(side, side))
            ]
        else:
            hits = self._lbp.detect_multi_scale(
                img=gray, scale_factor=1.2, step_ratio=1, min_size=(side, side), max_size=gray.shape
            )
            found = [(h["c"], h["r"], h["width"], h["height"]) for h in hits]
        if not found:
            return None
        x, y, w, h = max(found, key=lambda b: b[2] * b[3])
        return Box(round(x / scale), round(y / scale), round(w / scale), round(h / scale))


def track_faces(
    detector: FaceDetector, pixels: np.ndarray, detect_every: int, smooth: int
) -> list[Box | None]:
    """The face box of each frame, None where there is none: detect every `detect_every` frames,
    hold each box over its neighbours, then average each box with its neighbours (as the Wav2Lip
    repository does over 5 frames) to stop jitter; each box is padded down to take in the chin."""
    height, width = pixels.shape[1:3]
    samples = {i: detector.largest_face(pixels[i]) for i in range(0, len(pixels), detect_every)}
    nearest = [samples[min(samples, key=lambda s: abs(s - i))] for i in range(len(pixels))]
    boxes: list[Box | None] = []
    for i, box in enumerate(nearest):
        if box is None:
            boxes.append(None)
            continue
        window = [b for b in nearest[max(0, i - smooth // 2) : i + smooth // 2 + 1] if b]
        mean = np.mean([(b.x, b.y, b.w, b.h) for b in window], axis=0).round().astype(int)
        boxes.append(_pad_to_chin(Box(*mean), height, width))
    return boxes


def _pad_to_chin(box: Box, height: int, width: int) -> Box:
    """Cascade boxes stop near the chin; the models want it in (the repositories pad 10 px
    below)."""
    y2 = min(height, box.y + box.h + max(2, box.h // 10))
    x1, x2, y1 = max(0, box.x), min(width, box.x + box.w), max(0, box.y)
    return Box(x1, y1, x2 - x1, y2 - y1)


def feather(box: Box) -> np.ndarray:
    """Blend weights over the box: 1 inside, ramping to 0 at its edges."""
    ramp = max(2.0, 0.12 * min(box.w, box.h))
    ys = np.minimum(np.arange(box.h), np.arange(box.h)[::-1]) + 0.5
    xs = np.minimum(np.arange(box.w), np.arange(box.w)[::-1]) + 0.5
    return np.clip(np.minimum.outer(ys, xs) / ramp, 0.0, 1.0)[..., None]
