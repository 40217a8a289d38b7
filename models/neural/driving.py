"""Driving motions for character animation: the studio's head-motion template, a bounded driving
video, and the square around a portrait's head that the motion moves.

The template is a nod, a tilt and a sway (a few degrees, a few per cent of the head) drawn on the
portrait itself: each driving frame is the portrait with its head region turned and shifted by
the template's pose at that time, feathered into the still background. Animation is relative to
the first driving frame, so a model sees the portrait's own face move and moves it the same way,
whatever keypoints its checkpoint learned.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import cv2
import numpy as np
from av.container import InputContainer

from models.base import Frames
from models.errors import DrivingVideoRefused
from models.neural.faces import Box

DRIVING_SIDE = 256  # driving frames are kept at the side FOMM's published models work at


@dataclass(frozen=True)
class DrivingLimits:
    """What a driving video may be: its file, its frame size and its length."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 1920 * 1080
    max_frames: int = 750  # 30 s at 25 fps


def read_driving_video(data: bytes, limits: DrivingLimits = DrivingLimits()) -> Frames:
    """A driving video's frames, each centre-cropped to a square and scaled to DRIVING_SIDE;
    refused (DrivingVideoRefused) past the limits, without a video stream or undecodable."""
    frames: list[np.ndarray] = []
    with _opened(data, limits) as (container, stream):
        fps = round(float(stream.average_rate or 25))
        for frame in container.decode(stream):
            if len(frames) == limits.max_frames:
                raise DrivingVideoRefused(
                    f"the driving video is longer than {limits.max_frames} frames"
                )
            frames.append(_square(frame.to_ndarray(format="rgb24")))
    if not frames:
        raise DrivingVideoRefused("the driving video has no frames")
    return Frames(np.stack(frames), max(1, fps))


def probe_driving_video(data: bytes, limits: DrivingLimits = DrivingLimits()) -> None:
    """`read_driving_video`'s checks that its header can answer (size, stream, frame size, the
    frame count it declares), without decoding a frame: for a render's submission."""
    with _opened(data, limits) as (container, stream):
        seconds = (container.duration or 0) / av.time_base
        declared = stream.frames or round(seconds * float(stream.average_rate or 25))
        if declared > limits.max_frames:
            raise DrivingVideoRefused(
                f"the driving video is longer than {limits.max_frames} frames"
            )


@contextmanager
def _opened(data: bytes, limits: DrivingLimits) -> Iterator[tuple[InputContainer, av.VideoStream]]:
    """The video and its first video stream, once the file and frame sizes are within the limits;
    any decoding error inside the block is the video's fault."""
    if len(data) > limits.max_bytes:
        raise DrivingVideoRefused(f"the driving video is larger than {limits.max_bytes} bytes")
    try:
        with av.open(io.BytesIO(data), "r") as container:
            if not container.streams.video:
                raise DrivingVideoRefused("the driving video has no video stream")
            stream = container.streams.video[0]
            if stream.width * stream.height > limits.max_pixels:
                raise DrivingVideoRefused(
                    f"the driving video's frames ({stream.width}x{stream.height}) exceed"
                    f" {limits.max_pixels} pixels"
                )
            yield container, stream
    except av.FFmpegError as error:
        raise DrivingVideoRefused(f"the driving video does not decode: {error}") from None


def _square(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = rgb[top : top + side, left : left + side]
    return cv2.resize(crop, (DRIVING_SIDE, DRIVING_SIDE), interpolation=cv2.INTER_AREA)


def loop(pixels: np.ndarray, count: int) -> np.ndarray:
    """`count` frames of a driving clip played forwards then backwards, so a loop never jumps."""
    if len(pixels) == 1:
        return np.repeat(pixels, count, axis=0)
    period = 2 * len(pixels) - 2
    phase = np.arange(count) % period
    return pixels[np.where(phase < len(pixels), phase, period - phase)]


def head_crop(face: Box, height: int, width: int) -> Box:
    """The square around a detected face that holds the whole head, as FOMM's training crops
    do (crop-video.py widens the face box): 1.8 times the face, centred on it, kept inside
    the frame."""
    side = min(height, width, round(1.8 * max(face.w, face.h)))
    centre_x, centre_y = face.x + face.w / 2, face.y + face.h / 2
    x = int(np.clip(round(centre_x - side / 2), 0, width - side))
    y = int(np.clip(round(centre_y - side / 2), 0, height - side))
    return Box(x, y, side, side)


def head_pose(seconds: float) -> tuple[float, float, float]:
    """The template at a time: (tilt in degrees, sway and nod as fractions of the head's size).
    Periods of 4 s and 2.5 s keep it from looking mechanical; everything is zero at 0 s."""
    tilt = 4.0 * math.sin(2 * math.pi * seconds / 4.0)
    sway = 0.03 * math.sin(2 * math.pi * seconds / 4.0)
    nod = 0.025 * math.sin(2 * math.pi * seconds / 2.5)
    return tilt, sway, nod


def head_motion(portrait: np.ndarray, count: int, fps: int) -> np.ndarray:
    """`count` driving frames (T, H, W, 3): the portrait's head region (an ellipse around its
    centre, feathered) moved by the template's pose, over the still portrait."""
    height, width = portrait.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = np.hypot((xx - width / 2) / (0.4 * width), (yy - height / 2) / (0.48 * height))
    head = np.clip((1.0 - distance) / 0.2, 0.0, 1.0)[..., None]
    still = portrait.astype(np.float32)
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        tilt, sway, nod = head_pose(i / fps)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), tilt, 1.0)
        matrix[:, 2] += (sway * width, nod * height)
        moved = cv2.warpAffine(portrait, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        frames[i] = np.clip(head * moved + (1.0 - head) * still + 0.5, 0, 255).astype(np.uint8)
    return frames
