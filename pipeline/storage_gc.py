"""The storage collector: content-addressed objects that nothing names any more are removed.

Deleting a project or an account leaves its files in storage (they are content-addressed and may
be shared with another project, another user's upload or a stage-cache entry), and evicted cache
entries leave their blobs. A collection is a mark and sweep over `cas/`:

1. list the stored objects (anything written after this is not a candidate);
2. evict the stage cache's least recently used entries over its budget;
3. mark every key the database names (assets, projects' outputs, jobs' inputs and outputs) and
   every blob a remaining cache manifest names;
4. sweep the unmarked objects older than the grace period (`Settings.storage_gc_grace_s`),
   and the writes that never finished begun before it (`Storage.sweep_partial`: the temporary
   files of uploads and cache writes whose process was killed, S3 multipart uploads never
   completed).

A render running during a collection loses nothing: what it writes is younger than the grace
period, and an object it reuses is touched when it is stored again (`Storage.put_content`,
`StageCache.put`), so it counts as new too. Objects outside `cas/` and `cache/` are not touched.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import select

from cluster import metrics
from cluster.settings import Settings
from db.models import Asset, Job, Project
from db.session import session_scope
from pipeline.render import stage_cache
from pipeline.storage import ObjectInfo, Storage, open_storage

log = logging.getLogger(__name__)

CAS_PREFIX = "cas/"


@dataclass
class Collection:
    """What a collection removed (or, in a dry run, would remove) and what stays, in bytes."""

    dry_run: bool
    evicted: list[ObjectInfo] = field(default_factory=list)
    swept: list[ObjectInfo] = field(default_factory=list)
    young: list[ObjectInfo] = field(default_factory=list)
    partial: list[ObjectInfo] = field(default_factory=list)
    """Writes that never finished, begun before the grace period."""
    stored: dict[str, int] = field(default_factory=dict)

    @property
    def reclaimed_bytes(self) -> int:
        removed = [*self.swept, *self.evicted, *self.partial]
        return sum(o.size for o in removed)


def collect(
    settings: Settings, storage: Storage | None = None, *, dry_run: bool = False
) -> Collection:
    """One collection (see the module); with `dry_run` nothing is removed."""
    storage = storage or open_storage(settings)
    started = time.time()
    candidates = list(storage.scan(CAS_PREFIX))
    entries = list(stage_cache.entries(storage))
    sizes = {info.key: info.size for info in candidates}
    evicted: list[stage_cache.CacheEntry] = []
    if settings.stage_cache_budget_bytes is not None:
        evicted = stage_cache.over_budget(entries, sizes, settings.stage_cache_budget_bytes)
    gone = {entry.manifest.key for entry in evicted}
    kept = [entry for entry in entries if entry.manifest.key not in gone]
    referenced = database_keys(settings.resolved_database_url)
    cached = {blob for entry in kept for blob in entry.blobs}
    result = Collection(dry_run, evicted=[entry.manifest for entry in evicted])
    cutoff = started - settings.storage_gc_grace_s
    unreferenced = [o for o in candidates if o.key not in referenced and o.key not in cached]
    result.swept = [o for o in unreferenced if o.modified < cutoff]
    result.young = [o for o in unreferenced if o.modified >= cutoff]
    result.stored = {
        "referenced": sum(o.size for o in candidates if o.key in referenced),
        "cache": sum(o.size for o in candidates if o.key in cached and o.key not in referenced)
        + sum(entry.manifest.size for entry in kept),
        "unreferenced": sum(o.size for o in result.young),
    }
    result.partial = storage.sweep_partial(cutoff, dry_run=dry_run)
    if not dry_run:
        for entry in evicted:
            storage.delete(entry.manifest.key)
        for info in result.swept:
            storage.delete(info.key)
    return result


def database_keys(database_url: str) -> set[str]:
    """Every content-addressed key the database names: assets' keys and any `cas/` string in
    projects' outputs and jobs' inputs and outputs."""
    keys: set[str] = set()
    with session_scope(database_url) as session:
        keys.update(session.exec(select(Asset.storage_key)).all())
        for document in session.exec(select(Project.outputs)):
            keys.update(_cas_strings(document))
        for job_input, job_output in session.exec(select(Job.input, Job.output)):
            keys.update(_cas_strings(job_input))
            keys.update(_cas_strings(job_output))
    return keys


def _cas_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.startswith(CAS_PREFIX):
            yield value
    elif isinstance(value, dict):
        yield from _strings_in(value.values())
    elif isinstance(value, list):
        yield from _strings_in(value)


def _strings_in(values: Iterable[Any]) -> Iterator[str]:
    for value in values:
        yield from _cas_strings(value)


_last_run: dict[str, float] = {}


def collect_when_due(settings: Settings) -> None:
    """`collect`, at most once per `storage_gc_interval_s` in this process (never when it is
    0), recording the bytes stored by kind: the scheduler calls it on every pass of its loop."""
    if not settings.storage_gc_interval_s:
        return
    url = settings.resolved_database_url
    if time.monotonic() - _last_run.get(url, -math.inf) < settings.storage_gc_interval_s:
        return
    _last_run[url] = time.monotonic()
    result = collect(settings)
    for kind, size in result.stored.items():
        metrics.storage_bytes(kind, size)
    log.info(
        "storage collected: %d object(s) swept, %d cache entries evicted, %d unfinished "
        "write(s) removed, %d bytes reclaimed",
        len(result.swept),
        len(result.evicted),
        len(result.partial),
        result.reclaimed_bytes,
    )
