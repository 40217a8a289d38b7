"""Storage backends: the local folder and S3 (a real SeaweedFS server)."""

from __future__ import annotations

import hashlib
import os
import resource
import time
from pathlib import Path

import httpx
import pytest

from cluster.preflight import check
from cluster.settings import ConfigError, Settings
from pipeline.storage import LocalStorage, S3Storage, Storage, content_key, open_storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, settings: Settings) -> Storage:
    if request.param == "s3":
        request.applymarker(pytest.mark.s3)
        return open_storage(request.getfixturevalue("s3_settings"))
    return open_storage(settings)


def test_round_trip_and_listing(storage: Storage, tmp_path: Path) -> None:
    stored = storage.put_bytes("films/a/film.mp4", b"x" * 1000)
    assert stored.content_type == "video/mp4"
    assert stored.sha256 == hashlib.sha256(b"x" * 1000).hexdigest()
    assert storage.exists("films/a/film.mp4")
    assert storage.get_bytes("films/a/film.mp4") == b"x" * 1000
    assert list(storage.list("films/")) == ["films/a/film.mp4"]
    storage.delete("films/a/film.mp4")
    assert not storage.exists("films/a/film.mp4")
    with pytest.raises(KeyError):
        storage.get_bytes("films/a/film.mp4")


def test_content_addressed_keys_store_once(storage: Storage, tmp_path: Path) -> None:
    path = tmp_path / "same.png"
    path.write_bytes(b"\x89PNG same bytes")
    first = storage.put_content(path, ".png")
    second = storage.put_content(path, ".png")
    assert first == second
    assert first.key == content_key(first.sha256, ".png")
    assert first.key.startswith(f"cas/{first.sha256[:2]}/")


def test_url_fetches_with_plain_http_until_it_expires(storage: Storage) -> None:
    storage.put_bytes("u/film.txt", b"hello film")
    if isinstance(storage, LocalStorage):
        url = storage.url("u/film.txt", 60)
        query = url.split("?", 1)[1]
        params = dict(p.split("=", 1) for p in query.split("&"))
        assert storage.verify("u/film.txt", int(params["expires"]), params["sig"])
        assert not storage.verify("u/other.txt", int(params["expires"]), params["sig"])
        assert not storage.verify("u/film.txt", int(time.time()) - 1, params["sig"])
        return
    assert httpx.get(storage.url("u/film.txt", 60)).content == b"hello film"
    expired = storage.url("u/film.txt", 1)
    time.sleep(2.5)
    assert httpx.get(expired).status_code == 403


def test_local_keys_cannot_escape_the_folder(settings: Settings) -> None:
    storage = open_storage(settings)
    with pytest.raises(KeyError):
        storage.put_bytes("../escape.txt", b"no")


@pytest.mark.s3
def test_200_mb_multipart_upload_streams_and_comes_back_identical(
    s3_settings: Settings, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with big.open("wb") as f:
        for i in range(200):
            chunk = block[i:] + block[:i]
            digest.update(chunk)
            f.write(chunk)
    storage = open_storage(s3_settings)
    assert isinstance(storage, S3Storage)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stored = storage.put_file("big/object.bin", big)
    assert stored.size == 200 * 1024 * 1024
    head = storage.client.head_object(Bucket=storage.bucket, Key=storage._key("big/object.bin"))
    assert "-" in head["ETag"], "a multipart upload has an ETag of the form <md5>-<parts>"
    fetched = hashlib.sha256()
    size = 0
    with httpx.stream("GET", storage.url("big/object.bin", 300), timeout=120) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes(1024 * 1024):
            fetched.update(chunk)
            size += len(chunk)
    assert size == stored.size
    assert fetched.hexdigest() == digest.hexdigest() == stored.sha256
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 100, f"peak memory grew {grown_mb:.0f} MB for a 200 MB object"


@pytest.mark.s3
def test_wrong_s3_credentials_stop_startup_naming_the_setting(s3_settings: Settings) -> None:
    wrong = s3_settings.model_copy(update={"s3_secret_access_key": "wrong-secret"})
    from pydantic import SecretStr

    wrong = s3_settings.model_copy(update={"s3_secret_access_key": SecretStr("wrong")})
    with pytest.raises(ConfigError) as error:
        check(wrong)
    assert "STUDIO_S3" in error.value.setting
    assert "credentials" in str(error.value)
