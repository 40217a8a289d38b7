"""Object storage: one interface, a local folder (the embedded default) or S3 through boto3.

Keys are `/`-separated. Immutable content goes under content-addressed keys
(`cas/ab/abcdef….mp4`) so that a repeated render or upload stores nothing twice. Everything
streams: no method reads a whole file into memory.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import mimetypes
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode, urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from cluster.errors import StudioError
from cluster.settings import Settings

CHUNK = 1024 * 1024
PART_PREFIX = ".part-"
"""A local write in progress: the file is renamed to its key once complete."""


class StorageError(StudioError):
    """A storage operation failed; `setting` names the configuration to look at, if any."""

    slug, status, title = "storage-failed", 500, "Storage failed"
    internal = True

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True)
class ObjectInfo:
    """A listed object: its key, size in bytes and last write (or `touch`), in epoch seconds."""

    key: str
    size: int
    modified: float


def content_key(sha256: str, suffix: str = "") -> str:
    return f"cas/{sha256[:2]}/{sha256}{suffix}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def guess_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class Storage(ABC):
    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject: ...

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object; raises KeyError when it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def scan(self, prefix: str) -> Iterator[ObjectInfo]:
        """The objects whose keys start with `prefix`, with their sizes and times."""

    @abstractmethod
    def touch(self, key: str) -> None:
        """Marks the object as written now (the garbage collector's grace period counts from
        it); raises KeyError when it does not exist."""

    @abstractmethod
    def sweep_partial(self, cutoff: float, dry_run: bool = False) -> list[ObjectInfo]:
        """Removes the writes that never finished (a killed upload's temporary file, a multipart
        upload never completed) started before `cutoff`, in epoch seconds; returns them (with
        `dry_run`, those it would remove)."""

    def list(self, prefix: str) -> Iterator[str]:
        return (info.key for info in self.scan(prefix))

    @abstractmethod
    def url(self, key: str, expires_s: int, filename: str | None = None) -> str:
        """A URL that fetches the object with plain HTTP until it expires."""

    @abstractmethod
    def check(self) -> None:
        """Raises StorageError naming the setting when the storage cannot be used."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        """Stores `data` with no temporary file outside the storage: a writer killed meanwhile
        leaves only what `sweep_partial` removes."""

    def put_content(
        self, path: Path, suffix: str = "", content_type: str | None = None
    ) -> StoredObject:
        """Stores a file under its content-addressed key; an existing copy is not sent again,
        only touched, so that a collection running meanwhile sees it as new."""
        sha = sha256_file(path)
        key = content_key(sha, suffix)
        content_type = content_type or guess_type(key)
        try:
            self.touch(key)
        except KeyError:
            return self.put_file(key, path, content_type)
        return StoredObject(key, path.stat().st_size, sha, content_type)

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def download(self, key: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.open(key) as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        return path


class LocalStorage(Storage):
    """A folder. Its URLs point at the API's `/api/files/...` route, signed with HMAC-SHA256."""

    def __init__(self, root: Path, signing_key: Callable[[], bytes], public_url: str) -> None:
        self.root = root.resolve()
        self._signing_key = signing_key
        self._public_url = public_url.rstrip("/")

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise KeyError(key)
        return path

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject:
        with path.open("rb") as src:
            return self._write(key, src, content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        return self._write(key, io.BytesIO(data), content_type)

    def _write(self, key: str, src: BinaryIO, content_type: str | None) -> StoredObject:
        """Writes a `.part-` file beside the target and renames it: readers never see half a
        file, and a writer killed meanwhile leaves one that `sweep_partial` removes."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=PART_PREFIX)
        try:
            with os.fdopen(fd, "wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredObject(key, size, digest.hexdigest(), content_type or guess_type(key))

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def scan(self, prefix: str) -> Iterator[ObjectInfo]:
        folder = self.root / prefix.rpartition("/")[0]
        for path in sorted(folder.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(PART_PREFIX):
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted since the folder was read
                    continue
                yield ObjectInfo(key, stat.st_size, stat.st_mtime)

    def sweep_partial(self, cutoff: float, dry_run: bool = False) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        for path in self.root.rglob(f"{PART_PREFIX}*"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # renamed into place or removed since the folder was read
                continue
            if stat.st_mtime < cutoff:
                key = path.relative_to(self.root).as_posix()
                found.append(ObjectInfo(key, stat.st_size, stat.st_mtime))
                if not dry_run:
                    path.unlink(missing_ok=True)
        return found

    def touch(self, key: str) -> None:
        try:
            os.utime(self._path(key))
        except FileNotFoundError:
            raise KeyError(key) from None

    def url(self, key: str, expires_s: int, filename: str | None = None) -> str:
        expires = int(time.time()) + expires_s
        query = {"expires": str(expires), "sig": self.signature(key, expires, filename)}
        if filename:
            query["filename"] = filename
        return f"{self._public_url}/api/files/{quote(key)}?{urlencode(query)}"

    def signature(self, key: str, expires: int, filename: str | None = None) -> str:
        """Covers everything the URL says: the file, the expiry and the name it downloads as."""
        message = json.dumps([key, expires, filename or None]).encode()
        return hmac.new(self._signing_key(), message, hashlib.sha256).hexdigest()

    def verify(self, key: str, expires: int, sig: str, filename: str | None = None) -> bool:
        expected = self.signature(key, expires, filename).encode()
        return expires >= time.time() and hmac.compare_digest(expected, sig.encode())

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=f"{PART_PREFIX}probe-"):
                pass
        except OSError as e:
            raise StorageError(
                f"storage folder {self.root} is not writable: {e.strerror}", "STUDIO_STORAGE_URL"
            ) from None


class S3Storage(Storage):
    """A bucket and key prefix, on AWS or any S3-compatible server (`endpoint_url`)."""

    def __init__(self, bucket: str, prefix: str, settings: Settings) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=_secret(settings.s3_access_key_id),
            aws_secret_access_key=_secret(settings.s3_secret_access_key),
            config=BotoConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=settings.s3_multipart_threshold_mb * CHUNK,
            multipart_chunksize=settings.s3_multipart_chunk_mb * CHUNK,
            max_concurrency=4,
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> StoredObject:
        sha = sha256_file(path)
        content_type = content_type or guess_type(key)
        self.client.upload_file(
            str(path),
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha}},
            Config=self.transfer,
        )
        return StoredObject(key, path.stat().st_size, sha, content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> StoredObject:
        sha = hashlib.sha256(data).hexdigest()
        content_type = content_type or guess_type(key)
        self.client.upload_fileobj(
            io.BytesIO(data),
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha}},
            Config=self.transfer,
        )
        return StoredObject(key, len(data), sha, content_type)

    def open(self, key: str) -> BinaryIO:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise
        return response["Body"]  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def scan(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                yield ObjectInfo(key, int(item["Size"]), item["LastModified"].timestamp())

    def sweep_partial(self, cutoff: float, dry_run: bool = False) -> list[ObjectInfo]:
        """Aborts the multipart uploads begun before `cutoff` and never completed (a killed
        upload's parts, which S3 keeps, unlisted, until aborted)."""
        found: list[ObjectInfo] = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for upload in page.get("Uploads", []):
                started = upload["Initiated"].timestamp()
                if started >= cutoff:
                    continue
                key, upload_id = upload["Key"], upload["UploadId"]
                where = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id}
                parts = self.client.list_parts(**where).get("Parts", [])
                size = sum(int(part["Size"]) for part in parts)
                found.append(ObjectInfo(key[len(self.prefix) :], size, started))
                if not dry_run:
                    self.client.abort_multipart_upload(**where)
        return found

    def touch(self, key: str) -> None:
        """Copies the object onto itself (on the server, nothing is downloaded), which S3
        allows only with its metadata replaced: the same metadata is sent again."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(key) from None
            raise
        self.client.copy_object(
            Bucket=self.bucket,
            Key=self._key(key),
            CopySource={"Bucket": self.bucket, "Key": self._key(key)},
            MetadataDirective="REPLACE",
            Metadata=head.get("Metadata", {}),
            ContentType=head.get("ContentType", guess_type(key)),
        )

    def url(self, key: str, expires_s: int, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return str(
            self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
        )

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code in ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
                raise StorageError(
                    f"S3 refused the credentials for bucket {self.bucket!r} ({code})",
                    "STUDIO_S3_ACCESS_KEY_ID / STUDIO_S3_SECRET_ACCESS_KEY",
                ) from None
            if code in ("404", "NoSuchBucket"):
                raise StorageError(
                    f"S3 bucket {self.bucket!r} does not exist", "STUDIO_STORAGE_URL"
                ) from None
            raise StorageError(
                f"S3 answered {code} for bucket {self.bucket!r}", "STUDIO_STORAGE_URL"
            ) from None
        except BotoCoreError as e:
            raise StorageError(f"S3 endpoint unreachable: {e}", "STUDIO_S3_ENDPOINT_URL") from None


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def open_storage(settings: Settings) -> Storage:
    """The storage that STUDIO_STORAGE_URL names: `file:///path` or `s3://bucket/prefix`."""
    url = urlparse(settings.resolved_storage_url)
    if url.scheme == "file":
        return LocalStorage(Path(url.path), settings.jwt_key, settings.public_url)
    if url.scheme == "s3":
        return S3Storage(url.netloc, url.path, settings)
    raise StorageError(f"unsupported storage URL scheme {url.scheme!r}", "STUDIO_STORAGE_URL")
