"""Batch renders: a JSONL manifest of film specs rendered with Ray Data.

    ray job submit --working-dir . -- python -m cluster.batch manifest.jsonl [-o results.jsonl]

A manifest line is `{"spec": "<.yaml/.json path>" or {an inline spec}, "output": "<folder>",
"id": "<optional>"}`, paths relative to the manifest. Each entry is one row of a Ray Data dataset,
mapped by `render_entry` in a small pool of tasks (`concurrency` films at once). A row's task only
drives `render_film`: the DAG fans out its own stage tasks, and the CPU-heavy ones are bounded
cluster-wide by `render_slot`, so a couple of films in flight keep the slots busy while another
film waits on its voices, music or assembly. Rows are whole films, so `map` (a task per row) fits
better than `map_batches`, and engines live in Serve, so no actor state is worth keeping. A row
whose worker dies is retried by Ray Data, and the stage cache makes the retry resume from the
stages already finished.

The films' files come back in the rows and the driver writes them as each film finishes, so the
output folders are on the driver's machine whichever node rendered. A bad entry (a line that is
not a manifest entry, an invalid spec, a missing image, a failed render) becomes an `error`
result naming the problem while the other entries render. The results file gets one JSON line
per entry, in the order they finish, flushed as they do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray.exceptions import RayTaskError

from cluster import running
from cluster.errors import StudioError
from cluster.runtime import ensure_deployed, start_ray
from cluster.settings import Settings, get_settings
from models.registry import Capability
from pipeline.errors import EngineUnavailable, SpecInvalid
from pipeline.render.dag import EngineChoice, RenderInputs, render_film
from pipeline.render.spec import FilmSpec, describe_errors

DEPLOY_TIMEOUT_S = 300


class ManifestUnreadable(StudioError):
    slug, status, title = "manifest-unreadable", 422, "Unreadable manifest"


class ManifestEntry(BaseModel):
    """One line of the manifest."""

    model_config = ConfigDict(extra="forbid")

    spec: str | dict[str, Any] = Field(description="A spec file relative to the manifest, or one.")
    output: str = Field(min_length=1, description="The film's folder, relative to the manifest.")
    id: str | None = None


class BatchResult(BaseModel):
    """One line of the results file."""

    line: int
    id: str
    status: Literal["ok", "error"]
    output: str
    duration_s: float | None = Field(default=None, description="The film's length.")
    frame_count: int | None = None
    render_s: float = Field(default=0.0, description="Wall seconds spent on this entry.")
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)


def run_batch(
    settings: Settings, manifest: Path, results: Path, *, concurrency: int = 2
) -> list[dict[str, Any]]:
    """Render every entry of `manifest`, write the films and `results`; returns the results in
    manifest order. Every problem of an entry is its `error` result; ManifestUnreadable and
    EngineUnavailable (no engines on the cluster) stop the batch."""
    rows, rejected = read_manifest(manifest)
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    engines = EngineChoice()
    results.parent.mkdir(parents=True, exist_ok=True)
    done: list[BatchResult] = []
    with results.open("w", encoding="utf-8") as out:
        for result in [*rejected, *_render_all(settings, engines, rows, concurrency)]:
            out.write(result.model_dump_json() + "\n")
            out.flush()
            done.append(result)
    return [result.model_dump() for result in sorted(done, key=lambda r: r.line)]


def read_manifest(manifest: Path) -> tuple[list[dict[str, Any]], list[BatchResult]]:
    """The entries to render, as Ray Data rows, and the lines rejected before rendering (not an
    entry, or an output folder that an earlier line already uses)."""
    base = manifest.resolve().parent
    rows: list[dict[str, Any]] = []
    rejected: list[BatchResult] = []
    outputs: dict[Path, int] = {}
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestUnreadable(f"cannot read {manifest}: {describe(error)}") from error
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            entry = parse_entry(text)
        except ValueError as error:
            rejected.append(_rejected(number, f"line-{number}", "", f"not an entry: {error}"))
            continue
        output = base / entry.output
        spec_path = base / entry.spec if isinstance(entry.spec, str) else None
        name = entry.id or (spec_path.stem if spec_path else f"line-{number}")
        if output in outputs:
            problem = f"output folder {output} is also line {outputs[output]}'s"
            rejected.append(_rejected(number, name, str(output), problem))
            continue
        outputs[output] = number
        rows.append(
            {
                "line": number,
                "id": name,
                "output": str(output),
                "spec_path": str(spec_path) if spec_path else None,
                "spec_json": None if spec_path else json.dumps(entry.spec),
                "spec_dir": str(spec_path.parent if spec_path else base),
            }
        )
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


def _rejected(line: int, name: str, output: str, error: str) -> BatchResult:
    return BatchResult(line=line, id=name, status="error", output=output, error=error)


def _render_all(
    settings: Settings, engines: EngineChoice, rows: list[dict[str, Any]], concurrency: int
) -> Iterator[BatchResult]:
    if not rows:
        return
    connect(settings)
    ensure_engines(settings, engines)
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
        partial(render_entry, settings=settings, engines=engines),
        num_cpus=0.25,
        compute=ray.data.TaskPoolStrategy(size=concurrency),
    )
    for row in dataset.iter_rows():
        yield save(row)


def connect(settings: Settings) -> None:
    """Join the Ray of `RAY_ADDRESS` (set by `ray job submit`), `STUDIO_RAY_ADDRESS` or the studio
    running on this data folder, or start a local one with `render_slot`s."""
    studio = running.find(settings)
    address = settings.ray_address or os.environ.get("RAY_ADDRESS") or (studio and studio.join())
    start_ray(settings.model_copy(update={"ray_address": address}), quiet=True)


def ensure_engines(settings: Settings, engines: EngineChoice) -> None:
    """Deploy the engines' Serve applications that are not deployed (the others, the studio's
    API included, stay as they are) and wait until all of them run."""
    needed = {engines.info(capability).deployment for capability in Capability}
    try:
        ensure_deployed(settings, needed, DEPLOY_TIMEOUT_S)
    except (RuntimeError, TimeoutError) as error:
        raise EngineUnavailable(f"the engines are not running: {error}") from error


def render_entry(
    row: dict[str, Any], *, settings: Settings, engines: EngineChoice
) -> dict[str, Any]:
    """The Ray Data map function: one entry's spec rendered; its files (names and bytes) or the
    error, never an exception, so that one bad entry does not stop the batch."""
    started = time.monotonic()
    result: dict[str, Any] = {
        "line": row["line"],
        "id": row["id"],
        "output": row["output"],
        "names": [],
        "data": [],
        "duration_s": None,
        "frame_count": None,
        "warnings": [],
        "error": None,
    }
    try:
        spec = load_spec(row["spec_path"], row["spec_json"], Path(row["spec_dir"]))
        inputs = RenderInputs(
            settings=settings, spec=spec, engines=engines, spec_dir=row["spec_dir"]
        )
        report, files = render_film(inputs, lambda stage, status, progress: None)
    except Exception as error:  # any failure is this entry's result, not the batch's
        result["error"] = describe(error)
    else:
        result |= {
            "names": list(files),
            "data": list(files.values()),
            "duration_s": report.duration_s,
            "frame_count": report.frame_count,
            "warnings": report.warnings,
        }
    result["render_s"] = time.monotonic() - started
    return result


def load_spec(path: str | None, text: str | None, spec_dir: Path) -> FilmSpec:
    """The entry's spec, validated, with every image it names present next to it."""
    if path is not None:
        spec = FilmSpec.from_file(path)
    else:
        assert text is not None
        spec = FilmSpec.from_text(text, "json")
    missing = [
        f"scenes.{index}.{field}: {ref.path} not found in {spec_dir}"
        for index, scene in enumerate(spec.scenes)
        for field, ref in (("image", scene.image), ("character", scene.character))
        if ref is not None and ref.path is not None and not ref.resolve(spec_dir).is_file()
    ]
    if missing:
        raise SpecInvalid("; ".join(missing), problems=missing)
    return spec


def describe(error: Exception) -> str:
    """One line naming the problem: the task's own exception rather than Ray's wrapper."""
    if isinstance(error, RayTaskError) and isinstance(error.cause, Exception):
        error = error.cause
    if isinstance(error, StudioError) and not error.internal:
        return f"{error.title}: {error.detail}"
    if isinstance(error, FileNotFoundError):
        return f"file not found: {error.filename}"
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def save(row: dict[str, Any]) -> BatchResult:
    """Write a rendered row's files to its output folder; its result."""
    result = BatchResult(
        line=row["line"],
        id=row["id"],
        status="error" if row["error"] else "ok",
        output=row["output"],
        duration_s=row["duration_s"],
        frame_count=row["frame_count"],
        render_s=round(row["render_s"], 3),
        error=row["error"],
        warnings=list(row["warnings"]),
    )
    if result.error is None:
        try:
            folder = Path(row["output"])
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in zip(row["names"], row["data"], strict=True):
                (folder / name).write_bytes(data)
        except OSError as error:
            return result.model_copy(update={"status": "error", "error": describe(error)})
    return result


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 once the manifest is processed, whatever its entries' results; 2 when the
    manifest cannot be read; 1 when the engines cannot run."""
    parser = argparse.ArgumentParser(
        prog="python -m cluster.batch", description="Render a JSONL manifest of film specs."
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("batch-results.jsonl"))
    parser.add_argument("--concurrency", type=int, default=2, help="films rendered at once")
    args = parser.parse_args(argv)
    try:
        results = run_batch(
            get_settings(), args.manifest, args.output, concurrency=args.concurrency
        )
    except (ManifestUnreadable, EngineUnavailable) as error:
        print(f"batch: {error.detail}", file=sys.stderr)
        return 2 if isinstance(error, ManifestUnreadable) else 1
    failed = [r for r in results if r["status"] == "error"]
    print(f"batch: {len(results) - len(failed)} ok, {len(failed)} failed; results in {args.output}")
    for result in failed:
        print(f"  line {result['line']} ({result['id']}): {result['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
