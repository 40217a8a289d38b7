"""The neural engines on Serve, on CPU: tiny random models (tests.tiny_models) in a models folder,
and Serve configs derived from the shipped ones so that the tests deploy what operators deploy."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.tiny_models import BUILDERS

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
GPU_CONFIG = ROOT / "deployments" / "serve_config.gpu.yaml"
CLUSTER_CONFIG = ROOT / "deployments" / "serve_config.cluster.yaml"
EXAMPLES = ROOT / "examples"

# Constructor options that keep each tiny engine to a few hundred milliseconds on a CPU.
TINY_OPTIONS: dict[str, dict[str, Any]] = {
    "video-ltx": {"steps": 2, "base_size": [64, 32], "max_frames": 9},
    "video-cogvideox": {"steps": 2},
    "video-cogvideox-2b": {"steps": 2},
    "video-wan": {"steps": 2, "base_size": [64, 32], "max_frames": 9},
    "video-ltx-2": {"steps": 2, "base_size": [64, 32], "max_frames": 9, "stg_blocks": None},
    "lipsync-wav2lip": {"batch_size": 16},
    "music-stable-audio": {"steps": 2},
    "image-diffusers": {"steps": 2, "base_size": [32, 32]},
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Iterable[str]], Path]:
    """`tiny_models(folders)`: the models folder, with those tiny models built on first use."""
    root = tmp_path_factory.mktemp("models")

    def get(folders: Iterable[str]) -> Path:
        for name in folders:
            if not (root / name).exists():
                torch.manual_seed(0)
                BUILDERS[name](root / name)
        return root

    return get


def derived_config(
    source: Path,
    out: Path,
    *,
    num_gpus: float | None = 0,
    deployment: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """`source` with every replica's `num_gpus` set (None keeps them), the tiny engines'
    options, and `deployment` fields merged per application; written to `out`."""
    raw = yaml.safe_load(source.read_text())
    for app in raw["applications"]:
        if app["name"] in TINY_OPTIONS:
            app["args"]["options"] = TINY_OPTIONS[app["name"]]
        for spec in app["deployments"]:
            actor = spec.setdefault("ray_actor_options", {})
            if num_gpus is not None and "num_gpus" in actor:
                actor["num_gpus"] = num_gpus
            for key, value in (deployment or {}).get(app["name"], {}).items():
                merged = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
                spec[key] = merged
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out
