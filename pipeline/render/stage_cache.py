"""The stage cache: every stage's output stored under a hash of what produced it.

A key is sha256 over (stage, engine name, engine version, inputs, seed) in canonical JSON, so a
scene whose inputs did not change is never rendered twice, and a failed job, retried, resumes
from what its earlier attempt finished. An entry is a manifest naming its files; the files are
content-addressed blobs (`cas/`, the keys render outputs have too), so identical bytes are stored
once whoever made them. Hits are scoped: a manifest lives under its scope (the user a render is
for, by default), so rendering what another user rendered is not free and fast, which would tell
that someone rendered that exact text (`Settings.stage_cache_shared` lets operators share).
"""

from __future__ import annotations

import hashlib
import io
import json
import wave
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID

import numpy as np
from pydantic import BaseModel

from cluster.settings import Settings
from models.base import Audio
from pipeline.storage import Storage, content_key

SHARED_SCOPE = "shared"


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
    return f"user-{owner}" if owner is not None else "local"


class StageCache:
    """Manifests under `cache/<scope>/<stage>/<key>/manifest.json` naming content-addressed
    blobs; a manifest is written after its blobs, so an entry exists only once all its files
    do."""

    def __init__(self, storage: Storage, scope: str = SHARED_SCOPE) -> None:
        self.storage = storage
        self.scope = scope

    def _manifest(self, stage: str, key: str) -> str:
        return f"cache/{self.scope}/{stage}/{key[:2]}/{key}/manifest.json"

    def get(self, stage: str, key: str) -> dict[str, bytes] | None:
        try:
            manifest = json.loads(self.storage.get_bytes(self._manifest(stage, key)))
            return {name: self.storage.get_bytes(blob) for name, blob in manifest["files"].items()}
        except KeyError:
            return None

    def put(self, stage: str, key: str, files: dict[str, bytes]) -> None:
        blobs = {name: self._blob(name, data) for name, data in files.items()}
        manifest = json.dumps({"files": blobs}, sort_keys=True).encode()
        self.storage.put_bytes(self._manifest(stage, key), manifest, "application/json")

    def _blob(self, name: str, data: bytes) -> str:
        key = content_key(hashlib.sha256(data).hexdigest(), PurePosixPath(name).suffix)
        if not self.storage.exists(key):
            self.storage.put_bytes(key, data)
        return key


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


def array_from_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
