"""MuseTalk on a random model in its published folder layout, on the astronaut photograph."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from models.base import Audio, Frames
from models.errors import ModelUnavailable
from models.neural.faces import track_faces
from models.neural.musetalk import MuseTalkEngine


@pytest.fixture(scope="module")
def engine(tiny: Callable[[str], Path]) -> MuseTalkEngine:
    return MuseTalkEngine(tiny("musetalk"), batch_size=4)


def speech(seconds: float = 0.3, rate: int = 22050) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio(
        (0.5 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32),
        rate,
    )


def test_only_the_lower_half_of_the_face_changes_batched_as_unbatched(
    engine: MuseTalkEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    face = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    frames = Frames(np.repeat(face[None], 4, axis=0), fps=25)
    result = engine.sync(frames, speech())
    assert result.warnings == []
    assert result.frames.pixels.shape == frames.pixels.shape
    changed = np.any(result.frames.pixels != frames.pixels, axis=(0, 3))
    rows, cols = np.nonzero(changed)
    box = track_faces(engine.detector, frames.pixels, engine.detect_every, engine.smooth)[0]
    assert box is not None and changed.sum() > 0.3 * box.w * box.h
    # The mouth's half of the face box changes; above its middle line nothing does.
    assert rows.min() >= box.y + box.h // 2 and rows.max() < box.y + box.h
    assert cols.min() >= box.x and cols.max() < box.x + box.w
    monkeypatch.setattr(engine, "batch_size", 1)
    one_by_one = engine.sync(frames, speech()).frames.pixels
    assert np.abs(one_by_one.astype(int) - result.frames.pixels).max() <= 1


def test_frames_without_a_face_pass_through_with_a_warning(engine: MuseTalkEngine) -> None:
    sky = np.zeros((3, 128, 128, 3), np.uint8)
    sky[:] = np.linspace(40, 200, 128, dtype=np.uint8)[:, None, None]
    result = engine.sync(Frames(sky, fps=25), speech())
    assert np.array_equal(result.frames.pixels, sky)
    assert result.warnings == ["no face found: frames left unchanged"]


def test_each_frame_gets_ten_whisper_steps_of_every_layer_even_past_the_audio(
    engine: MuseTalkEngine,
) -> None:
    prompts = engine.audio_prompts(speech(0.1), frames=10, fps=25)
    layers = engine.whisper.config.encoder_layers + 1
    assert prompts.shape == (10, 10 * layers, engine.unet.config.cross_attention_dim)
    assert bool(prompts.isfinite().all())


def test_a_missing_or_incomplete_folder_is_unavailable(
    tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        MuseTalkEngine(tmp_path / "musetalk")
    shutil.copytree(tiny("musetalk"), tmp_path / "musetalk")
    (tmp_path / "musetalk" / "musetalkV15" / "unet.pth").unlink()
    with pytest.raises(ModelUnavailable, match=r"lacks unet\.pth"):
        MuseTalkEngine(tmp_path / "musetalk")


def test_a_truncated_unet_is_unavailable(
    tiny: Callable[[str], Path], corrupt_copy: Callable[[Path, str], Path]
) -> None:
    with pytest.raises(ModelUnavailable, match="cannot load MuseTalk"):
        MuseTalkEngine(corrupt_copy(tiny("musetalk"), "musetalkV15/unet.pth"))
