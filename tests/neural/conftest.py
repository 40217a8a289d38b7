"""Tiny random models in their real formats, built once per session by tests.tiny_models."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tests.tiny_models import BUILDERS

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`tiny(name)`: the folder of a tiny model (tests.tiny_models layout), built on first use."""
    root = tmp_path_factory.mktemp("tiny-models")

    def get(name: str) -> Path:
        folder = root / name
        if not folder.exists():
            torch.manual_seed(0)
            BUILDERS[name](folder)
        return folder

    return get


@pytest.fixture
def corrupt_copy(tmp_path: Path) -> Callable[[Path, str], Path]:
    """`corrupt_copy(folder, file)`: a copy of a model folder whose `file` is cut in half."""

    def make(folder: Path, relative: str) -> Path:
        copy = tmp_path / f"corrupt-{folder.name}"
        shutil.copytree(folder, copy)
        target = copy / relative
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        return copy

    return make


@pytest.fixture
def fake_tts() -> Iterator[object]:
    from tests.neural.fake_tts import FakeTTS

    server = FakeTTS()
    server.start()
    yield server
    server.stop()
