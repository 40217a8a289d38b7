"""Model folders on local disk: plain folders or Hugging Face cache entries; never a hub."""

from __future__ import annotations

import hashlib
from pathlib import Path

from models.errors import ModelUnavailable

_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pth", ".pt", ".ckpt"}


def resolve_model_dir(path: str | Path, required: tuple[str, ...] = ()) -> Path:
    """The folder holding the model files, with every `required` file present.

    `path` may be the model folder itself, a Hugging Face cache entry `models--org--name` (its
    `refs/main` snapshot, else its newest one) or one of its `snapshots/<rev>` folders.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelUnavailable(f"model folder {folder} does not exist")
    snapshots = folder / "snapshots"
    if folder.name.startswith("models--") and snapshots.is_dir():
        folder = _snapshot(folder, snapshots)
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise ModelUnavailable(f"model folder {folder} lacks {', '.join(missing)}")
    return folder


def _snapshot(entry: Path, snapshots: Path) -> Path:
    ref = entry / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    revisions = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime)
    if not revisions:
        raise ModelUnavailable(f"Hugging Face cache entry {entry} has no snapshot")
    return revisions[-1]


def model_revision(folder: Path) -> str:
    """A short identity of the weights, for stage-cache keys: the snapshot revision of a cache
    entry, else a hash of the configs and the names and sizes of the weight files."""
    if folder.parent.name == "snapshots":
        return folder.name[:12]
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode())
        if file.suffix in _WEIGHT_SUFFIXES:
            digest.update(str(file.stat().st_size).encode())
        elif file.suffix == ".json" and file.stat().st_size < 1_000_000:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]
