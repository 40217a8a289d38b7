"""YouTube's label for realistic altered or synthetic content (`status.containsSyntheticMedia`
on videos.insert): a publish sets it when a realistic neural engine (`EngineInfo.realistic`)
made part of the film, read from the engines recorded with the render job that made the
project's film. Its owner may turn the label off only with a stated reason, which the audit log
keeps with the engines it concerned."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session, col, select

from db.models import AuditLog, Job, JobStatus, Project
from models.registry import choice_capability, engine_info

LABEL_OFF = "youtube.synthetic_label_off"


def film_render_job(session: Session, project: Project, film: str) -> Job | None:
    """The succeeded render job whose outputs are the project's current `film`."""
    key = (project.outputs.get(film) or {}).get("key")
    if key is None:
        return None
    jobs = session.exec(
        select(Job)
        .where(Job.project_id == project.id, Job.type == "render")
        .where(Job.status == JobStatus.succeeded)
        .order_by(col(Job.completed_at).desc())
    ).all()
    return next(
        (job for job in jobs if (job.output.get("outputs") or {}).get(film, {}).get("key") == key),
        None,
    )


def realistic_engines(engines: Mapping[str, Any]) -> list[str]:
    """The realistic engines of a render's recorded choice, as "stage: engine"."""
    found = []
    for stage, name in engines.items():
        if name is None:
            continue
        if engine_info(choice_capability(stage), name).realistic:
            found.append(f"{stage}: {name}")
    return found


def synthetic_engines(session: Session, project: Project, film: str) -> list[str]:
    """The realistic engines that made the project's `film` (none when no render job of the
    project made it)."""
    job = film_render_job(session, project, film)
    return realistic_engines(job.input.get("engines") or {}) if job else []


def label_off_audit(
    user_id: uuid.UUID, project: Project, job_id: uuid.UUID, reason: str, engines: list[str]
) -> AuditLog:
    """The audit entry of a publish whose owner turned the label off."""
    return AuditLog(
        actor_id=user_id,
        action=LABEL_OFF,
        target_type="project",
        target_id=str(project.id),
        detail={"reason": reason, "engines": engines, "publish_job_id": str(job_id)},
    )
