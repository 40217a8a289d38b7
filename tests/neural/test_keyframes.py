"""The Stable Diffusion keyframe engine on a tiny random pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.base import ImageRequest
from models.errors import ModelUnavailable
from models.neural.keyframes import DiffusersKeyframeEngine


@pytest.fixture(scope="module")
def engine(tiny: Callable[[str], Path]) -> DiffusersKeyframeEngine:
    return DiffusersKeyframeEngine(tiny("keyframes"), steps=2, base_size=(32, 32))


def request(width: int = 64, height: int = 36, seed: int = 3) -> ImageRequest:
    return ImageRequest(prompt="a lighthouse at dusk", width=width, height=height, seed=seed)


@pytest.mark.parametrize(("width", "height"), [(64, 36), (36, 64)], ids=["16:9", "9:16"])
def test_keyframe_has_the_requested_size(
    engine: DiffusersKeyframeEngine, width: int, height: int
) -> None:
    image = engine.keyframe(request(width, height))
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8


def test_the_same_seed_gives_the_same_keyframe_and_another_seed_another(
    engine: DiffusersKeyframeEngine,
) -> None:
    first, again, other = (engine.keyframe(request(seed=s)) for s in (1, 1, 2))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_missing_folder_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        DiffusersKeyframeEngine(tmp_path / "nowhere")


def test_a_folder_without_model_index_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"lacks model_index\.json"):
        DiffusersKeyframeEngine(tmp_path)


def test_truncated_weights_are_unavailable(
    tiny: Callable[[str], Path], corrupt_copy: Callable[[Path, str], Path]
) -> None:
    broken = corrupt_copy(tiny("keyframes"), "unet/diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelUnavailable, match="cannot load StableDiffusionPipeline"):
        DiffusersKeyframeEngine(broken)
