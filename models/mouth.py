"""Lip-sync without a model: find the face, then open its mouth as loud as the voice is.

OpenCV 5 dropped `CascadeClassifier` and ships no detector weights, so faces are found with
OpenCV's LBP frontal-face cascade as scikit-image bundles and evaluates it. The face is detected
every `redetect_every` frames (on a reduced copy) and its box interpolated in between, so a moving
camera is followed. Per frame, the jaw below the lips is pushed down by the mouth opening, a
smooth displacement that fades out below the chin, and the gap is filled with a feathered dark
mouth with a hint of teeth.

The result is `MouthFrames`: the input frames and a face and an opening per frame, drawn where the
frames are first used, so that the replica sends back a few kB rather than the frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, ClassVar

import cv2
import numpy as np
from skimage.data import lbp_frontal_face_cascade_filename
from skimage.feature import Cascade

from models.base import Audio, Frames, LipSyncResult

NO_FACE = "no face found: lip-sync skipped"

DETECT_WIDTH = 400
"""Frames are reduced to this width for detection; faces narrower than 6% of it are missed."""

NEAR_WIDTH = 200
"""Searching near a known face, the crop (three faces wide) is reduced to this width."""

MIN_SUPPORT = 4
"""Raw cascade hits that a face needs; the false hits seen on cloth gathered five at most."""

MOUTH_COLOUR = np.array([45, 12, 16], np.float32)
TEETH_COLOUR = np.array([225, 215, 200], np.float32)


@dataclass(frozen=True)
class Face:
    """A face box in frame pixels."""

    x: float
    y: float
    size: float

    @property
    def mouth(self) -> tuple[float, float]:
        """Where the lips meet: the cascade's box spans brows to lips, a little above its base."""
        return self.x + 0.5 * self.size, self.y + 0.78 * self.size

    @property
    def mouth_half_width(self) -> float:
        return 0.24 * self.size


class MouthLipSyncEngine:
    name: ClassVar[str] = "mouth"
    version: ClassVar[str] = "1"
    licence: ClassVar[str] = "BSD-3-Clause"

    def __init__(self, redetect_every: int = 12, max_open: float = 0.14) -> None:
        """`max_open` is the widest opening, as a share of the face box."""
        self.redetect_every = redetect_every
        self.max_open = max_open

    def sync(self, frames: Frames, audio: Audio) -> LipSyncResult:
        faces = self._track(frames)
        if faces is None:
            return LipSyncResult(frames, [NO_FACE])
        openness = mouth_openness(audio, len(faces), frames.fps)
        openings = [
            amount * self.max_open * face.size if amount > 0.02 else 0.0
            for face, amount in zip(faces, openness, strict=True)
        ]
        return LipSyncResult(MouthFrames(frames, faces, openings))

    def _track(self, frames: Frames) -> list[Face] | None:
        """One face per frame, or None when no key frame shows one.

        Key frames every `redetect_every` frames are searched near the last face (the whole frame
        when that fails); a key frame equal to the previous one keeps its result. Boxes between key
        frames are interpolated.
        """
        count = len(frames)
        keys = sorted({*range(0, count, self.redetect_every), count - 1})
        found: dict[int, Face] = {}
        last: Face | None = None
        previous: np.ndarray | None = None
        for index in keys:
            image = frames.frame(index)
            if previous is None or not np.array_equal(image, previous):
                near = last and detect_face(image, near=last)
                last = near or detect_face(image)
            previous = image
            if last is not None:
                found[index] = last
        if not found:
            return None
        known = sorted(found)
        boxes = np.array([[found[i].x, found[i].y, found[i].size] for i in known])
        times = np.arange(count)
        columns = [np.interp(times, known, boxes[:, column]) for column in range(3)]
        return [Face(*values) for values in zip(*columns, strict=True)]


class MouthFrames(Frames):
    """`base` with the mouth of `faces[i]` opened by `openings[i]` pixels in frame i, drawn on
    first use of `pixels`. Pickled, it is `base` (as it pickles), the faces and the openings."""

    def __init__(self, base: Frames, faces: list[Face], openings: list[float]) -> None:
        self.base, self.faces, self.openings, self.fps = base, faces, openings, base.fps

    @cached_property
    def pixels(self) -> np.ndarray:  # type: ignore[override]
        pixels = np.array(self.base.pixels, copy=True)
        for frame, face, opening in zip(pixels, self.faces, self.openings, strict=True):
            if opening > 0:
                _open_mouth(frame, face, opening)
        return pixels

    def __len__(self) -> int:
        return len(self.faces)

    def frame(self, index: int) -> np.ndarray:
        if "pixels" in self.__dict__:
            return self.pixels[index]
        frame = np.array(self.base.frame(index), copy=True)
        if self.openings[index] > 0:
            _open_mouth(frame, self.faces[index], self.openings[index])
        return frame

    def __reduce__(self) -> tuple[Any, ...]:
        return MouthFrames, (self.base, self.faces, self.openings)

    def __repr__(self) -> str:
        return f"MouthFrames({len(self.faces)} frames at {self.fps} fps)"


def detect_face(image: np.ndarray, near: Face | None = None) -> Face | None:
    """The best-supported frontal face in an RGB image (only around `near`, if given), or None.

    The cascade's raw hits are not merged; the face is the hit with the most hits of a similar
    place and size around it, which sets faces apart from the odd false hit on cloth or foliage.
    """
    left, top, width = 0, 0, DETECT_WIDTH
    if near is not None:
        left, top = max(0, int(near.x - near.size)), max(0, int(near.y - near.size))
        image = image[top : int(near.y + 2 * near.size), left : int(near.x + 2 * near.size)]
        width = NEAR_WIDTH
    scale = min(1.0, width / max(image.shape[1], 1))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    shortest = min(grey.shape)
    if shortest < 24:
        return None
    hits = _cascade().detect_multi_scale(
        img=grey,
        scale_factor=1.2,
        step_ratio=1,
        min_size=(24, 24),
        max_size=(shortest, shortest),
        min_neighbor_number=1,
        intersection_score_threshold=1.01,
    )
    boxes = np.array([[hit["c"], hit["r"], hit["width"]] for hit in hits], float).reshape(-1, 3)
    best = _best_supported(boxes)
    if best is None:
        return None
    x, y, size = (float(value) / scale for value in best)
    return Face(x + left, y + top, size)


def _best_supported(boxes: np.ndarray) -> np.ndarray | None:
    """The mean of the largest group of boxes around one box: a close centre, a similar size."""
    if len(boxes) == 0:
        return None
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    close = np.abs(centres[:, None] - centres[None]).max(axis=2) < 0.3 * boxes[None, :, 2]
    alike = np.abs(np.log(boxes[:, None, 2] / boxes[None, :, 2])) < 0.3
    support = close & alike
    best = int(np.argmax(support.sum(axis=0)))
    if support[:, best].sum() < MIN_SUPPORT:
        return None
    return boxes[support[:, best]].mean(axis=0)


@cache
def _cascade() -> Cascade:
    return Cascade(lbp_frontal_face_cascade_filename())


def mouth_openness(audio: Audio, count: int, fps: int) -> np.ndarray:
    """Per frame, how open the mouth is (0 to 1): the voice's loudness over that frame.

    Loudness is RMS against the clip's own loud level, with a noise gate, then smoothed with a
    fast attack and a slower release so the mouth snaps open and eases shut.
    """
    edges = np.round(np.arange(count + 1) * audio.sample_rate / fps).astype(int)
    edges = np.minimum(edges, len(audio.samples))
    squares = np.concatenate([[0.0], np.cumsum(audio.samples.astype(np.float64) ** 2)])
    lengths = np.maximum(edges[1:] - edges[:-1], 1)
    rms = np.sqrt((squares[edges[1:]] - squares[edges[:-1]]) / lengths)
    loud = max(float(np.percentile(rms, 95)), 0.05)
    level = np.clip((rms - 0.1 * loud) / (0.9 * loud), 0.0, 1.0)
    smoothed = np.empty_like(level)
    current = 0.0
    for index, target in enumerate(level):
        rate = 0.7 if target > current else 0.35
        current += rate * (target - current)
        smoothed[index] = current
    return smoothed


def _open_mouth(frame: np.ndarray, face: Face, opening: float) -> None:
    """Open the mouth of `face` by `opening` pixels, in place."""
    mx, my = face.mouth
    left = max(0, int(mx - 1.6 * face.mouth_half_width))
    right = min(frame.shape[1], int(mx + 1.6 * face.mouth_half_width) + 1)
    top = max(0, int(my - 0.1 * face.size))
    bottom = min(frame.shape[0], int(face.y + 1.35 * face.size))
    if right - left < 4 or bottom - top < 4:
        return
    region = frame[top:bottom, left:right]
    xs = np.arange(left, right, dtype=np.float32)[None, :]
    ys = np.arange(top, bottom, dtype=np.float32)[:, None]
    region[:] = _drop_jaw(region, xs, ys, face, opening, bottom)
    _paint_mouth(region, xs, ys, face, opening)


def _drop_jaw(
    region: np.ndarray, xs: np.ndarray, ys: np.ndarray, face: Face, opening: float, bottom: int
) -> np.ndarray:
    """Shift what is below the lips down by `opening`, fading out sideways and towards `bottom`.

    `xs` and `ys` are the frame coordinates of the region's columns and rows.
    """
    mx, my = face.mouth
    sideways = np.exp(-(((xs - mx) / face.mouth_half_width) ** 2))
    below = np.clip((ys - my) / max(0.6 * opening, 2.0) + 0.5, 0.0, 1.0)
    fade = np.clip((bottom - ys) / max(bottom - my, 1.0), 0.0, 1.0)
    shift = opening * sideways * below * np.sqrt(fade)
    map_x = np.broadcast_to(xs - xs[0, 0], shift.shape).astype(np.float32)
    map_y = (ys - ys[0, 0] - shift).astype(np.float32)
    return cv2.remap(region, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _paint_mouth(
    region: np.ndarray, xs: np.ndarray, ys: np.ndarray, face: Face, opening: float
) -> None:
    """A feathered dark oval between the lips, with a light band of upper teeth."""
    mx, my = face.mouth
    half_width = face.mouth_half_width * (0.85 - 0.1 * min(opening / face.mouth_half_width, 1.0))
    half_height = max(opening / 2, 1.0)
    distance = np.sqrt(((xs - mx) / half_width) ** 2 + ((ys - my - opening / 2) / half_height) ** 2)
    inside = np.clip((1.0 - distance) * max(half_height, 2.0) / 2.0, 0.0, 1.0)[..., None]
    teeth = np.clip(1.0 - (ys - my) / max(0.18 * opening, 1.0), 0.0, 1.0)[..., None]
    colour = (1 - teeth) * MOUTH_COLOUR + teeth * TEETH_COLOUR
    region[:] = (region * (1 - inside) + colour * inside).astype(np.uint8)
