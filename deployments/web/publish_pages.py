"""Publishing a film to YouTube from the pages: link the channel (the API's Google flow, back to
this page), then title, description, playlist, privacy, thumbnail, captions and YouTube's
synthetic-media label (turned off only with a stated reason), as a publish job whose progress
is the job page's. They call the publishing functions of the API's YouTube router."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select

from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import Job, Project, YoutubePlaylist
from deployments.api.deps import SessionDep, SettingsDep, StorageDep
from deployments.api.routers.auth_google import set_flow_cookies
from deployments.web.account_pages import FormText, problem_text
from deployments.web.film_pages import WebProject
from deployments.web.session import CheckedForm, SignedIn, WebSession
from deployments.web.templating import page, redirect
from pipeline.errors import NotFound
from pipeline.jobs import submission as jobs
from pipeline.publish.disclosure import synthetic_engines
from pipeline.publish.google_oauth import Purpose, begin_authorization, linked_channel
from pipeline.publish.publishing import FILM, PublishRequest, create_playlist
from pipeline.storage import Storage

router = APIRouter(include_in_schema=False, tags=["web"])

PRIVACY = ("private", "unlisted", "public")
PUBLISHES_SHOWN = 5
LONG_TEXT = Annotated[str, Form(max_length=5000)]


class LabelReasonMissing(StudioError):
    slug, status, title = "label-reason-missing", 422, "Say why the label is off"


@router.get("/films/{project_id}/publish", name="publish_page")
def publish_page(
    request: Request,
    web: SignedIn,
    project: WebProject,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    thumbnail: Annotated[str, Query(max_length=255)] = "thumbnail.jpg",
    playlist: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """`thumbnail` is the watch page's choice, `playlist` one just made."""
    form = {"title": project.title[:100], "thumbnail": thumbnail, "playlist_id": playlist}
    return _publish(request, web, project, session, storage, settings, form)


def _publish(
    request: Request,
    web: WebSession,
    project: Project,
    session: SessionDep,
    storage: Storage,
    settings: Settings,
    form: dict[str, Any],
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    outputs: dict[str, Any] = project.outputs or {}
    if FILM not in outputs:
        raise NotFound("this film has not been rendered yet")
    thumbnails = {
        name: storage.url(out["key"], settings.presign_expiry_s, name)
        for name, out in sorted(outputs.items())
        if name.startswith("thumbnail")
    }
    playlists = session.exec(
        select(YoutubePlaylist)
        .where(YoutubePlaylist.user_id == web.user.id)
        .order_by(col(YoutubePlaylist.created_at).desc())
    ).all()
    publishes = session.exec(
        select(Job)
        .where(Job.project_id == project.id, Job.type == "publish")
        .order_by(col(Job.created_at).desc())
        .limit(PUBLISHES_SHOWN)
    ).all()
    shown = {
        "session": web,
        "csrf": web.csrf,
        "film": project,
        "channel": linked_channel(session, web.user.id),
        "thumbnails": thumbnails,
        "playlists": playlists,
        "privacies": PRIVACY,
        "engines": synthetic_engines(session, project, FILM),
        "publishes": publishes,
        "form": form,
        **(context or {}),
    }
    return page(request, "publish.html", shown, status_code)


@router.get("/films/{project_id}/publish/link", name="link_channel_page")
def link_channel_page(
    request: Request, web: SignedIn, project: WebProject, session: SessionDep, settings: SettingsDep
) -> Response:
    """To Google's consent screen for the channel; the API's callback links it and comes back
    to this film's publish page. A link, not a form: a forged start links nothing but the
    signed-in user's own channel, in their own browser."""
    begun = begin_authorization(session, settings, Purpose.link, web.user)
    response = RedirectResponse(begun.url, status_code=303)
    set_flow_cookies(response, request, settings, begun.binding, str(project.id))
    return response


@router.post("/films/{project_id}/publish", dependencies=[CheckedForm])
def publish(
    request: Request,
    web: SignedIn,
    project: WebProject,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    title: FormText,
    description: LONG_TEXT = "",
    privacy_status: FormText = "private",
    playlist_id: FormText = "",
    thumbnail: FormText = "",
    captions: FormText = "",
    label: FormText = "",
    label_off_reason: FormText = "",
) -> Response:
    """Queues the publish job and shows its progress. An unticked label needs its reason
    when a realistic engine made part of the film (the label is only offered then)."""
    form = {
        "title": title,
        "description": description,
        "privacy_status": privacy_status,
        "playlist_id": playlist_id,
        "thumbnail": thumbnail,
        "captions": bool(captions),
        "label_off": not label,
        "label_off_reason": label_off_reason,
    }
    engines = synthetic_engines(session, project, FILM)
    reason = label_off_reason.strip() if engines and not label else None
    try:
        if reason == "":
            raise LabelReasonMissing("turning the synthetic-media label off needs a reason")
        body = PublishRequest.model_validate(
            {
                "title": title,
                "description": description,
                "privacy_status": privacy_status,
                "playlist_id": playlist_id or None,
                "thumbnail": thumbnail or None,
                "captions": bool(captions),
                "synthetic_label_off_reason": reason,
            }
        )
        job = jobs.submit_publish(settings, session, web.user, project.id, body)
    except ValidationError as error:
        context = {"error": problem_text(error)}
        return _publish(request, web, project, session, storage, settings, form, context, 422)
    except StudioError as error:
        context = {"error": error.detail}
        return _publish(
            request, web, project, session, storage, settings, form, context, error.status
        )
    return redirect(request, "job_page", job_id=str(job.id))


@router.post("/films/{project_id}/playlists", dependencies=[CheckedForm])
def new_playlist(
    request: Request,
    web: SignedIn,
    project: WebProject,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    playlist_title: Annotated[str, Form(min_length=1, max_length=150)],
    privacy_status: FormText = "private",
) -> Response:
    """A new playlist on the linked channel, chosen on the publish page that comes back."""
    privacy = privacy_status if privacy_status in PRIVACY else "private"
    try:
        created = create_playlist(session, settings, web.user, playlist_title.strip(), "", privacy)
    except StudioError as error:
        form = {"title": project.title[:100], "thumbnail": "thumbnail.jpg"}
        context = {"error": error.detail}
        return _publish(
            request, web, project, session, storage, settings, form, context, error.status
        )
    query = {"playlist": created.youtube_id}
    return redirect(request, "publish_page", query, project_id=str(project.id))
