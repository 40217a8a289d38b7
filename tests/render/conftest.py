"""Helpers to load the examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.render.spec import FilmSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, **changes: object) -> FilmSpec:
    """An example spec with some fields changed (validated again)."""
    spec = FilmSpec.from_file(EXAMPLES / f"{name}.yaml")
    return FilmSpec.model_validate({**spec.model_dump(), **changes})


def write_manifest(path: Path, entries: list[dict[str, Any] | str]) -> Path:
    lines = [entry if isinstance(entry, str) else json.dumps(entry) for entry in entries]
    path.write_text("\n".join(lines) + "\n")
    return path
