"""`studio`: the command line (also `python -m cluster.cli`).

studio db upgrade|downgrade REV|current
studio serve                      the API and engines on a local Ray, until Ctrl-C
studio render SPEC -o DIR         render a film spec here, with a progress bar
studio plan STORY -o FILM.yaml    plan a story, screenplay or idea into a film spec to edit
studio render STORY.txt -o DIR    plan a story, then render it
studio submit MANIFEST --user EMAIL   batch renders on the running studio
studio storage gc [--dry-run]     remove stored objects nothing names (and evict the cache)
studio admin create-admin EMAIL   make a user an admin
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import yaml
from sqlmodel import select

from cluster import running
from cluster.errors import StudioError
from cluster.head import token_auth_for_drivers
from cluster.preflight import check
from cluster.settings import ConfigError, Settings, get_settings
from db import addresses, migrate
from db.models import Role, User
from db.session import session_scope
from models.registry import Capability
from pipeline.planning.llm import plan_text
from pipeline.planning.planner import PlanStyle
from pipeline.planning.text import decode_story
from pipeline.render.spec import FilmSpec

# Ray, Ray Serve and the render stack (`cluster.runtime`, `cluster.batch`, `pipeline.render.dag`)
# take seconds to import: the commands that start Ray import them, so `studio db` and `studio
# admin` answer without that wait.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="studio", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database migrations")
    db_commands = db.add_subparsers(dest="action", required=True)
    db_commands.add_parser("upgrade", help="apply every migration").add_argument(
        "revision", nargs="?", default="head"
    )
    db_commands.add_parser("downgrade", help="undo migrations down to REV").add_argument("revision")
    db_commands.add_parser("current", help="the database's revision")

    commands.add_parser("serve", help="run the API and engines on a local Ray until Ctrl-C")

    plan = commands.add_parser("plan", help="plan a story into a film spec (YAML or JSON)")
    plan.add_argument("story", type=Path)
    plan.add_argument("-o", "--output", type=Path, required=True)
    plan.add_argument("--seed", type=int, default=0)

    render = commands.add_parser("render", help="render a film spec (or a story: planned first)")
    render.add_argument("spec", type=Path)
    render.add_argument("-o", "--output", type=Path, required=True)
    render.add_argument("--quality", choices=["animatic", "final"], default="animatic")
    render.add_argument("--stop-at", choices=["plan", "voice", "animatic"], default=None)

    submit = commands.add_parser(
        "submit", help="render a JSONL manifest of specs as a batch on the running studio"
    )
    submit.add_argument("manifest", type=Path)
    submit.add_argument("--user", required=True, help="the email of the account that pays")

    storage = commands.add_parser("storage", help="stored objects")
    storage_commands = storage.add_subparsers(dest="action", required=True)
    storage_commands.add_parser(
        "gc", help="remove stored objects nothing names any more, and evict the stage cache"
    ).add_argument("--dry-run", action="store_true", help="report what would go; remove nothing")

    admin = commands.add_parser("admin", help="administration")
    admin_commands = admin.add_subparsers(dest="action", required=True)
    admin_commands.add_parser("create-admin", help="give a user the admin role").add_argument(
        "email"
    )

    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        return int(COMMANDS[args.command](settings, args) or 0)
    except ConfigError as error:
        print(f"studio: configuration error: {error}", file=sys.stderr)
        return 2


def _prepare(settings: Settings) -> None:
    """Preflight checks, then migrations: nothing is created when a setting is wrong."""
    check(settings)
    settings.jwt_key()
    settings.token_key()
    migrate.upgrade(settings.resolved_database_url)


def cmd_db(settings: Settings, args: argparse.Namespace) -> None:
    url = settings.resolved_database_url
    if args.action == "upgrade":
        check(settings)
        migrate.upgrade(url, args.revision)
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision)
    print(f"database at revision {migrate.current(url)}")


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    token_auth_for_drivers()
    import ray

    from cluster.runtime import start_studio, stop_studio  # deferred (see the imports)

    _prepare(settings)
    head = start_studio(settings)
    api_url = f"http://{settings.host}:{settings.port}"
    running.announce(
        settings,
        running.RunningStudio(
            ray_address=ray.get_runtime_context().gcs_address,
            api_url=api_url,
            dashboard_url=head.dashboard_url if head else None,
            pid=os.getpid(),
        ),
    )
    print(f"studio: API on {api_url} (docs at /docs); Ctrl-C stops")
    if head is not None:
        print(
            f"studio: Ray dashboard and job server on {head.dashboard_url}, "
            f"metrics on port {head.metrics_port}"
        )
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            time.sleep(0.5)
    finally:
        running.withdraw(settings)
        stop_studio(head)


def cmd_render(settings: Settings, args: argparse.Namespace) -> int:
    """Renders on the studio running on this data folder (its Ray and engines), else on
    STUDIO_RAY_ADDRESS, else on a Ray started here: no account, no credits."""
    spec = _read_or_plan(settings, args.spec, args.output)
    check(settings)
    if studio := running.find(settings):
        print(f"studio: rendering on the studio running at {studio.api_url}")
        settings = settings.model_copy(update={"ray_address": studio.ray_address})
    from tqdm import tqdm

    token_auth_for_drivers()
    # deferred (see the imports)
    from cluster.runtime import ensure_deployed, start_ray
    from pipeline.render.dag import EngineChoice, RenderInputs, render_film

    launched = time.monotonic()
    start_ray(settings, quiet=True)
    joined = time.monotonic()
    engines = EngineChoice() if args.quality == "animatic" else EngineChoice.configured(settings)
    ensure_deployed(settings, {engines.info(c).deployment for c in Capability})
    ready = time.monotonic()
    print(
        f"studio: ready in {ready - launched:.1f} s (Ray {joined - launched:.1f} s, "
        f"engines {ready - joined:.1f} s)"
    )
    inputs = RenderInputs(
        settings=settings, spec=spec, engines=engines, stop_at=args.stop_at,
        spec_dir=str(args.spec.resolve().parent),
    )  # fmt: skip
    bar = tqdm(total=100, unit="%", desc="render", bar_format="{desc}: {percentage:3.0f}%|{bar}|")
    weights = {"voice": (0, 15), "video": (15, 70), "assemble": (85, 15), "plan": (0, 100)}

    cached: list[str] = []

    def report(stage: str, status: str, progress: float) -> None:
        """Draws the bar; a stage that came from the cache says so, and stays listed."""
        start, span = weights.get(stage, (0, 0))
        if status == "cached" and stage not in cached:
            cached.append(stage)
        reused = f" (cached: {', '.join(cached)})" if cached else ""
        bar.set_description(f"render: {stage}{reused}")
        bar.n = round(start + span * progress / 100)
        bar.refresh()

    started = time.monotonic()
    report_, files = render_film(inputs, report)
    bar.close()
    args.output.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.output / name).write_bytes(data)
    elapsed = time.monotonic() - started
    if report_.cache_hits == ["film"]:
        reused = "nothing changed since the last render: its outputs, reused"
    else:
        reused = f"{len(report_.cache_hits)} cached stage(s)"
    print(
        f"studio: {report_.duration_s:.1f} s film rendered in {elapsed:.1f} s "
        f"({reused}); files in {args.output}"
    )
    for warning in report_.warnings:
        print(f"warning: {warning}")
    if "film.mp4" in files:
        print(f"film: {args.output / 'film.mp4'}")
    return 0


SPEC_SUFFIXES = {".json", ".yaml", ".yml"}


def cmd_plan(settings: Settings, args: argparse.Namespace) -> int:
    """Plans a story file into a spec file, for review and editing before `studio render`."""
    try:
        plan = plan_text(settings, decode_story(args.story.read_bytes()), PlanStyle(seed=args.seed))
    except StudioError as error:
        print(f"studio: {args.story}: {error.detail}", file=sys.stderr)
        return 1
    data = plan.spec.model_dump(mode="json")
    as_json = args.output.suffix.lower() == ".json"
    text = json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False)
    args.output.write_text(text, encoding="utf-8")
    for warning in plan.warnings:
        print(f"warning: {warning}")
    print(f"studio: {len(plan.spec.scenes)} scene(s) planned ({plan.planner}) in {args.output}")
    return 0


def _read_or_plan(settings: Settings, path: Path, output: Path) -> FilmSpec:
    """A spec file as it is; any other file is a story, planned (its spec kept in `output`)."""
    if path.suffix.lower() in SPEC_SUFFIXES:
        return FilmSpec.from_file(path)
    output.mkdir(parents=True, exist_ok=True)
    planned = output / "film.yaml"
    plan_args = argparse.Namespace(story=path, output=planned, seed=0)
    if cmd_plan(settings, plan_args) != 0:
        raise SystemExit(1)
    return FilmSpec.from_file(planned)


def cmd_submit(settings: Settings, args: argparse.Namespace) -> int:
    """The batch of `ray job submit ... python -m cluster.batch`, run from here on the studio
    running on this data folder."""
    token_auth_for_drivers()
    from cluster import batch  # deferred (see the imports)

    return batch.main([str(args.manifest), "--user", args.user])


def cmd_storage(settings: Settings, args: argparse.Namespace) -> int:
    from pipeline import storage_gc  # deferred (see the imports: it records Ray metrics)

    result = storage_gc.collect(settings, dry_run=args.dry_run)
    verb = "would reclaim" if args.dry_run else "reclaimed"
    for info in result.evicted:
        print(f"cache entry {info.key} ({info.size} bytes)")
    for info in result.swept:
        print(f"object {info.key} ({info.size} bytes)")
    for info in result.partial:
        print(f"unfinished write {info.key} ({info.size} bytes)")
    print(
        f"studio: {verb} {result.reclaimed_bytes} bytes: {len(result.swept)} unreferenced "
        f"object(s), {len(result.evicted)} cache entr(ies) over the budget, "
        f"{len(result.partial)} unfinished write(s); "
        f"{len(result.young)} unreferenced object(s) within the grace period kept"
    )
    print("stored bytes by kind: " + ", ".join(f"{k} {v}" for k, v in result.stored.items()))
    return 0


def cmd_admin(settings: Settings, args: argparse.Namespace) -> int:
    with session_scope(settings.resolved_database_url) as session:
        email = addresses.normalise(args.email)
        user = session.exec(select(User).where(User.email == email)).first()
        if user is None:
            print(f"studio: no user {args.email}", file=sys.stderr)
            return 1
        user.role = Role.admin
    print(f"studio: {args.email} is now an admin")
    return 0


COMMANDS = {
    "db": cmd_db,
    "serve": cmd_serve,
    "render": cmd_render,
    "plan": cmd_plan,
    "submit": cmd_submit,
    "storage": cmd_storage,
    "admin": cmd_admin,
}

if __name__ == "__main__":
    sys.exit(main())
