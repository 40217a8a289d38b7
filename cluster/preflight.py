"""Start-up checks: every setting that can be wrong is tried before anything is created, and a
failure is one line naming the setting."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from cluster.settings import ConfigError, Settings
from db.session import get_engine, normalise_url
from models.registry import configured_engines
from pipeline.jobs.moderation import policy_for
from pipeline.storage import StorageError, open_storage


def check(settings: Settings) -> None:
    """Raises ConfigError for the first unusable setting; creates nothing on failure."""
    configured_engines(settings)
    _check_data_dir(settings.data_dir)
    _check_database(settings)
    try:
        open_storage(settings).check()
    except StorageError as e:
        raise ConfigError(e.setting or "STUDIO_STORAGE_URL", str(e)) from None
    policy_for(settings)


def _check_data_dir(data_dir: Path) -> None:
    existing = next((p for p in (data_dir, *data_dir.resolve().parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not _writable(existing):
        raise ConfigError("STUDIO_DATA_DIR", f"{data_dir} cannot be created or written")


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK | os.X_OK)


def _check_database(settings: Settings) -> None:
    url = normalise_url(settings.resolved_database_url)
    if url.startswith("sqlite"):
        folder = Path(url.split("///", 1)[1]).parent
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not _writable(existing):
            raise ConfigError("STUDIO_DATABASE_URL", f"SQLite folder {folder} is not writable")
        return
    try:
        with get_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        reason = str(e.orig if hasattr(e, "orig") and e.orig else e).strip().splitlines()[0]
        raise ConfigError("STUDIO_DATABASE_URL", f"cannot connect: {reason}") from None
