"""Helpers to load the examples."""

from __future__ import annotations

from pathlib import Path

from pipeline.render.spec import FilmSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, **changes: object) -> FilmSpec:
    """An example spec with some fields changed (validated again)."""
    spec = FilmSpec.from_file(EXAMPLES / f"{name}.yaml")
    return FilmSpec.model_validate({**spec.model_dump(), **changes})
