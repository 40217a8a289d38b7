"""The diffusers video engines on tiny random models, loaded through the production path."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.base import SoundFrames, VideoRequest
from models.errors import ModelUnavailable, UnsupportedRequest
from models.neural.cogvideox import CogVideoX2bEngine, CogVideoXEngine
from models.neural.device import non_sdpa_attention
from models.neural.diffusion import DiffusionVideoEngine
from models.neural.ltx import LtxVideoEngine
from models.neural.ltx2 import Ltx2VideoEngine
from models.neural.svd import StableVideoDiffusionEngine
from models.neural.wan import WanVideoEngine

Build = Callable[[Path, Path | None], DiffusionVideoEngine]
# name: (model folder, image-to-video folder, engine on those folders)
ENGINES: dict[str, tuple[str, str | None, Build]] = {
    "ltx": (
        "ltx-video", None,
        lambda p, _: LtxVideoEngine(p, steps=2, base_size=(64, 32), max_frames=9),
    ),
    "cogvideox": (
        "cogvideox", "cogvideox-i2v",
        lambda p, i: CogVideoXEngine(p, image_model_dir=i, steps=2),
    ),
    "svd": ("svd", None, lambda p, _: StableVideoDiffusionEngine(p, steps=2, base_size=(64, 32))),
    "wan": (
        "wan", "wan-i2v",
        lambda p, i: WanVideoEngine(p, image_model_dir=i, steps=2, base_size=(64, 32),
                                    max_frames=9),
    ),
    "ltx-2": (
        "ltx-2", None,
        lambda p, _: Ltx2VideoEngine(p, steps=2, base_size=(64, 32), max_frames=9,
                                     stg_blocks=None),
    ),
}  # fmt: skip


def png(color: tuple[int, int, int], size: tuple[int, int] = (80, 48)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = color
    pixels[:, : size[0] // 2] //= 2
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def shot(width: int = 64, height: int = 36, seed: int = 7, **extra: object) -> VideoRequest:
    fields = {"keyframe_png": png((200, 120, 40)), **extra}
    return VideoRequest(
        prompt="a fox runs through snow",
        width=width,
        height=height,
        fps=8,
        duration_s=1.5,
        seed=seed,
        **fields,
    )


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request: pytest.FixtureRequest, tiny: Callable[[str], Path]) -> DiffusionVideoEngine:
    folder, image_folder, build = ENGINES[request.param]
    return build(tiny(folder), tiny(image_folder) if image_folder else None)


@pytest.mark.parametrize(("width", "height"), [(64, 36), (36, 64)], ids=["16:9", "9:16"])
def test_frames_have_the_requested_size_count_and_rate(
    engine: DiffusionVideoEngine, width: int, height: int
) -> None:
    frames = engine.generate(shot(width, height))
    assert frames.pixels.shape == (12, height, width, 3)
    assert frames.pixels.dtype == np.uint8
    assert frames.fps == 8
    assert frames.pixels.std() > 0


def test_the_same_seed_gives_the_same_video_and_another_seed_another(
    engine: DiffusionVideoEngine,
) -> None:
    first, again = engine.generate(shot(seed=1)), engine.generate(shot(seed=1))
    other = engine.generate(shot(seed=2))
    assert np.array_equal(first.pixels, again.pixels)
    assert not np.array_equal(first.pixels, other.pixels)


def test_attention_runs_on_torch_sdpa(engine: DiffusionVideoEngine) -> None:
    modules = [c for c in engine.pipe.components.values() if isinstance(c, torch.nn.Module)]
    assert [name for m in modules for name in non_sdpa_attention(m)] == []


def test_ltx_native_shot_respects_model_constraints(tiny: Callable[[str], Path]) -> None:
    engine = LtxVideoEngine(tiny("ltx-video"), steps=2, base_size=(704, 480), max_frames=161)
    planned = engine.plan(shot(1920, 1080).model_copy(update={"duration_s": 10.0}))
    assert planned.width % 32 == 0 and planned.height % 32 == 0
    assert planned.width > planned.height
    assert (planned.frames - 1) % engine.pipe.vae_temporal_compression_ratio == 0
    assert planned.frames == 161 and planned.fps == pytest.approx(16.0)


def test_cogvideox_frames_are_8k_plus_1_up_to_the_trained_length(
    tiny: Callable[[str], Path],
) -> None:
    engine = CogVideoXEngine(tiny("cogvideox"), image_model_dir=tiny("cogvideox-i2v"), steps=2)
    trained = engine.pipe.transformer.config.sample_frames
    for duration in (0.5, 1.0, 30.0):
        planned = engine.plan(shot().model_copy(update={"duration_s": duration}))
        assert (planned.frames - 1) % 8 == 0 and planned.frames <= trained


def test_svd_animates_the_scene_keyframe(tiny: Callable[[str], Path]) -> None:
    engine = StableVideoDiffusionEngine(tiny("svd"), steps=2, base_size=(64, 32))
    warm = engine.generate(shot(keyframe_png=png((220, 140, 30))))
    cold = engine.generate(shot(keyframe_png=png((30, 90, 220))))
    assert warm.pixels[..., 0].mean() != cold.pixels[..., 0].mean()


def test_svd_without_a_keyframe_or_keyframe_engine_is_refused(tiny: Callable[[str], Path]) -> None:
    engine = StableVideoDiffusionEngine(tiny("svd"), steps=2, base_size=(64, 32))
    with pytest.raises(UnsupportedRequest, match="keyframe"):
        engine.generate(shot(keyframe_png=None))


def test_a_hugging_face_cache_entry_loads_its_snapshot(
    tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    entry = tmp_path / "models--Lightricks--LTX-Video"
    shutil.copytree(tiny("ltx-video"), entry / "snapshots" / "0123456789abcdef")
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123456789abcdef")
    engine = LtxVideoEngine(entry, steps=2, base_size=(64, 32), max_frames=9)
    assert engine.model_revision == "0123456789ab"
    assert engine.generate(shot()).pixels.shape == (12, 36, 64, 3)


def test_a_missing_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        LtxVideoEngine(tmp_path / "nowhere")


def test_a_folder_of_another_pipeline_is_unavailable(tiny: Callable[[str], Path]) -> None:
    with pytest.raises(ModelUnavailable, match="holds a CogVideoXPipeline, expected LTXPipeline"):
        LtxVideoEngine(tiny("cogvideox"))


@pytest.mark.parametrize("name", list(ENGINES))
def test_truncated_weights_are_unavailable(
    name: str, tiny: Callable[[str], Path], corrupt_copy: Callable[[Path, str], Path]
) -> None:
    folder, image_folder, build = ENGINES[name]
    denoiser = "unet" if name == "svd" else "transformer"
    broken = corrupt_copy(tiny(folder), f"{denoiser}/diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelUnavailable, match="cannot load"):
        build(broken, tiny(image_folder) if image_folder else None)


def test_cogvideox_2b_refuses_a_scene_image_it_cannot_use(tiny: Callable[[str], Path]) -> None:
    engine = CogVideoX2bEngine(tiny("cogvideox"), steps=2)
    assert engine.generate(shot(keyframe_png=None)).pixels.shape == (12, 36, 64, 3)
    with pytest.raises(UnsupportedRequest, match="no image-to-video model"):
        engine.generate(shot())


@pytest.mark.parametrize(
    ("build", "folder"),
    [
        (lambda p: WanVideoEngine(p), "wan"),
        (lambda p: CogVideoXEngine(p), "cogvideox"),
    ],
    ids=["wan", "cogvideox"],
)
def test_an_engine_without_its_image_to_video_model_does_not_start(
    build: Callable[[Path], DiffusionVideoEngine], folder: str, tiny: Callable[[str], Path]
) -> None:
    with pytest.raises(ModelUnavailable, match="image-to-video"):
        build(tiny(folder))


def test_ltx2_brings_its_sound_as_long_as_its_frames(tiny: Callable[[str], Path]) -> None:
    """LTX-2 generates sound with the picture; it comes back fitted to the frames' duration,
    mono, finite and not silent (a random vocoder still makes noise)."""
    _, _, build = ENGINES["ltx-2"]
    frames = build(tiny("ltx-2"), None).generate(shot(keyframe_png=None))
    assert isinstance(frames, SoundFrames)
    sound = frames.sound
    assert sound.samples.ndim == 1 and sound.samples.dtype == np.float32
    assert abs(sound.duration_s - frames.duration_s) < 1 / sound.sample_rate
    assert np.isfinite(sound.samples).all() and np.abs(sound.samples).max() > 0


def test_engines_without_sound_bring_plain_frames(tiny: Callable[[str], Path]) -> None:
    _, _, build = ENGINES["wan"]
    frames = build(tiny("wan"), tiny("wan-i2v")).generate(shot(keyframe_png=None))
    assert not isinstance(frames, SoundFrames)
