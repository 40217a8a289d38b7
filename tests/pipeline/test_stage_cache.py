"""The stage cache's entries: scoped hits over content-addressed bytes."""

from __future__ import annotations

import uuid

from cluster.settings import Settings
from pipeline.render.stage_cache import StageCache, cache_scope
from pipeline.storage import open_storage


def test_identical_entries_in_two_scopes_store_their_bytes_once(settings: Settings) -> None:
    storage = open_storage(settings)
    files = {"segment.mp4": b"\x00\x00\x00\x18ftypisom" * 100, "warnings.json": b"[]"}
    alice = StageCache(storage, cache_scope(settings, uuid.uuid4()))
    bob = StageCache(storage, cache_scope(settings, uuid.uuid4()))
    alice.put("clip", "ab" * 32, files)
    assert bob.get("clip", "ab" * 32) is None
    bob.put("clip", "ab" * 32, files)
    assert alice.get("clip", "ab" * 32) == bob.get("clip", "ab" * 32) == files
    assert len(list(storage.list("cas/"))) == len(files)


def test_a_scope_is_the_owner_unless_the_operator_shares() -> None:
    owner = uuid.uuid4()
    private = Settings(_env_file=None)
    shared = Settings(stage_cache_shared=True, _env_file=None)
    assert cache_scope(private, owner) == f"user-{owner}"
    assert cache_scope(private, None) == "local"
    assert cache_scope(shared, owner) == cache_scope(shared, None) == "shared"
