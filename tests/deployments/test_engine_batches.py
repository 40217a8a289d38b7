"""What the video deployments batch: the text-to-video engines' `generate_batch` (one pipeline
call per native shot) gives every request the video it gets alone (to within float rounding),
mixed shot lengths included (tiny models, two steps). SVD renders one request per pipeline call
(see its `render`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from models.base import CameraMove, VideoRequest
from models.registry import build_engine, engine_info
from tests.deployments.conftest import TINY_OPTIONS

TINY = {name: TINY_OPTIONS[f"video-{name}"] for name in ("ltx", "cogvideox", "wan", "ltx-2")}


@pytest.mark.parametrize("engine", list(TINY))
def test_a_batch_gives_each_request_its_own_video(
    engine: str, tiny_models: Callable[[Iterable[str]], Path]
) -> None:
    info = engine_info("video", engine)
    assert info.model_folder is not None
    folders = [info.model_folder, *([info.image_folder] if info.image_folder else [])]
    made = build_engine(info, tiny_models(folders), TINY[engine])
    requests = [
        VideoRequest(
            prompt="a fox runs through snow",
            width=64,
            height=36,
            fps=8,
            duration_s=duration,
            camera=camera,
            seed=seed,
        )
        for seed, duration, camera in [
            (1, 1.0, CameraMove.static),
            (2, 1.0, CameraMove.zoom_in),
            (3, 2.0, CameraMove.static),
        ]
    ]
    alone = [made.generate(request) for request in requests]
    together = made.generate_batch(requests)
    # A batched matmul may round a hair differently from a single one on some CPUs: the same
    # video is the same to within one level of 255 (another seed's is far from it).
    for frames, expected in zip(together, alone, strict=True):
        assert np.abs(frames.pixels.astype(int) - expected.pixels).max() <= 1
    assert np.abs(together[0].pixels.astype(int) - together[1].pixels).max() > 1
