"""Batch renders through the running studio: a JSONL manifest of film specs, each line a project
and a render job of a named user, run by the studio's scheduler like a render asked for through
the API (same checks, credits reserved through the ledger and charged once, outputs in the
studio's storage and linked to the project).

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m cluster.batch manifest.jsonl --user you@example.com

A manifest line is `{"spec": "<.yaml/.json path relative to the manifest>" or {an inline spec},
"quality": "animatic" | "final", "title": "<optional>", "id": "<optional>"}`. A spec names its
images by uploaded asset, as through the API. The batch joins the studio's Ray (RAY_ADDRESS, set
by `ray job submit`, or the studio running on this data folder), submits every line, follows the
jobs in the database and prints a line per change (`ray job logs` shows them), then writes a
results manifest to the studio's storage and prints its key. A bad line is reported and the
others render. SIGTERM (`ray job stop`) cancels the batch's unfinished jobs through the job state
machine, releasing their credits, before the batch exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import select

from cluster import running
from cluster.errors import StudioError
from cluster.runtime import start_ray
from cluster.settings import Settings, get_settings
from db import addresses
from db.models import Job, JobStatus, Project, User
from db.session import session_scope
from pipeline.errors import IllegalTransition, PlanLimit
from pipeline.jobs.submission import RenderRequest, cancel_job, delete_project, submit_render
from pipeline.render.spec import FilmSpec, describe_errors
from pipeline.storage import open_storage

POLL_S = 2.0
TERMINAL = {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}


class BatchError(StudioError):
    slug, status, title = "batch-failed", 422, "The batch cannot run"


class ManifestEntry(BaseModel):
    """One line of the manifest."""

    model_config = ConfigDict(extra="forbid")

    spec: str | dict[str, Any] = Field(description="A spec file relative to the manifest, or one.")
    quality: Literal["animatic", "final"] = "animatic"
    title: str | None = Field(default=None, min_length=1, max_length=200)
    id: str | None = Field(default=None, min_length=1, max_length=200)


class Row(BaseModel):
    """A line to submit: its spec read and valid."""

    line: int
    id: str
    title: str
    quality: Literal["animatic", "final"]
    spec: FilmSpec


class BatchResult(BaseModel):
    """One line of the results manifest."""

    line: int
    id: str
    status: Literal[
        "rejected", "queued", "running", "paused", "held", "succeeded", "failed", "cancelled"
    ]
    project_id: UUID | None = None
    job_id: UUID | None = None
    progress: int = 0
    outputs: dict[str, str] = Field(default_factory=dict, description="File name: storage key.")
    credits: int | None = Field(default=None, description="Credits charged for the render.")
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "rejected" or self.status in TERMINAL


def read_manifest(manifest: Path) -> tuple[list[Row], list[BatchResult]]:
    """The lines to submit, and those rejected (not an entry, or a spec that is unreadable or
    invalid), each naming the problem; BatchError when the manifest cannot be read."""
    base = manifest.resolve().parent
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BatchError(f"cannot read the manifest {manifest.name}: {describe(error)}") from error
    rows: list[Row] = []
    rejected: list[BatchResult] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        name = f"line-{number}"
        try:
            entry = parse_entry(text)
            name = entry.id or (Path(entry.spec).stem if isinstance(entry.spec, str) else name)
            spec = load_spec(base, entry.spec)
        except (ValueError, OSError, StudioError) as error:
            problem = f"not an entry: {error}" if isinstance(error, ValueError) else describe(error)
            rejected.append(BatchResult(line=number, id=name, status="rejected", error=problem))
            continue
        title = entry.title or spec.title
        rows.append(Row(line=number, id=name, title=title, quality=entry.quality, spec=spec))
    return rows, rejected


def parse_entry(text: str) -> ManifestEntry:
    """A manifest line as an entry; ValueError naming what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError("a line must be a JSON object")
    try:
        return ManifestEntry.model_validate(data)
    except ValidationError as error:
        raise ValueError("; ".join(describe_errors(error))) from error


def load_spec(base: Path, spec: str | dict[str, Any]) -> FilmSpec:
    if isinstance(spec, str):
        return FilmSpec.from_file(base / spec)
    return FilmSpec.from_text(json.dumps(spec), "json")


def describe(error: BaseException) -> str:
    """One line naming the problem, never a server path beyond the file named."""
    if isinstance(error, StudioError) and not error.internal:
        return f"{error.title}: {error.detail}"
    if isinstance(error, FileNotFoundError):
        return f"file not found: {Path(str(error.filename)).name}"
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def find_user(settings: Settings, email: str) -> User:
    try:
        address = addresses.normalise(email)
    except StudioError as error:
        raise BatchError(f"--user: {error.detail}") from error
    with session_scope(settings.resolved_database_url) as session:
        user = session.exec(select(User).where(User.email == address)).first()
        if user is None:
            raise BatchError(f"no user {email}: register first (POST /api/users/register)")
        session.expunge(user)
        return user


def create_project(settings: Settings, user: User, row: Row) -> UUID:
    with session_scope(settings.resolved_database_url) as session:
        project = Project(owner_id=user.id, title=row.title, spec=row.spec.model_dump(mode="json"))
        session.add(project)
        session.commit()
        return project.id


def submit(
    settings: Settings, user: User, row: Row, project_id: UUID, *, may_wait: bool
) -> BatchResult | None:
    """The row's render submitted as through the API. None when it must wait: refused for the
    plan's limits while other renders of the batch run (the plan's renders at a time). Any
    other refusal (spec, plan, credits) is the row's error and leaves no project behind."""
    try:
        job = submit_render(settings, user, project_id, RenderRequest(quality=row.quality))
    except StudioError as error:
        if isinstance(error, PlanLimit) and may_wait:
            return None
        _delete_project(settings, project_id)
        return BatchResult(line=row.line, id=row.id, status="rejected", error=describe(error))
    assert isinstance(job, Job)
    return BatchResult(
        line=row.line,
        id=row.id,
        status=JobStatus(job.status).value,
        project_id=project_id,
        job_id=job.id,
    )


def _delete_project(settings: Settings, project_id: UUID) -> None:
    with session_scope(settings.resolved_database_url) as session:
        project = session.get(Project, project_id)
        if project is not None:
            delete_project(session, project)


def refresh(settings: Settings, result: BatchResult) -> BatchResult:
    """The result as its job stands in the database."""
    if result.job_id is None:
        return result
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, result.job_id)
        assert job is not None
        outputs = (job.output or {}).get("outputs", {})
        return result.model_copy(
            update={
                "status": JobStatus(job.status).value,
                "progress": job.progress,
                "outputs": {name: out["key"] for name, out in outputs.items()},
                "credits": (job.output or {}).get("credits_used"),
                "error": job.error,
            }
        )


def say(result: BatchResult) -> None:
    where = f"line {result.line} ({result.id})"
    if result.status == "rejected":
        print(f"batch: {where}: rejected: {result.error}", flush=True)
    elif result.status in ("failed", "cancelled"):
        print(f"batch: {where}: job {result.job_id} {result.status}: {result.error}", flush=True)
    elif result.status == "succeeded":
        print(f"batch: {where}: job {result.job_id} succeeded, project {result.project_id}, "
              f"{result.credits} credits", flush=True)  # fmt: skip
    else:
        print(f"batch: {where}: job {result.job_id} {result.status} {result.progress}%", flush=True)


class Stop:
    """Set by SIGTERM (`ray job stop`) or SIGINT: the batch cancels what is unfinished."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_: object) -> None:
        self.requested = True


def follow(settings: Settings, user: User, rows: list[Row], stop: Stop) -> list[BatchResult]:
    """Submits the rows, as many at once as the plan allows, and polls their jobs until all
    have ended, saying each change; on a stop, cancels the unfinished ones (credits released)
    and returns as they stand (rows never submitted are not in the results)."""
    pending = [(row, create_project(settings, user, row)) for row in rows]
    results: list[BatchResult] = []
    while True:
        if stop.requested:
            for _, project_id in pending:
                _delete_project(settings, project_id)
            return cancel(settings, results)
        while pending:
            row, project_id = pending[0]
            running = any(not result.done for result in results)
            submitted = submit(settings, user, row, project_id, may_wait=running)
            if submitted is None:
                break
            pending.pop(0)
            say(submitted)
            results.append(submitted)
        changed = [refresh(settings, result) for result in results]
        for before, after in zip(results, changed, strict=True):
            if (before.status, before.progress) != (after.status, after.progress):
                say(after)
        results = changed
        if not pending and all(result.done for result in results):
            return results
        time.sleep(POLL_S)


def cancel(settings: Settings, results: list[BatchResult]) -> list[BatchResult]:
    cancelled = []
    for result in results:
        if result.job_id is not None and not result.done:
            user = _owner(settings, result.job_id)
            with contextlib.suppress(IllegalTransition):  # it ended meanwhile
                cancel_job(settings, user, result.job_id)
            say(result := refresh(settings, result))
        cancelled.append(result)
    return cancelled


def _owner(settings: Settings, job_id: UUID) -> User:
    with session_scope(settings.resolved_database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        user = session.get(User, job.user_id)
        assert user is not None
        session.expunge(user)
        return user


def write_results(settings: Settings, batch_id: str, results: list[BatchResult]) -> str:
    """The results manifest, a JSON line per manifest line, in the studio's storage; its key."""
    key = f"batches/{batch_id}/results.jsonl"
    lines = "".join(r.model_dump_json() + "\n" for r in sorted(results, key=lambda r: r.line))
    open_storage(settings).put_bytes(key, lines.encode(), "application/x-ndjson")
    return key


def connect(settings: Settings) -> None:
    """Joins the studio's Ray: RAY_ADDRESS (set by `ray job submit`), STUDIO_RAY_ADDRESS or the
    studio running on this data folder; BatchError when there is none."""
    studio = running.find(settings)
    address = (
        os.environ.get("RAY_ADDRESS") or settings.ray_address or (studio and studio.ray_address)
    )
    if not address:
        raise BatchError("no studio is running on this data folder: start `studio serve` first")
    start_ray(settings.model_copy(update={"ray_address": address}), quiet=True)


def run_batch(
    settings: Settings, manifest: Path, email: str
) -> tuple[list[BatchResult], str, bool]:
    """Submits, follows and reports the manifest's renders; the results, their key, and
    whether the batch was stopped."""
    rows, rejected = read_manifest(manifest)
    connect(settings)
    stop = Stop()  # after ray.init, which installs its own SIGTERM handler
    user = find_user(settings, email)
    batch_id = uuid.uuid4().hex
    print(f"batch {batch_id}: {len(rows)} render(s) for {user.email}, {len(rejected)} rejected")
    for result in rejected:
        say(result)
    results = [*rejected, *follow(settings, user, rows, stop)]
    return results, write_results(settings, batch_id, results), stop.requested


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 once every line has ended, whatever its result; 1 when stopped; 2 when the
    batch cannot run (no manifest, no studio, no such user)."""
    parser = argparse.ArgumentParser(
        prog="python -m cluster.batch", description="Render a JSONL manifest on the studio."
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--user", required=True, help="the email of the account that pays")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        results, key, stopped = run_batch(settings, args.manifest, args.user)
    except BatchError as error:
        print(f"batch: {error.detail}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    print(f"batch: {summary}; results in storage at {key}", flush=True)
    return 1 if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
