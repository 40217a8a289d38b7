"""Wav2Lip on a random checkpoint in the released format, on the astronaut photograph."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from models.base import Audio, Frames
from models.errors import ModelUnavailable
from models.neural.wav2lip import Wav2LipEngine, mel_windows


@pytest.fixture(scope="module")
def engine(tiny: Callable[[str], Path]) -> Wav2LipEngine:
    return Wav2LipEngine(tiny("wav2lip"), batch_size=4)


def speech(seconds: float = 0.3, rate: int = 22050) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio(
        (0.5 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32),
        rate,
    )


def video(image: np.ndarray, count: int = 6) -> Frames:
    return Frames(np.repeat(image[None], count, axis=0), fps=25)


def test_only_the_face_region_changes(engine: Wav2LipEngine) -> None:
    frames = video(data.astronaut())
    result = engine.sync(frames, speech())
    changed = np.any(result.frames.pixels != frames.pixels, axis=(0, 3))
    rows, cols = np.nonzero(changed)
    assert result.warnings == []
    assert result.frames.pixels.shape == frames.pixels.shape
    assert changed.sum() > 2000
    # The astronaut's face lies within rows 40-260 and columns 130-320 of the 512 px photograph.
    assert rows.min() >= 40 and rows.max() <= 260
    assert cols.min() >= 130 and cols.max() <= 320


def test_frames_without_a_face_pass_through_with_a_warning(engine: Wav2LipEngine) -> None:
    sky = np.zeros((256, 256, 3), np.uint8)
    sky[:] = np.linspace(40, 200, 256, dtype=np.uint8)[:, None, None]
    frames = video(sky, 3)
    result = engine.sync(frames, speech())
    assert np.array_equal(result.frames.pixels, frames.pixels)
    assert result.warnings == ["no face found: frames left unchanged"]


def test_each_frame_gets_a_16_step_mel_window_even_past_the_audio() -> None:
    windows = mel_windows(speech(0.1), frames=10, fps=25)
    assert windows.shape == (10, 1, 80, 16)
    assert windows.dtype == np.float32 and windows.min() >= -4 and windows.max() <= 4


def test_a_missing_checkpoint_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"no wav2lip\.pth"):
        Wav2LipEngine(tmp_path)
    with pytest.raises(ModelUnavailable, match="does not exist"):
        Wav2LipEngine(tmp_path / "wav2lip_gan.pth")


def test_a_truncated_checkpoint_is_unavailable(
    tiny: Callable[[str], Path], corrupt_copy: Callable[[Path, str], Path]
) -> None:
    with pytest.raises(ModelUnavailable, match="cannot load Wav2Lip"):
        Wav2LipEngine(corrupt_copy(tiny("wav2lip"), "wav2lip.pth"))
