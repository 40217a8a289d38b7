"""The CPU engines on Serve, deployed once on the session's Ray, and helpers to load examples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.runtime import deploy
from cluster.settings import Settings
from models.registry import CPU_DEFAULTS, engine_info
from pipeline.spec import FilmSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENGINE_APPS = {engine_info(c, n).deployment for c, n in CPU_DEFAULTS.items()}


@pytest.fixture(scope="session")
def cpu_engines(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from ray import serve

    settings = Settings(data_dir=tmp_path_factory.mktemp("engines"), _env_file=None)
    deploy(settings, ENGINE_APPS)
    yield
    for name in ENGINE_APPS:
        serve.delete(name)


def example(name: str, **changes: object) -> FilmSpec:
    """An example spec with some fields changed (validated again)."""
    spec = FilmSpec.from_file(EXAMPLES / f"{name}.yaml")
    return FilmSpec.model_validate({**spec.model_dump(), **changes})
