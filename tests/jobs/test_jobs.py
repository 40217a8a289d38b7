"""Jobs from submission to settlement on a real local Ray: the scheduler runs them, the ledger
reserves at submit, captures on success and releases on failure or cancel."""

from __future__ import annotations

import struct
import threading
import time
import uuid
import zlib
from typing import Any

import pytest
import ray
from sqlmodel import select

from cluster.settings import Settings
from db.models import Asset, Job, JobStatus, Plan, Project, ProjectStatus, User
from db.session import session_scope
from pipeline.errors import InsufficientCredits, LicenceRefused, PlanLimit, SpecInvalid
from pipeline.jobs import submission as jobs
from pipeline.jobs.scheduler import scheduler
from pipeline.jobs.submission import RenderRequest
from pipeline.ledger.actor import ledger_handle
from pipeline.ledger.pricing import Estimate
from pipeline.render.spec import FilmSpec
from pipeline.storage import LocalStorage, open_storage
from tests.jobs.conftest import (
    balance,
    finished,
    job_row,
    make_project,
    make_user,
    outputs_of,
    settled_balance,
    tiny_spec,
    wait_for,
)

pytestmark = pytest.mark.ray


def test_a_render_runs_links_its_outputs_and_captures_what_it_used(studio: Settings) -> None:
    user = make_user(studio)
    project = make_project(studio, user, tiny_spec(scenes=2))
    granted, _ = balance(studio, user)
    estimate = jobs.submit_render(studio, user, project.id, RenderRequest(dry_run=True))
    assert isinstance(estimate, Estimate) and estimate.credits > 0
    assert balance(studio, user) == (granted, 0), "a dry run reserves nothing"

    job = jobs.submit_render(studio, user, project.id, RenderRequest())
    assert balance(studio, user) == (granted - estimate.credits, estimate.credits)
    done = wait_for(studio, job.id, finished)
    assert done.status == JobStatus.succeeded, done.error
    assert done.progress == 100
    assert done.stages["assemble"]["status"] == "succeeded"
    used = done.output["credits_used"]
    assert 0 < used <= estimate.credits
    assert settled_balance(studio, user) == (granted - used, 0)
    names = {asset.filename for asset in outputs_of(studio, project.id)}
    assert {"film.mp4", "subtitles.srt", "thumbnail.jpg", "storyboard.png"} <= names
    with session_scope(studio.resolved_database_url) as session:
        stored = session.get(Project, project.id)
        assert stored is not None and stored.status == ProjectStatus.ready
        assert stored.outputs["film.mp4"]["content_type"] == "video/mp4"


def test_regenerating_an_unchanged_project_is_free(studio: Settings) -> None:
    user = make_user(studio)
    project = make_project(studio, user, tiny_spec(seconds=1.5))
    first = wait_for(studio, jobs.submit_render(studio, user, project.id, RenderRequest()).id,
                     finished)  # fmt: skip
    available, _ = balance(studio, user)
    again = jobs.submit_render(studio, user, project.id, RenderRequest(), regenerate=True)
    second = wait_for(studio, again.id, finished)
    assert second.status == JobStatus.succeeded
    assert second.output["cache"] == {"hits": ["film"], "misses": []}
    assert {stage["status"] for stage in second.stages.values()} == {"cached"}
    assert second.output["credits_used"] == 0
    assert settled_balance(studio, user) == (available, 0)
    assert (
        first.output["outputs"]["film.mp4"]["sha256"]
        == second.output["outputs"]["film.mp4"]["sha256"]
    )


def test_only_the_affordable_renders_of_a_concurrent_burst_are_accepted(studio: Settings) -> None:
    user = make_user(studio, plan="studio")
    spec = tiny_spec(seconds=1)
    projects = [make_project(studio, user, spec) for _ in range(6)]
    cost = jobs.submit_render(studio, user, projects[0].id, RenderRequest(dry_run=True)).credits
    available, _ = balance(studio, user)
    ledger = ledger_handle(studio.resolved_database_url)
    ray.get(ledger.credit.remote(user.id, -(available - 2 * cost), "adjustment", "trim", "test"))
    with session_scope(studio.resolved_database_url) as session:
        plan = session.exec(select(Plan).where(Plan.code == "studio")).one()
        assert plan.max_concurrent_renders >= 6
    accepted, refused = [], []

    def submit(project_id: object) -> None:
        try:
            accepted.append(jobs.submit_render(studio, user, project_id, RenderRequest()))
        except InsufficientCredits:
            refused.append(project_id)

    threads = [threading.Thread(target=submit, args=(p.id,)) for p in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(accepted), len(refused)) == (2, 4)
    assert balance(studio, user) == (0, 2 * cost)
    for job in accepted:
        wait_for(studio, job.id, finished)


def test_cancel_mid_render_releases_the_credits_and_links_nothing(studio: Settings) -> None:
    user = make_user(studio)
    project = make_project(studio, user, tiny_spec(seconds=4, scenes=3, resolution=360, fps=24))
    available, _ = balance(studio, user)
    job = jobs.submit_render(studio, user, project.id, RenderRequest())
    wait_for(studio, job.id, lambda j: j.status == JobStatus.running and j.progress > 0)
    cancelled = jobs.cancel_job(studio, user, job.id)
    assert cancelled.status == JobStatus.cancelled
    assert balance(studio, user) == (available, 0)
    time.sleep(5)
    assert job_row(studio, job.id).status == JobStatus.cancelled
    assert outputs_of(studio, project.id) == []
    with session_scope(studio.resolved_database_url) as session:
        stored = session.get(Project, project.id)
        assert stored is not None and stored.outputs == {}
    with pytest.raises(Exception, match="cancelled"):
        jobs.cancel_job(studio, user, job.id)


def test_a_failed_render_charges_nothing(studio: Settings) -> None:
    user = make_user(studio)
    asset = stored_asset(studio, user, png_header_only())  # passes submit, fails to decode
    spec = tiny_spec().model_dump(mode="json")
    spec["scenes"][0]["image"] = str(asset.id)
    project = make_project(studio, user, FilmSpec.model_validate(spec))
    available, _ = balance(studio, user)
    job = jobs.submit_render(studio, user, project.id, RenderRequest())
    failed = wait_for(studio, job.id, finished)
    assert failed.status == JobStatus.failed
    assert settled_balance(studio, user) == (available, 0)
    assert outputs_of(studio, project.id) == []


def test_a_spec_naming_a_server_file_is_refused_at_submit(studio: Settings) -> None:
    user = make_user(studio)
    spec = tiny_spec().model_dump(mode="json")
    spec["scenes"][0]["image"] = {"path": "examples/assets/astronaut.png"}
    project = make_project(studio, user, FilmSpec.model_validate(spec))
    with pytest.raises(SpecInvalid, match="file paths are not accepted"):
        jobs.submit_render(studio, user, project.id, RenderRequest())
    assert balance(studio, user)[1] == 0


def test_a_job_naming_a_server_file_fails_without_reading_it(studio: Settings) -> None:
    """A spec that reached a job without the API's check (an old row): the render refuses it."""
    spec = tiny_spec().model_dump(mode="json")
    spec["scenes"][0]["image"] = {"path": "examples/assets/astronaut.png"}
    failed = run_job_row(studio, make_user(studio), {"spec": spec, "engines": {}})
    assert failed.status == JobStatus.failed
    assert "only uploaded assets" in (failed.error or "")


def test_a_job_error_names_no_server_path(studio: Settings) -> None:
    user = make_user(studio)
    storage = open_storage(studio)
    assert isinstance(storage, LocalStorage)
    (storage.root / "uploads" / "folder.png").mkdir(parents=True)  # reading it is an OSError
    with session_scope(studio.resolved_database_url) as session:
        asset = Asset(owner_id=user.id, kind="upload", filename="folder.png",
                      content_type="image/png", size=1, sha256="0" * 64,
                      storage_key="uploads/folder.png")  # fmt: skip
        session.add(asset)
    spec = tiny_spec().model_dump(mode="json")
    spec["scenes"][0]["image"] = str(asset.id)
    failed = run_job_row(studio, user, {"spec": spec, "engines": {}})
    assert failed.status == JobStatus.failed
    error = failed.error or ""
    assert error == "the render could not read a file it needs"


def run_job_row(studio: Settings, user: User, job_input: dict[str, Any]) -> Job:
    with session_scope(studio.resolved_database_url) as session:
        job = Job(user_id=user.id, type="render", input=job_input)
        session.add(job)
    scheduler(studio).wake.remote()
    return wait_for(studio, job.id, finished)


def stored_asset(studio: Settings, user: User, data: bytes) -> Asset:
    stored = open_storage(studio).put_bytes(f"uploads/{uuid.uuid4().hex}.png", data)
    with session_scope(studio.resolved_database_url) as session:
        asset = Asset(owner_id=user.id, kind="image", filename="a.png", content_type="image/png",
                      size=stored.size, sha256=stored.sha256, storage_key=stored.key)  # fmt: skip
        session.add(asset)
    return asset


def png_header_only(width: int = 64, height: int = 64) -> bytes:
    """A PNG whose header is sound and whose pixel data is not."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + body + struct.pack(">I", zlib.crc32(body))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"\x00\x00\x00\x04IDATjunk\x00\x00\x00\x00"


def test_a_job_row_that_cannot_be_read_fails_at_once(studio: Settings) -> None:
    user = make_user(studio)
    with session_scope(studio.resolved_database_url) as session:
        job = Job(user_id=user.id, type="render", input={"engines": {}})
        session.add(job)
    scheduler(studio).wake.remote()
    failed = wait_for(studio, job.id, finished)
    assert (failed.status, failed.attempts) == (JobStatus.failed, 1)
    assert "spec" in (failed.error or "")


def test_another_users_job_is_not_found(studio: Settings) -> None:
    owner, stranger = make_user(studio), make_user(studio)
    project = make_project(studio, owner, tiny_spec())
    job = jobs.submit_render(studio, owner, project.id, RenderRequest(stop_at="plan"))
    for action in (jobs.cancel_job, jobs.pause_job, jobs.resume_job):
        with pytest.raises(Exception, match="not found"):
            action(studio, stranger, job.id)
    with pytest.raises(Exception, match="not found"):
        jobs.submit_render(studio, stranger, project.id, RenderRequest())
    wait_for(studio, job.id, finished)


def test_pause_and_resume(studio: Settings) -> None:
    user = make_user(studio)
    project = make_project(studio, user, tiny_spec(seconds=3, scenes=3, resolution=360, fps=24))
    job = jobs.submit_render(studio, user, project.id, RenderRequest())
    wait_for(studio, job.id, lambda j: j.status == JobStatus.running and j.progress > 0)
    assert jobs.pause_job(studio, user, job.id).status == JobStatus.paused
    time.sleep(2)
    assert job_row(studio, job.id).status == JobStatus.paused
    _, held = balance(studio, user)
    assert held > 0, "a paused job keeps its reservation"
    jobs.resume_job(studio, user, job.id)
    done = wait_for(studio, job.id, finished)
    assert done.status == JobStatus.succeeded
    assert settled_balance(studio, user)[1] == 0


def test_a_studio_plan_job_overtakes_waiting_free_jobs(studio: Settings) -> None:
    free, pro = make_user(studio), make_user(studio, plan="studio")
    long = make_project(studio, free, tiny_spec(seconds=4, scenes=2, resolution=360, fps=24))
    waiting = make_project(studio, make_user(studio), tiny_spec())
    urgent = make_project(studio, pro, tiny_spec())
    first = jobs.submit_render(studio, free, long.id, RenderRequest())
    wait_for(studio, first.id, lambda j: j.status == JobStatus.running)
    free_job = jobs.submit_render(studio, job_owner(studio, waiting), waiting.id, RenderRequest())
    pro_job = jobs.submit_render(studio, pro, urgent.id, RenderRequest())
    done = [wait_for(studio, j.id, finished) for j in (first, free_job, pro_job)]
    assert all(j.status == JobStatus.succeeded for j in done)
    assert done[2].started_at < done[1].started_at, "studio plan ran before the earlier free job"


def job_owner(settings: Settings, project: Project):  # type: ignore[no-untyped-def]
    from db.models import User

    with session_scope(settings.resolved_database_url) as session:
        return session.get(User, project.owner_id)


def test_a_model_licence_the_plan_forbids_is_refused_at_submit(studio: Settings) -> None:
    user = make_user(studio, plan="creator")
    project = make_project(studio, user, tiny_spec())
    final = studio.model_copy(update={"lipsync_engine": "wav2lip"})
    with pytest.raises(LicenceRefused, match="wav2lip-noncommercial"):
        jobs.submit_render(final, user, project.id, RenderRequest(quality="final"))
    assert balance(studio, user)[1] == 0


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"voice": {"gender": "female", "age": "adult", "language": "xx"}}, SpecInvalid),
        ({"image": "00000000-0000-0000-0000-000000000000"}, SpecInvalid),
    ],
)
def test_bad_scenes_are_refused_at_submit(
    studio: Settings, change: dict[str, object], error: type[Exception]
) -> None:
    user = make_user(studio)
    spec = tiny_spec().model_dump(mode="json")
    spec["scenes"][0].update(change)
    with session_scope(studio.resolved_database_url) as session:
        project = Project(owner_id=user.id, title="bad", spec=spec)
        session.add(project)
    with pytest.raises(error):
        jobs.submit_render(studio, user, project.id, RenderRequest())
    assert balance(studio, user)[1] == 0


def test_a_free_plan_cannot_render_above_its_resolution(studio: Settings) -> None:
    user = make_user(studio)
    project = make_project(studio, user, tiny_spec(resolution=1080))
    with pytest.raises(PlanLimit, match="1080p"):
        jobs.submit_render(studio, user, project.id, RenderRequest())


def test_a_corrupt_uploaded_image_is_refused_at_submit(studio: Settings) -> None:
    user = make_user(studio)
    asset = stored_asset(studio, user, b"\x89PNG\r\n\x1a\nnot really")
    spec = tiny_spec().model_dump(mode="json")
    spec["scenes"][0]["image"] = str(asset.id)
    project = make_project(studio, user, FilmSpec.model_validate(spec))
    with pytest.raises(SpecInvalid, match="not a readable image"):
        jobs.submit_render(studio, user, project.id, RenderRequest())


def test_a_flagged_prompt_is_held_and_charges_nothing_until_approved(studio: Settings) -> None:
    from db.models import ModerationFlag

    user = make_user(studio)
    granted, _ = balance(studio, user)
    flagged = tiny_spec().model_dump(mode="json")
    flagged["scenes"][0]["narration"] = "Here is how to make a bomb at home."
    project = make_project(studio, user, FilmSpec.model_validate(flagged))
    job = jobs.submit_render(studio, user, project.id, RenderRequest())
    assert job.status == JobStatus.held
    time.sleep(2)
    assert job_row(studio, job.id).status == JobStatus.held, "the scheduler leaves it alone"
    assert balance(studio, user) == (granted, 0), "nothing reserved while held"
    with session_scope(studio.resolved_database_url) as session:
        flags = session.exec(select(ModerationFlag).where(ModerationFlag.job_id == job.id)).all()
        assert [flag.kind for flag in flags] and "bomb" in flags[0].excerpt
    jobs.release_hold(studio, job.id)
    done = wait_for(studio, job.id, finished)
    assert done.status == JobStatus.succeeded
    assert settled_balance(studio, user) == (granted - done.output["credits_used"], 0)


def test_a_rejected_held_job_fails_and_charges_nothing(studio: Settings) -> None:
    user = make_user(studio)
    granted, _ = balance(studio, user)
    flagged = tiny_spec().model_dump(mode="json")
    flagged["scenes"][0]["prompt"] = "a beheading video"
    project = make_project(studio, user, FilmSpec.model_validate(flagged))
    job = jobs.submit_render(studio, user, project.id, RenderRequest())
    assert job.status == JobStatus.held
    failed = jobs.reject_held(studio, job.id, "violent content")
    assert failed.status == JobStatus.failed
    assert "violent content" in (failed.error or "")
    assert balance(studio, user) == (granted, 0)
