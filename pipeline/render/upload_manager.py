"""The `UploadManager` actor: every render output reaches storage through it, with retries and a
checksum check, under content-addressed keys (multipart to S3 comes from the storage backend)."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path, PurePosixPath

import ray
from botocore.exceptions import BotoCoreError, ClientError

from cluster.settings import Settings
from pipeline.storage import Storage, StorageError, StoredObject, guess_type, open_storage

ATTEMPTS = 4


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class UploadManager:
    def __init__(self) -> None:
        self._storages: dict[str, Storage] = {}

    def upload(self, settings: Settings, name: str, data: bytes) -> StoredObject:
        """Stores `data` under its content key, retrying transient failures with backoff, and
        checks that what the storage recorded is what was sent."""
        storage = self._storage(settings)
        expected = hashlib.sha256(data).hexdigest()
        suffix = PurePosixPath(name).suffix
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            for attempt in range(ATTEMPTS):
                try:
                    stored = storage.put_content(path, suffix, guess_type(name))
                    break
                except (OSError, StorageError, BotoCoreError, ClientError) as error:
                    if attempt == ATTEMPTS - 1:
                        raise StorageError(f"upload of {name} failed: {error}") from error
                    time.sleep(0.5 * 2**attempt)
        if stored.sha256 != expected:
            raise StorageError(f"checksum mismatch storing {name}")
        return stored

    def _storage(self, settings: Settings) -> Storage:
        url = settings.resolved_storage_url
        if url not in self._storages:
            self._storages[url] = open_storage(settings)
        return self._storages[url]


def upload_manager() -> ray.actor.ActorHandle:
    return UploadManager.options(  # type: ignore[attr-defined,no-any-return]
        name="upload_manager",
        namespace="studio",
        lifetime="detached",
        get_if_exists=True,
        max_concurrency=4,
    ).remote()
