"""The stage cache: every stage's output stored under a hash of what produced it.

A key is sha256 over (stage, engine name, engine version, inputs, seed) in canonical JSON, so a
scene whose inputs did not change is never rendered twice, and a failed job, retried, resumes
from what its earlier attempt finished. Entries are small sets of named files in the storage.
"""

from __future__ import annotations

import hashlib
import io
import json
import wave
from typing import Any

import numpy as np
from pydantic import BaseModel

from models.base import Audio
from pipeline.storage import Storage


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


class StageCache:
    """Named files under `cache/<stage>/<key>/`; `manifest.json` is written last, so an entry
    exists only once all its files do."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def _prefix(self, stage: str, key: str) -> str:
        return f"cache/{stage}/{key[:2]}/{key}"

    def get(self, stage: str, key: str) -> dict[str, bytes] | None:
        prefix = self._prefix(stage, key)
        try:
            manifest = json.loads(self.storage.get_bytes(f"{prefix}/manifest.json"))
        except KeyError:
            return None
        try:
            return {name: self.storage.get_bytes(f"{prefix}/{name}") for name in manifest["files"]}
        except KeyError:
            return None

    def put(self, stage: str, key: str, files: dict[str, bytes]) -> None:
        prefix = self._prefix(stage, key)
        for name, data in files.items():
            self.storage.put_bytes(f"{prefix}/{name}", data)
        manifest = json.dumps({"files": sorted(files)}).encode()
        self.storage.put_bytes(f"{prefix}/manifest.json", manifest, "application/json")


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
