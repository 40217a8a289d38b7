"""The storage collector and the stage cache's budget, on a local folder and on S3 (SeaweedFS),
with the database on SQLite and PostgreSQL. No Ray: the collector runs in this process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from cluster import metrics
from cluster.settings import Settings
from db.models import Asset, Project, User
from db.session import get_engine, session_scope
from pipeline import storage_gc
from pipeline.accounts.deletion import delete_account
from pipeline.jobs.submission import delete_project
from pipeline.render.stage_cache import StageCache, entries, user_scope
from pipeline.storage import (
    CHUNK,
    LocalStorage,
    S3Storage,
    Storage,
    StoredObject,
    content_key,
    open_storage,
)

GRACE_S = 5  # seconds: room for a loaded machine between a write and the collection
ROOT = Path(__file__).parents[2]


@pytest.fixture(params=["local", "s3"])
def studio(request: pytest.FixtureRequest, settings: Settings, database_url: str) -> Settings:
    """Settings on a fresh storage (a folder or a bucket) and a migrated database."""
    if request.param == "s3":
        request.applymarker(pytest.mark.s3)
        settings = request.getfixturevalue("s3_settings")
    return settings.model_copy(update={"database_url": database_url, "storage_gc_grace_s": GRACE_S})


def make_user(settings: Settings) -> User:
    with session_scope(settings.resolved_database_url) as session:
        user = User(email=f"{uuid.uuid4().hex[:8]}@example.com")
        session.add(user)
    return user


def put(storage: Storage, tmp_path: Path, data: bytes, suffix: str = ".mp4") -> StoredObject:
    path = tmp_path / f"{uuid.uuid4().hex}{suffix}"
    path.write_bytes(data)
    return storage.put_content(path, suffix)


def make_project(settings: Settings, user: User, outputs: dict[str, StoredObject]) -> Project:
    """A rendered project: its outputs recorded as the job runner records them (an asset row
    each, and the project's `outputs`)."""
    with session_scope(settings.resolved_database_url) as session:
        project = Project(owner_id=user.id, title="film", spec={})
        session.add(project)
        session.flush()
        recorded: dict[str, Any] = {}
        for name, stored in outputs.items():
            session.add(
                Asset(owner_id=user.id, project_id=project.id, kind="film", filename=name,
                      content_type=stored.content_type, size=stored.size,
                      sha256=stored.sha256, storage_key=stored.key)
            )  # fmt: skip
            recorded[name] = {"key": stored.key, "size": stored.size}
        project.outputs = recorded
    return project


def unique(label: str) -> bytes:
    return f"{label} {uuid.uuid4()}".encode() * 100


def test_deleted_projects_and_accounts_are_reclaimed_shared_and_young_objects_stay(
    studio: Settings, tmp_path: Path
) -> None:
    storage = open_storage(studio)
    alice, bob = make_user(studio), make_user(studio)
    shared = put(storage, tmp_path, unique("shared film"))
    alice_film = put(storage, tmp_path, unique("alice film"))
    alice_other = put(storage, tmp_path, unique("alice second film"), ".png")
    voice = put(storage, tmp_path, unique("alice voice"), ".wav")
    first = make_project(studio, alice, {"film.mp4": alice_film, "shared.mp4": shared})
    make_project(studio, alice, {"poster.png": alice_other, "voice.wav": voice})
    make_project(studio, bob, {"film.mp4": shared})
    # Alice's own cache entry, and one of Bob's sharing a blob with it.
    StageCache(storage, user_scope(alice.id)).put(
        "clip", "a" * 64, {"clip.mp4": unique("alice clip"), "x.png": b"common"}
    )
    StageCache(storage, user_scope(bob.id)).put("clip", "b" * 64, {"x.png": b"common"})
    alice_clip = next(iter(entries(storage, user_scope(alice.id)))).blobs
    common = content_key(_sha(b"common"), ".png")

    with Session(get_engine(studio.resolved_database_url)) as session:
        project = session.get(Project, first.id)
        assert project is not None
        delete_project(session, project)
        session.commit()
    time.sleep(GRACE_S + 1.2)  # everything above is now older than the grace period

    # A render running during the collection has written an object and not yet linked it.
    in_flight = put(storage, tmp_path, unique("render in flight"))
    before = set(storage.list("cas/"))
    result = storage_gc.collect(studio)
    after = set(storage.list("cas/"))
    assert {o.key for o in result.swept} == {alice_film.key}
    assert before - after == {alice_film.key}
    assert {shared.key, alice_other.key, in_flight.key, common} <= after
    assert [o.key for o in result.young] == [in_flight.key]

    with Session(get_engine(studio.resolved_database_url)) as session:
        user = session.get(User, alice.id)
        assert user is not None
        delete_account(session, studio, storage, user)
    # The deletion removed the objects no other asset names; the cache entry's blobs are left.
    assert not storage.exists(alice_other.key) and not storage.exists(voice.key)
    assert storage.exists(shared.key)
    assert not list(entries(storage, user_scope(alice.id)))
    time.sleep(GRACE_S + 1.2)
    # Unreferenced and old now, but a render stores the same bytes again: touched, so new.
    again = put(storage, tmp_path, storage.get_bytes(in_flight.key))
    assert again.key == in_flight.key
    result = storage_gc.collect(studio)
    swept = {o.key for o in result.swept}
    assert set(alice_clip) - {common} <= swept
    assert common not in swept and storage.exists(common)  # Bob's cache entry names it
    assert storage.exists(shared.key)  # Bob's project names it
    assert storage.exists(in_flight.key)
    assert result.stored["referenced"] >= len(storage.get_bytes(shared.key))
    assert storage_gc.collect(studio).swept == []


def test_the_scheduled_collection_runs_once_per_interval_and_records_bytes_by_kind(
    settings: Settings, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded: dict[str, int] = {}
    monkeypatch.setattr(metrics, "storage_bytes", recorded.__setitem__)
    settings = settings.model_copy(
        update={"database_url": sqlite_url, "storage_gc_grace_s": 0,
                "storage_gc_interval_s": 3600}
    )  # fmt: skip
    storage = open_storage(settings)
    StageCache(storage, "local").put("clip", "d" * 64, {"clip.mp4": b"12345"})
    first = storage.put_bytes(content_key(_sha(b"first"), ".mp4"), b"first")
    storage_gc.collect_when_due(settings)
    assert not storage.exists(first.key)
    assert recorded["unreferenced"] == 0 and recorded["referenced"] == 0
    assert recorded["cache"] > 5  # the clip and its manifest
    second = storage.put_bytes(content_key(_sha(b"second"), ".mp4"), b"second")
    storage_gc.collect_when_due(settings)  # not due again for an hour
    assert storage.exists(second.key)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("kind", "writes", "pause_s"),
    # S3 times objects to the second: its writes are spaced so that their order is recorded.
    [("local", 20, 0.0), pytest.param("s3", 6, 1.1, marks=pytest.mark.s3)],
)
def test_the_cache_stays_under_its_budget_evicting_the_least_recently_used(
    kind: str,
    writes: int,
    pause_s: float,
    request: pytest.FixtureRequest,
    settings: Settings,
    sqlite_url: str,
) -> None:
    if kind == "s3":
        settings = request.getfixturevalue("s3_settings")
    entry_bytes = 1000
    budget = 4 * (entry_bytes + 200)  # room for four entries and their manifests
    settings = settings.model_copy(
        update={"database_url": sqlite_url, "stage_cache_budget_bytes": budget,
                "storage_gc_grace_s": 0}
    )  # fmt: skip
    storage = open_storage(settings)
    cache = StageCache(storage, "local", budget)
    written = []
    for i in range(writes):
        key = _sha(f"entry {i}".encode())
        cache.put("clip", key, {"clip.mp4": os.urandom(entry_bytes)})
        cache.keep_within_budget()  # as each render ends
        written.append(key)
        assert cache.get("clip", written[0]) is not None  # the first entry keeps being used
        listed = list(entries(storage))
        named = {blob for entry in listed for blob in entry.blobs}
        blob_bytes = sum(o.size for o in storage.scan("cas/") if o.key in named)
        assert blob_bytes + sum(e.manifest.size for e in listed) <= budget
        time.sleep(pause_s)
    kept = {entry.manifest.key.split("/")[-2] for entry in entries(storage)}
    assert kept == {written[0], *written[-3:]}  # the used one and the three newest
    # The evicted entries' blobs are the collector's: afterwards storage holds the budget.
    result = storage_gc.collect(settings)
    assert len(result.swept) == writes - 4
    assert sum(o.size for o in storage.scan("")) <= budget


def abandon_write(storage: Storage, key: str) -> None:
    """What a writer killed mid-write leaves: on a folder, the `.part-` file of an upload whose
    process is killed while the upload waits for more bytes; on S3, a multipart upload begun and
    never completed."""
    if isinstance(storage, S3Storage):
        where = {"Bucket": storage.bucket, "Key": storage.prefix + key}
        upload = storage.client.create_multipart_upload(**where)
        storage.client.upload_part(
            **where, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * CHUNK
        )
        return
    assert isinstance(storage, LocalStorage)
    code = (
        "import sys; from pathlib import Path; from pipeline.storage import LocalStorage; "
        "LocalStorage(Path(sys.argv[1]), bytes, '').put_file(sys.argv[2], Path('/dev/stdin'))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", code, str(storage.root), key]
    writer = subprocess.Popen(command, stdin=subprocess.PIPE, env=env)
    assert writer.stdin is not None
    writer.stdin.write(b"x" * (CHUNK + 1))  # a chunk written, and the next one awaited
    writer.stdin.flush()
    folder = storage.root / key.rpartition("/")[0]
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size >= CHUNK for p in folder.glob(".part-*")):
        assert time.monotonic() < deadline and writer.poll() is None, "the upload never began"
        time.sleep(0.05)
    writer.kill()
    writer.wait()


def test_writes_killed_midway_are_swept_after_the_grace_period(studio: Settings) -> None:
    storage = open_storage(studio)
    abandon_write(storage, "cas/aa/killed-upload.mp4")
    abandon_write(storage, "cache/local/clip/killed/manifest.json")
    time.sleep(GRACE_S + 1)
    abandon_write(storage, "cas/bb/in-flight.mp4")

    def folders(found: list[Any]) -> list[str]:
        return sorted(info.key.rpartition("/")[0] for info in found)

    dry = storage_gc.collect(studio, dry_run=True)
    assert folders(dry.partial) == ["cache/local/clip/killed", "cas/aa"]
    assert dry.reclaimed_bytes >= 2 * CHUNK
    assert folders(storage.sweep_partial(time.time(), dry_run=True)) == [
        "cache/local/clip/killed", "cas/aa", "cas/bb",
    ], "a dry run removes nothing"  # fmt: skip
    assert folders(storage_gc.collect(studio).partial) == ["cache/local/clip/killed", "cas/aa"]
    left = storage.sweep_partial(time.time(), dry_run=True)
    assert folders(left) == ["cas/bb"], "the write within the grace period stays"
    assert list(storage.list("")) == [], "no half-written object is ever listed"


def test_cli_dry_run_reports_and_removes_nothing(settings: Settings, sqlite_url: str) -> None:
    storage = open_storage(settings)
    orphan = storage.put_bytes(content_key(_sha(b"orphan"), ".mp4"), b"orphan")
    StageCache(storage, "local").put("clip", "c" * 64, {"clip.mp4": b"cached clip"})
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STUDIO_DATA_DIR": str(settings.data_dir),
        "STUDIO_DATABASE_URL": sqlite_url,
        "STUDIO_STORAGE_GC_GRACE_S": "0",
        "STUDIO_STAGE_CACHE_BUDGET_BYTES": "0",
    }

    def gc(*flags: str) -> str:
        command = [sys.executable, "-m", "cluster.cli", "storage", "gc", *flags]
        done = subprocess.run(
            command, env=env, cwd=settings.data_dir, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = sorted(storage.list(""))
    report = gc("--dry-run")
    assert sorted(storage.list("")) == before
    assert f"object {orphan.key} (6 bytes)" in report
    assert "cache entry cache/local/clip/" in report
    assert "would reclaim" in report
    report = gc()
    assert "reclaimed" in report and "would" not in report
    assert list(storage.list("")) == []
