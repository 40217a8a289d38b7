"""Film pages: the user's films, a new film from a story, the plan as scene cards edited in
place with the render's price, the render's live progress (the API's job event stream) with
pause, resume and cancel, and the film to watch and download. They call the planning and job
functions the API's routers call."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError
from sqlmodel import col, select

from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import Job, Project, ProjectStatus
from db.types import utcnow
from deployments.api.deps import SessionDep, SettingsDep, StorageDep, released
from deployments.api.idempotency import KEY_PATTERN, Idempotency, Outcome, request_hash
from deployments.api.problems import IdempotencyInProgress
from deployments.api.routers.jobs import progress_events, submitted
from deployments.web.account_pages import FormText, problem_text
from deployments.web.session import CheckedForm, SignedIn, WebSession
from deployments.web.templating import page, redirect
from models.base import CameraMove
from pipeline.errors import Conflict, NotFound
from pipeline.jobs import submission as jobs
from pipeline.lifecycle import TERMINAL
from pipeline.planning.planner import PlanStyle
from pipeline.planning.projects import plan_into_project
from pipeline.render.spec import AspectRatio, FilmSpec

router = APIRouter(include_in_schema=False, tags=["web"])

RESOLUTIONS = (144, 240, 360, 480, 720, 1080)
QUALITIES = ("animatic", "final")
SUBTITLES_MAX_BYTES = 2 * 1024 * 1024
RENDER_WAIT_S = 5.0


class RenderKeyMissing(StudioError):
    slug, status, title = "render-key-missing", 422, "Render form without its key"


def owned_project(project_id: uuid.UUID, web: SignedIn, session: SessionDep) -> Project:
    return released(session, jobs.owned_project(session, web.user, project_id))


def owned_job(job_id: uuid.UUID, web: SignedIn, session: SessionDep) -> Job:
    return released(session, jobs.owned_job(session, web.user, job_id))


WebProject = Annotated[Project, Depends(owned_project)]
WebJob = Annotated[Job, Depends(owned_job)]


@router.get("/", name="films_page")
def films_page(request: Request, web: SignedIn, session: SessionDep) -> HTMLResponse:
    query = select(Project).where(Project.owner_id == web.user.id)
    films = session.exec(query.order_by(col(Project.created_at).desc()).limit(100)).all()
    return page(request, "films.html", {"session": web, "csrf": web.csrf, "films": films})


@router.get("/films/new", name="new_film_page")
def new_film_page(request: Request, web: SignedIn) -> HTMLResponse:
    return _new_film(request, web, {})


def _new_film(
    request: Request, web: WebSession, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    choices = {"resolutions": RESOLUTIONS, "aspect_ratios": get_args(AspectRatio)}
    return page(
        request,
        "new_film.html",
        {"session": web, "csrf": web.csrf, **choices, "form": {}, **context},
        status_code,
    )


@router.post("/films/new", dependencies=[CheckedForm])
def new_film(
    request: Request,
    web: SignedIn,
    session: SessionDep,
    settings: SettingsDep,
    story: Annotated[str, Form(max_length=30_000)],
    title: FormText = "",
    resolution: FormText = "720",
    aspect_ratio: FormText = "16:9",
) -> Response:
    form = {"story": story, "title": title, "resolution": resolution, "aspect_ratio": aspect_ratio}
    try:
        short_side = int(resolution) if resolution.isdecimal() and len(resolution) < 6 else None
        style = PlanStyle.model_validate({"resolution": short_side, "aspect_ratio": aspect_ratio})
        project, _ = plan_into_project(
            session, settings, web.user, None, story, style, title.strip()[:200] or None
        )
    except ValidationError as error:
        return _new_film(request, web, {"form": form, "error": problem_text(error)}, 422)
    except StudioError as error:
        return _new_film(request, web, {"form": form, "error": error.detail}, error.status)
    return redirect(request, "film_page", project_id=str(project.id))


@router.get("/films/{project_id}", name="film_page")
def film_page(
    request: Request, web: SignedIn, project: WebProject, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    return _film(request, web, project, session, settings, {})


def _film(
    request: Request,
    web: WebSession,
    project: Project,
    session: SessionDep,
    settings: SettingsDep,
    context: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    """The plan as scene cards, the price of an animatic (or why it cannot be rendered), the
    latest render."""
    try:
        estimate: Any = jobs.submit_render(
            settings, web.user, project.id, jobs.RenderRequest(dry_run=True)
        )
        price_error = None
    except StudioError as error:
        estimate, price_error = None, error.detail
    latest = session.exec(
        select(Job).where(Job.project_id == project.id).order_by(col(Job.created_at).desc())
    ).first()
    return page(
        request,
        "film.html",
        {
            "session": web,
            "csrf": web.csrf,
            "render_key": secrets.token_urlsafe(18),
            "film": project,
            "spec": project.spec,
            "cameras": [move.value for move in CameraMove],
            "qualities": QUALITIES,
            "estimate": estimate,
            "price_error": price_error,
            "latest": latest,
            "editable": project.status != ProjectStatus.rendering,
            **context,
        },
        status_code,
    )


@router.post("/films/{project_id}/scenes/{number}", dependencies=[CheckedForm])
def edit_scene(
    request: Request,
    web: SignedIn,
    project: WebProject,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    narration: Annotated[str, Form(max_length=4000)] = "",
    prompt: Annotated[str, Form(max_length=2000)] = "",
    camera: FormText = "static",
) -> Response:
    """Changes one scene's narration, prompt and camera move; the spec is validated whole, as
    the API's PATCH validates it."""
    spec = dict(project.spec)
    scenes = list(spec.get("scenes", []))
    if not 0 <= number < len(scenes):
        raise NotFound(f"scene {number} not found")
    try:
        if project.status == ProjectStatus.rendering:
            raise Conflict("the film is rendering: cancel the render or wait for it to finish")
        scenes[number] = {
            **scenes[number],
            "narration": narration.strip() or None,
            "prompt": prompt.strip() or None,
            "camera": camera,
        }
        checked = FilmSpec.model_validate({**spec, "scenes": scenes})
        jobs.check_spec_assets(session, web.user, checked)
    except ValidationError as error:
        context = {"error": problem_text(error), "error_scene": number}
        return _film(request, web, project, session, settings, context, 422)
    except StudioError as error:
        context = {"error": error.detail, "error_scene": number}
        return _film(request, web, project, session, settings, context, error.status)
    project.spec = checked.model_dump(mode="json")
    project.updated_at = utcnow()
    session.add(project)
    session.commit()
    return redirect(request, "film_page", project_id=str(project.id))


@router.post("/films/{project_id}/render", dependencies=[CheckedForm])
def render_film(
    request: Request,
    web: SignedIn,
    project: WebProject,
    session: SessionDep,
    settings: SettingsDep,
    quality: FormText = "animatic",
    idempotency_key: FormText = "",
) -> Response:
    """Reserves the credits and queues the render; a film rendered before is rendered again
    with its unchanged scenes from the cache. The form's key makes a double click (or a
    resent form) one render, charged once: the API's `Idempotency-Key`, and the ledger's."""
    try:
        body = jobs.RenderRequest.model_validate({"quality": quality})
        if re.fullmatch(KEY_PATTERN, idempotency_key) is None:
            raise RenderKeyMissing("this form has no valid render key: reload the page")
        outcome = _render_once(settings, web, project, body, idempotency_key, request.url.path)
    except ValidationError as error:
        return _film(request, web, project, session, settings, {"error": problem_text(error)}, 422)
    except StudioError as error:
        context = {"error": error.detail}
        return _film(request, web, project, session, settings, context, error.status)
    return redirect(request, "job_page", job_id=str(outcome.body["id"]))


def _render_once(
    settings: Settings,
    web: WebSession,
    project: Project,
    body: jobs.RenderRequest,
    key: str,
    path: str,
) -> Outcome:
    """The render of `key`: submitted once, its job found again by a later request with the
    same key. A second click that arrives while the first is still submitting waits for it."""
    idempotency = Idempotency(
        settings, web.user.id, key, request_hash("POST", path, body.quality.encode())
    )
    regenerate = bool(project.outputs)

    def submit() -> tuple[int, Any]:
        return submitted(
            jobs.submit_render(
                settings, web.user, project.id, body, regenerate=regenerate, idempotency_key=key
            )
        )

    deadline = time.monotonic() + RENDER_WAIT_S
    while True:
        try:
            return idempotency.outcome(submit)
        except IdempotencyInProgress:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@router.get("/jobs/{job_id}", name="job_page")
def job_page(request: Request, web: SignedIn, job: WebJob) -> HTMLResponse:
    context = {"session": web, "csrf": web.csrf, "job": job, "done": job.status in TERMINAL}
    return page(request, "job.html", context)


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse)
async def follow_job(job: WebJob, settings: SettingsDep) -> AsyncIterator[ServerSentEvent]:
    """The API's job event stream, for the page's session."""
    async for event in progress_events(settings, job):
        yield event


@router.post("/jobs/{job_id}/{action}", dependencies=[CheckedForm])
def control_job(
    request: Request, web: SignedIn, job: WebJob, action: str, settings: SettingsDep
) -> Response:
    """Pause, resume or cancel; a move the job's state does not allow shows why (409)."""
    controls = {"pause": jobs.pause_job, "resume": jobs.resume_job, "cancel": jobs.cancel_job}
    if action not in controls:
        raise NotFound(f"no job action {action!r}")
    try:
        controls[action](settings, web.user, job.id)
    except StudioError as error:
        context = {"session": web, "csrf": web.csrf, "job": job, "error": error.detail}
        return page(request, "job.html", context, error.status)
    return redirect(request, "job_page", job_id=str(job.id))


@router.get("/films/{project_id}/watch", name="watch_page")
def watch_page(
    request: Request, web: SignedIn, project: WebProject, settings: SettingsDep, storage: StorageDep
) -> HTMLResponse:
    """The film with its subtitles track, the thumbnails (one is chosen to publish with), the
    storyboard and the downloads, through signed URLs of the last render's outputs."""
    outputs: dict[str, Any] = project.outputs or {}
    if "film.mp4" not in outputs:
        raise NotFound("this film has not been rendered yet")
    expiry = settings.presign_expiry_s
    links = {name: storage.url(out["key"], expiry, name) for name, out in sorted(outputs.items())}
    thumbnails = [name for name in links if name.startswith("thumbnail")]
    context = {
        "session": web,
        "csrf": web.csrf,
        "film": project,
        "links": links,
        "thumbnails": thumbnails,
        "has_vtt": "subtitles.vtt" in outputs,
        "language": project.spec.get("language", "en"),
    }
    return page(request, "watch.html", context)


@router.get("/films/{project_id}/subtitles.vtt", name="film_subtitles")
def film_subtitles(project: WebProject, storage: StorageDep) -> Response:
    """The WebVTT track from the studio's own origin (a `<track>` is fetched same-origin)."""
    found = (project.outputs or {}).get("subtitles.vtt")
    if found is None or found.get("size", 0) > SUBTITLES_MAX_BYTES:
        raise NotFound("this film has no subtitles")
    return Response(storage.get_bytes(found["key"]), media_type="text/vtt; charset=utf-8")
