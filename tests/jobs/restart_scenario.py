"""Two renders running when the whole local cluster stops; a new cluster starts the studio again.
Run as a program by test_restart.py (it owns its own Ray). Prints a JSON report."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ray
from sqlmodel import func, select

from cluster.runtime import deploy, start_ray
from cluster.settings import Settings
from db.migrate import upgrade
from db.models import JobStatus, LedgerEntry, LedgerKind
from db.session import session_scope
from models.registry import CPU_DEFAULTS, engine_info
from pipeline.jobs import submission as jobs
from pipeline.jobs.scheduler import scheduler
from pipeline.jobs.submission import RenderRequest
from tests.jobs.conftest import (
    balance,
    finished,
    job_row,
    make_project,
    make_user,
    settled_balance,
    tiny_spec,
    wait_for,
)

ENGINES = {engine_info(c, n).deployment for c, n in CPU_DEFAULTS.items()}


def start(settings: Settings) -> None:
    start_ray(settings, quiet=True)
    deploy(settings, ENGINES)
    scheduler(settings)


def main(data: Path) -> dict[str, object]:
    settings = Settings(data_dir=data, render_workers=2, _env_file=None)
    upgrade(settings.resolved_database_url)
    start(settings)
    user = make_user(settings, plan="studio")
    granted, _ = balance(settings, user)
    spec = tiny_spec(seconds=4, scenes=3, resolution=360, fps=24)
    submitted = [
        jobs.submit_render(settings, user, make_project(settings, user, spec).id, RenderRequest())
        for _ in range(2)
    ]
    for job in submitted:
        wait_for(settings, job.id, lambda j: j.status == JobStatus.running and j.progress > 0)
    statuses_at_stop = [job_row(settings, job.id).status for job in submitted]
    ray.shutdown()
    time.sleep(2)
    start(settings)
    done = [wait_for(settings, job.id, finished, timeout_s=600) for job in submitted]
    available, held = settled_balance(settings, user)
    with session_scope(settings.resolved_database_url) as session:
        captures = {
            str(job.reservation_id): session.exec(
                select(func.count()).where(
                    LedgerEntry.reservation_id == job.reservation_id,
                    LedgerEntry.kind == LedgerKind.capture,
                    LedgerEntry.account.like("user:%:held"),
                )
            ).one()
            for job in done
        }
    ray.shutdown()
    return {
        "statuses_at_stop": statuses_at_stop,
        "statuses": [job.status for job in done],
        "attempts": [job.attempts for job in done],
        "used": [job.output.get("credits_used") for job in done],
        "granted": granted,
        "available": available,
        "held": held,
        "captures": captures,
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
