"""The stage cache: every stage's output stored under a hash of what produced it.

A key is sha256 over (stage, engine name, engine version, inputs, seed) in canonical JSON, so a
scene whose inputs did not change is never rendered twice, and a failed job, retried, resumes
from what its earlier attempt finished. An entry is a manifest naming its files; the files are
content-addressed blobs (`cas/`, the keys render outputs have too), so identical bytes are stored
once whoever made them. Hits are scoped: a manifest lives under its scope (the user a render is
for, by default), so rendering what another user rendered is not free and fast, which would tell
that someone rendered that exact text (`Settings.stage_cache_shared` lets operators share).

The cache has a budget (`Settings.stage_cache_budget_bytes`): once a render has stored its
stages (`keep_within_budget`; not on every write, since it lists the whole cache), the entries
used least recently (a hit touches its manifest) are evicted until the bytes the remaining
entries name fit. Eviction removes manifests only: a blob may be a project's output too, so the
blobs no manifest names any more are left to the storage collector (`pipeline.storage_gc`),
which knows what the database references.
"""

from __future__ import annotations

import hashlib
import io
import json
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID

import numpy as np
from pydantic import BaseModel

from cluster.settings import Settings
from models.base import Audio
from pipeline.storage import ObjectInfo, Storage, content_key

SHARED_SCOPE = "shared"
CACHE_PREFIX = "cache/"
MANIFEST = "manifest.json"


def stage_key(stage: str, engine: str, version: str, inputs: Any, seed: int) -> str:
    payload = {"stage": stage, "engine": engine, "version": version, "inputs": inputs, "seed": seed}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    return str(value)


def cache_scope(settings: Settings, owner: UUID | None) -> str:
    """Where a render's hits come from: its owner's entries, or everyone's when the operator
    accepts sharing. A render for no user (`studio render`, batches) has a scope of its own."""
    if settings.stage_cache_shared:
        return SHARED_SCOPE
    return user_scope(owner) if owner is not None else "local"


def user_scope(owner: UUID) -> str:
    """The scope of one user's own entries."""
    return f"user-{owner}"


class StageCache:
    """Manifests under `cache/<scope>/<stage>/<key>/manifest.json` naming content-addressed
    blobs; a manifest is written after its blobs, so an entry exists only once all its files
    do."""

    def __init__(
        self, storage: Storage, scope: str = SHARED_SCOPE, budget_bytes: int | None = None
    ) -> None:
        self.storage = storage
        self.scope = scope
        self.budget_bytes = budget_bytes

    def _manifest(self, stage: str, key: str) -> str:
        return f"{CACHE_PREFIX}{self.scope}/{stage}/{key[:2]}/{key}/{MANIFEST}"

    def get(self, stage: str, key: str) -> dict[str, bytes] | None:
        """The entry's files, or None; a hit counts as a use for the least-recently-used
        eviction. An entry whose blob was collected meanwhile is a miss."""
        manifest_key = self._manifest(stage, key)
        try:
            manifest = json.loads(self.storage.get_bytes(manifest_key))
            files = {name: self.storage.get_bytes(blob) for name, blob in manifest["files"].items()}
            self.storage.touch(manifest_key)
        except KeyError:
            return None
        return files

    def put(self, stage: str, key: str, files: dict[str, bytes]) -> None:
        blobs = {name: self._blob(name, data) for name, data in files.items()}
        manifest = json.dumps({"files": blobs}, sort_keys=True).encode()
        self.storage.put_bytes(self._manifest(stage, key), manifest, "application/json")

    def keep_within_budget(self) -> None:
        """Evicts the least recently used entries past the budget (`evict`), if there is one."""
        if self.budget_bytes is not None:
            evict(self.storage, self.budget_bytes)

    def _blob(self, name: str, data: bytes) -> str:
        """Stores the blob, or touches the stored copy so that a collection running meanwhile
        sees it as new."""
        key = content_key(hashlib.sha256(data).hexdigest(), PurePosixPath(name).suffix)
        try:
            self.storage.touch(key)
        except KeyError:
            self.storage.put_bytes(key, data)
        return key


@dataclass(frozen=True)
class CacheEntry:
    manifest: ObjectInfo
    blobs: tuple[str, ...]


def entries(storage: Storage, scope: str | None = None) -> Iterator[CacheEntry]:
    """Every cache entry (of one scope, or all), with the blobs its manifest names. A manifest
    removed while it is being read is skipped."""
    prefix = CACHE_PREFIX if scope is None else f"{CACHE_PREFIX}{scope}/"
    for info in storage.scan(prefix):
        if not info.key.endswith(f"/{MANIFEST}"):
            continue
        try:
            files = json.loads(storage.get_bytes(info.key))["files"]
        except KeyError:
            continue
        yield CacheEntry(info, tuple(files.values()))


def footprint(listed: list[CacheEntry], sizes: dict[str, int]) -> int:
    """The bytes the entries take: their manifests and the distinct blobs they name."""
    blobs = {blob for entry in listed for blob in entry.blobs}
    return sum(e.manifest.size for e in listed) + sum(sizes.get(b, 0) for b in blobs)


def over_budget(listed: list[CacheEntry], sizes: dict[str, int], budget: int) -> list[CacheEntry]:
    """The entries to evict, least recently used first, so that the rest fit in `budget`."""
    ordered = sorted(listed, key=lambda e: (e.manifest.modified, e.manifest.key))
    users: dict[str, int] = {}
    for entry in ordered:
        for blob in set(entry.blobs):
            users[blob] = users.get(blob, 0) + 1
    total = footprint(ordered, sizes)
    evicted: list[CacheEntry] = []
    for entry in ordered:
        if total <= budget:
            break
        evicted.append(entry)
        total -= entry.manifest.size
        for blob in set(entry.blobs):
            users[blob] -= 1
            if users[blob] == 0:
                total -= sizes.get(blob, 0)
    return evicted


def evict(storage: Storage, budget: int, dry_run: bool = False) -> list[CacheEntry]:
    """Removes (unless `dry_run`) the least recently used entries until the cache fits in
    `budget` bytes; returns them."""
    listed = list(entries(storage))
    named = {blob for entry in listed for blob in entry.blobs}
    sizes = {info.key: info.size for info in storage.scan("cas/") if info.key in named}
    evicted = over_budget(listed, sizes, budget)
    if not dry_run:
        for entry in evicted:
            storage.delete(entry.manifest.key)
    return evicted


def drop_scope(storage: Storage, scope: str) -> int:
    """Removes every entry of a scope (a deleted account's); returns how many."""
    keys = list(storage.list(f"{CACHE_PREFIX}{scope}/"))
    for key in keys:
        storage.delete(key)
    return len(keys)


def audio_to_bytes(audio: Audio) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, samples=audio.samples.astype(np.float32), rate=audio.sample_rate)
    return buffer.getvalue()


def audio_from_bytes(data: bytes) -> Audio:
    with np.load(io.BytesIO(data)) as archive:
        return Audio(archive["samples"], int(archive["rate"]))


def audio_to_wav(audio: Audio) -> bytes:
    """16-bit PCM WAV, for people to listen to (the cache keeps float samples)."""
    pcm = (np.clip(audio.samples, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(audio.sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def array_to_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def array_to_jpeg(pixels: np.ndarray) -> bytes:
    """A frame kept to look at (thumbnails, storyboard), not to compose from: a fifth of a PNG's
    encoding time and a third of its bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def array_from_image(data: bytes) -> np.ndarray:
    """RGB pixels of a PNG or JPEG."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
