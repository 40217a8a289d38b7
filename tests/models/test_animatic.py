"""The animatic engine: a keyframe under an eased camera move, fast and border-free."""

from __future__ import annotations

import pickle
import time

import cv2
import numpy as np
import pytest

from models.animatic import MARGIN, AnimaticVideoEngine
from models.base import CameraMove, ImageRequest, Mood, VideoRequest

ENGINE = AnimaticVideoEngine()
MOVES = [move for move in CameraMove if move is not CameraMove.static]


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def shot(camera: CameraMove = CameraMove.static, **fields: object) -> np.ndarray:
    request = {
        "prompt": "a lamp on the river",
        "title": "The Lamp",
        "camera": camera,
        "width": 160,
        "height": 90,
        "fps": 12,
        "duration_s": 1.0,
        **fields,
    }
    frames = ENGINE.generate(VideoRequest.model_validate(request))
    assert frames.fps == request["fps"]
    return frames.pixels


def keyframe_for(width: int, height: int, fill: np.ndarray) -> bytes:
    """A PNG exactly the size the engine lays keyframes out at, so it is used as drawn."""
    size = (round(height * MARGIN), round(width * MARGIN))
    return png(np.broadcast_to(fill, (*size, 3)).astype(np.uint8).copy())


@pytest.mark.parametrize(
    ("width", "height", "fps", "duration_s", "count"),
    [
        (160, 90, 12, 1.0, 12),
        (90, 160, 24, 0.5, 12),
        (120, 120, 25, 0.98, 24),
        (64, 36, 30, 2.0, 60),
    ],
)
def test_frame_count_and_shape(
    width: int, height: int, fps: int, duration_s: float, count: int
) -> None:
    pixels = shot(CameraMove.zoom_in, width=width, height=height, fps=fps, duration_s=duration_s)
    assert pixels.shape == (count, height, width, 3)
    assert pixels.dtype == np.uint8


def test_static_frames_do_not_change() -> None:
    pixels = shot(CameraMove.static)
    assert all(np.array_equal(frame, pixels[0]) for frame in pixels)


@pytest.mark.parametrize("camera", MOVES)
def test_moves_change_frames_and_ease_in(camera: CameraMove) -> None:
    pixels = shot(camera, duration_s=2.0).astype(int)
    steps = [np.abs(pixels[i + 1] - pixels[i]).mean() for i in range(len(pixels) - 1)]
    assert np.abs(pixels[-1] - pixels[0]).mean() > 3
    assert steps[0] < steps[len(steps) // 2]
    assert steps[-1] < steps[len(steps) // 2]


@pytest.mark.parametrize(("camera", "sign"), [(CameraMove.pan_right, 1), (CameraMove.pan_left, -1)])
def test_pans_travel_their_way(camera: CameraMove, sign: int) -> None:
    ramp = np.linspace(0, 255, round(160 * MARGIN))[None, :, None]
    pixels = shot(camera, keyframe_png=keyframe_for(160, 90, ramp)).astype(float)
    assert sign * (pixels[-1].mean() - pixels[0].mean()) > 5


@pytest.mark.parametrize(
    ("camera", "grows"),
    [(CameraMove.zoom_in, True), (CameraMove.zoom_out, False), (CameraMove.dolly_in, True)],
)
def test_zooms_scale_the_picture(camera: CameraMove, grows: bool) -> None:
    disc = np.zeros((round(180 * MARGIN), round(320 * MARGIN), 3), np.uint8)
    cv2.circle(disc, (disc.shape[1] // 2, disc.shape[0] // 2), 40, (255, 255, 255), -1)
    pixels = shot(camera, width=320, height=180, keyframe_png=png(disc))
    first, last = (int((frame[..., 0] > 128).sum()) for frame in (pixels[0], pixels[-1]))
    assert (last > 1.2 * first) if grows else (first > 1.2 * last)


@pytest.mark.parametrize("camera", MOVES)
def test_moves_never_reach_the_keyframe_edge(camera: CameraMove) -> None:
    """The keyframe's one-pixel rim is red; a frame showing red has left the keyframe."""
    width, height = 640, 360
    image = np.full((round(height * MARGIN), round(width * MARGIN), 3), 128, np.uint8)
    image[[0, -1], :] = image[:, [0, -1]] = (255, 0, 0)
    pixels = shot(camera, width=width, height=height, keyframe_png=png(image)).astype(int)
    assert (pixels[..., 0] - pixels[..., 1]).max() < 10


def test_uploaded_keyframe_is_cover_cropped_to_the_frame() -> None:
    """A landscape image in a portrait frame: the centre third fills it, the sides are cut."""
    stripes = np.zeros((90, 480, 3), np.uint8)
    stripes[:, :160] = (255, 0, 0)
    stripes[:, 160:320] = (0, 255, 0)
    stripes[:, 320:] = (0, 0, 255)
    pixels = shot(CameraMove.static, width=90, height=160, keyframe_png=png(stripes))
    assert pixels[0, ..., 1].mean() > 250
    assert pixels[0, ..., [0, 2]].max() < 5


def test_equal_requests_give_equal_frames() -> None:
    assert np.array_equal(shot(CameraMove.dolly_in), shot(CameraMove.dolly_in))


def test_undecodable_keyframe_is_refused() -> None:
    with pytest.raises(ValueError, match="decodable"):
        shot(keyframe_png=b"not an image")


def test_720p_renders_faster_than_real_time() -> None:
    started = time.perf_counter()
    pixels = shot(CameraMove.dolly_in, width=1280, height=720, fps=24, duration_s=2.0)
    elapsed = time.perf_counter() - started
    assert len(pixels) == 48
    assert elapsed < 2.0


@pytest.mark.parametrize("camera", [CameraMove.static, CameraMove.pan_left, CameraMove.dolly_in])
def test_a_shot_travels_as_its_keyframe_and_path_and_draws_the_same_frames(
    camera: CameraMove,
) -> None:
    request = VideoRequest(
        prompt="a lamp", camera=camera, width=320, height=180, fps=12, duration_s=2.0
    )
    frames = ENGINE.generate(request)
    sent = pickle.dumps(frames, protocol=5)
    single = [frames.frame(i) for i in (0, 11, 23)]
    assert "pixels" not in vars(frames)  # drawing one frame draws only that one
    assert len(frames) == 24
    assert len(sent) < 24 * 320 * 180 * 3 / 5
    received = pickle.loads(sent)
    assert np.array_equal(received.pixels, frames.pixels)
    for index, image in zip((0, 11, 23), single, strict=True):
        assert np.array_equal(image, frames.pixels[index])


def test_a_shot_without_a_keyframe_asks_for_one_in_its_own_words() -> None:
    shot = VideoRequest(
        prompt="sea", title="Dawn", mood=Mood.sad, width=64, height=36, fps=12, duration_s=1,
        seed=7,
    )  # fmt: skip
    assert shot.keyframe_request(80, 45) == ImageRequest(
        prompt="sea", title="Dawn", mood=Mood.sad, width=80, height=45, seed=7
    )
