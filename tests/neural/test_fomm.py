"""FOMM on a random checkpoint in the published format, on the astronaut photograph."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from models.base import Audio, Frames, StillFrames
from models.errors import DrivingVideoRefused, ModelUnavailable
from models.neural.driving import (
    DRIVING_SIDE,
    DrivingLimits,
    head_motion,
    probe_driving_video,
    read_driving_video,
)
from models.neural.fomm import FommEngine
from tests.media import encode_mp4

SILENCE = Audio(np.zeros(1600, np.float32), 16000)


@pytest.fixture(scope="module")
def engine(tiny: Callable[[str], Path]) -> FommEngine:
    return FommEngine(tiny("fomm"), batch_size=4)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """The astronaut's head and shoulders, as a 160 px square."""
    return np.ascontiguousarray(data.astronaut()[20:180, 150:310])


def test_the_portrait_moves_with_the_template_and_stays_with_a_still_drive(
    engine: FommEngine, portrait: np.ndarray
) -> None:
    moving = engine.animate(portrait, head_motion(portrait, 10, fps=25))
    still = engine.animate(portrait, np.repeat(portrait[None], 3, axis=0))
    assert moving.shape == (10, *portrait.shape) and still.shape == (3, *portrait.shape)
    # A still drive gives the first frame throughout; the template's head turns further each
    # frame of its first 0.4 s, and the frames move further from the first.
    assert all(np.array_equal(frame, moving[0]) for frame in still)
    drift = [np.abs(frame.astype(int) - moving[0]).mean() for frame in moving]
    assert drift[0] == 0 and all(b > a for a, b in itertools.pairwise(drift))
    assert drift[-1] > 0.3


def test_a_clip_is_the_animated_first_frame_changed_only_around_the_head(
    engine: FommEngine,
) -> None:
    photo = data.astronaut()
    result = engine.sync(StillFrames(photo, 7, fps=25), SILENCE)
    pixels = result.frames.pixels
    assert result.warnings == [] and pixels.shape == (7, *photo.shape)
    changed = np.any(pixels != photo, axis=(0, 3))
    rows, cols = np.nonzero(changed)
    # The face lies within rows 40-260 and columns 130-320; its head square a little wider.
    assert rows.min() >= 0 and rows.max() <= 300 and cols.min() >= 100 and cols.max() <= 360
    assert changed.sum() > 10_000
    assert np.abs(pixels[-1].astype(int) - pixels[0]).max() > 0


def test_frames_without_a_face_pass_through_with_a_warning(engine: FommEngine) -> None:
    sky = np.zeros((2, 128, 128, 3), np.uint8)
    sky[:] = np.linspace(40, 200, 128, dtype=np.uint8)[:, None, None]
    result = engine.sync(Frames(sky, fps=25), SILENCE)
    assert np.array_equal(result.frames.pixels, sky)
    assert result.warnings == ["no face found: frames left unchanged"]


def test_a_still_driving_video_from_the_config_holds_the_portrait_still(
    tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    video = tmp_path / "still.mp4"
    video.write_bytes(encode_mp4(np.full((3, 64, 64, 3), 128, np.uint8)))
    engine = FommEngine(tiny("fomm"), driving_video=video)
    assert engine.driving is not None and engine.driving.pixels.shape[1:] == (
        DRIVING_SIDE, DRIVING_SIDE, 3,
    )  # fmt: skip
    result = engine.sync(StillFrames(data.astronaut(), 5, fps=25), SILENCE)
    assert len(result.frames) == 5
    assert all(np.array_equal(frame, result.frames.pixels[0]) for frame in result.frames.pixels)


def test_a_scene_driving_video_takes_the_place_of_the_configured_motion(
    engine: FommEngine,
) -> None:
    photo = StillFrames(data.astronaut(), 5, fps=25)
    moving = engine.sync(photo, SILENCE).frames.pixels
    held = engine.sync(photo, SILENCE, encode_mp4(np.full((3, 64, 64, 3), 128, np.uint8)))
    assert not all(np.array_equal(frame, moving[0]) for frame in moving), "the template moves"
    assert all(np.array_equal(frame, held.frames.pixels[0]) for frame in held.frames.pixels)
    with pytest.raises(DrivingVideoRefused, match="does not decode"):
        engine.sync(photo, SILENCE, b"not a video")


@pytest.mark.parametrize("check", [read_driving_video, probe_driving_video])
def test_a_driving_video_past_its_bounds_is_refused(
    check: Callable[[bytes, DrivingLimits], object],
) -> None:
    """Reading it decodes it; probing it (at submit) reads only its header."""
    video = encode_mp4(np.zeros((5, 64, 48, 3), np.uint8))
    check(video, DrivingLimits(max_frames=5))
    too_big = [
        (DrivingLimits(max_bytes=len(video) - 1), "larger than"),
        (DrivingLimits(max_pixels=64 * 48 - 1), "exceed"),
        (DrivingLimits(max_frames=4), "longer than 4 frames"),
    ]
    for limits, reason in too_big:
        with pytest.raises(DrivingVideoRefused, match=reason) as refused:
            check(video, limits)
        assert refused.value.status == 422 and not refused.value.internal
    with pytest.raises(DrivingVideoRefused, match="does not decode"):
        check(b"not a video", DrivingLimits())


def test_a_missing_or_corrupt_checkpoint_is_unavailable(
    tiny: Callable[[str], Path],
    corrupt_copy: Callable[[Path, str], Path],
    tmp_path: Path,
) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        FommEngine(tmp_path / "fomm")
    shutil.copytree(tiny("fomm"), tmp_path / "fomm")
    (tmp_path / "fomm" / "vox-cpk.pth.tar").unlink()
    with pytest.raises(ModelUnavailable, match=r"has no \*\.pth\.tar files"):
        FommEngine(tmp_path / "fomm")
    with pytest.raises(ModelUnavailable, match="cannot load FOMM"):
        FommEngine(corrupt_copy(tiny("fomm"), "vox-cpk.pth.tar"))
