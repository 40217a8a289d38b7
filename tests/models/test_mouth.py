"""The mouth lip-sync engine: a found face opens its mouth with the voice, and only then."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from skimage import data

from models.base import Audio, Frames
from models.mouth import NO_FACE, MouthLipSyncEngine, detect_face

ENGINE = MouthLipSyncEngine()
FPS = 24
RATE = 22050
ASTRONAUT_FACE = (175, 70, 93)
"""x, y, size of the face in `skimage.data.astronaut()`, checked by eye."""


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def still(image: np.ndarray, count: int = 12) -> Frames:
    return Frames(np.repeat(image[None], count, axis=0), FPS)


def voice(loudness: np.ndarray) -> Audio:
    """A 180 Hz buzz whose amplitude per frame is `loudness`."""
    envelope = np.repeat(loudness, RATE // FPS)
    t = np.arange(len(envelope)) / RATE
    return Audio((envelope * np.sign(np.sin(2 * np.pi * 180 * t))).astype(np.float32), RATE)


def mouth_change(before: np.ndarray, after: np.ndarray, x: float, y: float, size: float) -> float:
    """Mean absolute change around the mouth of a face box at x, y."""
    top, left = int(y + 0.6 * size), int(x + 0.2 * size)
    window = np.s_[top : top + int(0.45 * size), left : left + int(0.6 * size)]
    return float(np.abs(after[window].astype(int) - before[window].astype(int)).mean())


def test_the_astronauts_face_is_found(astronaut: np.ndarray) -> None:
    face = detect_face(astronaut)
    assert face is not None
    x, y, size = ASTRONAUT_FACE
    assert abs(face.x - x) < 0.15 * size
    assert abs(face.y - y) < 0.15 * size
    assert abs(face.size / size - 1) < 0.2


def test_loud_voice_opens_the_mouth_and_nothing_else(astronaut: np.ndarray) -> None:
    result = ENGINE.sync(still(astronaut), voice(np.full(12, 0.8)))
    assert result.warnings == []
    after = result.frames.pixels[6]
    assert mouth_change(astronaut, after, *ASTRONAUT_FACE) > 10
    x, y, size = ASTRONAUT_FACE
    assert np.array_equal(after[: y + size // 2], astronaut[: y + size // 2])
    assert np.array_equal(after[:, : x - size // 2], astronaut[:, : x - size // 2])


def test_silence_leaves_every_frame_untouched(astronaut: np.ndarray) -> None:
    frames = still(astronaut)
    result = ENGINE.sync(frames, voice(np.zeros(12)))
    assert result.warnings == []
    assert np.array_equal(result.frames.pixels, frames.pixels)


def test_mouth_follows_the_loudness(astronaut: np.ndarray) -> None:
    loudness = np.array([0.0, 0.8] * 6).repeat(4)
    result = ENGINE.sync(still(astronaut, len(loudness)), voice(loudness))
    change = [mouth_change(astronaut, frame, *ASTRONAUT_FACE) for frame in result.frames.pixels]
    loud = [c for c, level in zip(change, loudness, strict=True) if level]
    quiet = [c for c, level in zip(change, loudness, strict=True) if not level]
    assert np.mean(loud) > 2 * np.mean(quiet)


def test_mouth_opens_wider_when_louder(astronaut: np.ndarray) -> None:
    loudness = np.array([0.25] * 12 + [0.8] * 12)
    result = ENGINE.sync(still(astronaut, 24), voice(loudness))
    soft, loud = (
        mouth_change(astronaut, result.frames.pixels[index], *ASTRONAUT_FACE) for index in (10, 22)
    )
    assert loud > 1.3 * soft > 0


def test_face_is_followed_when_the_camera_moves(astronaut: np.ndarray) -> None:
    count = 36
    offsets = np.linspace(0, 300, count).astype(int)
    pixels = np.full((count, 600, 900, 3), 90, np.uint8)
    for frame, offset in zip(pixels, offsets, strict=True):
        frame[40:552, offset : offset + 512] = astronaut
    result = ENGINE.sync(Frames(pixels, FPS), voice(np.full(count, 0.8)))
    x, y, size = ASTRONAUT_FACE
    for index in (0, count // 3, count - 1):
        box = (x + offsets[index], y + 40, size)
        assert mouth_change(pixels[index], result.frames.pixels[index], *box) > 8, index


def test_no_face_gives_a_warning_and_the_frames_unchanged() -> None:
    frames = still(data.coffee())
    result = ENGINE.sync(frames, voice(np.full(12, 0.8)))
    assert result.warnings == [NO_FACE]
    assert np.array_equal(result.frames.pixels, frames.pixels)


def test_input_frames_are_not_modified(astronaut: np.ndarray) -> None:
    frames = still(astronaut)
    ENGINE.sync(frames, voice(np.full(12, 0.8)))
    assert np.array_equal(frames.pixels[6], astronaut)


def test_audio_shorter_than_the_shot_closes_the_mouth(astronaut: np.ndarray) -> None:
    result = ENGINE.sync(still(astronaut, 24), voice(np.full(6, 0.8)))
    assert mouth_change(astronaut, result.frames.pixels[2], *ASTRONAUT_FACE) > 8
    assert np.array_equal(result.frames.pixels[-1], astronaut)


def test_the_result_travels_as_faces_and_openings_and_draws_the_same_frames(
    astronaut: np.ndarray,
) -> None:
    frames = still(astronaut, 24)
    result = ENGINE.sync(frames, voice(np.array([0.0, 0.8] * 12)))
    first, loud = result.frames.frame(0), result.frames.frame(1)
    assert "pixels" not in vars(result.frames)
    assert np.array_equal(first, astronaut)
    assert mouth_change(astronaut, loud, *ASTRONAUT_FACE) > 10
    received = pickle.loads(pickle.dumps(result.frames, protocol=5))
    assert len(received) == 24
    assert np.array_equal(received.pixels[1], loud)
    assert np.array_equal(received.pixels, result.frames.pixels)
