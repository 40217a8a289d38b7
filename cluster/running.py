"""A running studio, found by the CLI: `studio serve` writes where its Ray and API are into the data
folder, and `studio render` and `studio submit` send their work there instead of starting a second
Ray and deploying the engines again."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from cluster.settings import Settings


class RunningStudio(BaseModel):
    ray_address: str  # the GCS address a driver joins (`ray.init(address=...)`)
    api_url: str
    dashboard_url: str | None = None
    pid: int


def announcement(settings: Settings) -> Path:
    return settings.data_dir / "studio.json"


def announce(settings: Settings, studio: RunningStudio) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    path = announcement(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(studio.model_dump_json(), encoding="utf-8")
    partial.replace(path)


def withdraw(settings: Settings) -> None:
    """Removes this process's announcement (not a newer studio's)."""
    studio = find(settings)
    if studio is not None and studio.pid == os.getpid():
        announcement(settings).unlink(missing_ok=True)


def find(settings: Settings) -> RunningStudio | None:
    """The studio serving this data folder, if its process is alive; a stale announcement (a
    studio killed without withdrawing it) is ignored."""
    try:
        studio = RunningStudio.model_validate_json(announcement(settings).read_bytes())
    except (OSError, ValidationError):
        return None
    return studio if _alive(studio.pid) else None


def _alive(pid: int) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        return True
    return False
