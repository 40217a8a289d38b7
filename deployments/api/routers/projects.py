"""Projects: a title and a film spec; rendering them into jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import Session, col, select

from cluster.settings import Settings
from db.models import Project, ProjectStatus, User
from db.types import utcnow
from deployments.api.deps import CurrentUser, OwnedProject, SessionDep, SettingsDep
from deployments.api.idempotency import Idempotency, IdempotencyDep
from deployments.api.pagination import Page, PageDep, fetch_page
from deployments.api.problems import problem_responses
from deployments.api.routers.jobs import SUBMIT_RESPONSES, submitted
from pipeline.errors import Conflict
from pipeline.fields import Document, StrictInput
from pipeline.jobs import submission as jobs
from pipeline.planning.planner import PlanStyle
from pipeline.planning.projects import plan_into_project
from pipeline.planning.text import StoryKind
from pipeline.render.spec import FilmSpec

router = APIRouter(
    prefix="/api/projects", tags=["projects"], responses=problem_responses(401, 422, 429)
)

Title = Annotated[str, Field(min_length=1, max_length=200)]


Story = Annotated[
    Document,
    Field(description="Prose, a screenplay or a one-line idea, planned into the project's spec"),
]


class ProjectCreate(StrictInput):
    """A project from a film spec, or from a story that is planned into one (`style` says how)."""

    title: Title | None = Field(default=None, description="Required with a spec; else planned.")
    spec: FilmSpec | None = None
    story: Story | None = None
    style: PlanStyle | None = None

    @model_validator(mode="after")
    def _spec_or_story(self) -> ProjectCreate:
        if (self.spec is None) == (self.story is None):
            raise ValueError("give either a spec or a story to plan")
        if self.spec is not None and self.title is None:
            raise ValueError("a project made from a spec needs a title")
        if self.style is not None and self.story is None:
            raise ValueError("a style is for planning a story")
        return self


class PlanRequest(StrictInput):
    """Plan again: a new story or style, else the project's own."""

    story: Story | None = None
    style: PlanStyle | None = None


class PlanReport(BaseModel):
    planner: str = Field(description="'llm' or 'cpu'")
    kind: StoryKind
    warnings: list[str]
    credits: int = Field(description="What planning cost: the CPU planner is free")


class ProjectUpdate(StrictInput):
    """Fields to change; a changed spec is rendered again with `regenerate`."""

    title: Title | None = None
    spec: FilmSpec | None = None


class ProjectSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    status: ProjectStatus
    created_at: datetime
    updated_at: datetime


class ProjectPublic(ProjectSummary):
    spec: dict[str, Any]
    outputs: dict[str, Any]
    story: str | None = None
    plan: PlanReport | None = Field(
        default=None, description="How the spec was planned, on the answer that planned it."
    )


@router.post("/create", status_code=status.HTTP_201_CREATED)
def create_project(
    body: ProjectCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> ProjectPublic:
    if body.story is not None:
        return _planned(session, user, settings, None, body.story, body.style, body.title)
    assert body.spec is not None and body.title is not None
    jobs.check_spec_assets(session, user, body.spec)
    project = Project(owner_id=user.id, title=body.title, spec=body.spec.model_dump(mode="json"))
    session.add(project)
    session.commit()
    return ProjectPublic.model_validate(project)


@router.post(
    "/{project_id}/plan",
    responses=problem_responses(404, 409),
    summary="Plan the project's story (again) into its spec, to review and edit before rendering",
)
def plan_project(
    project: OwnedProject,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    body: PlanRequest | None = None,
) -> ProjectPublic:
    body = body or PlanRequest()
    if project.status == ProjectStatus.rendering:
        raise Conflict("the project is rendering: cancel the render or wait for it to finish")
    story = body.story if body.story is not None else project.story
    if story is None:
        raise Conflict("the project has no story to plan: send one as `story`")
    style = body.style
    if style is None and project.plan_style is not None:
        style = PlanStyle.model_validate(project.plan_style)
    return _planned(session, user, settings, project, story, style, None)


def _planned(
    session: Session,
    user: User,
    settings: Settings,
    project: Project | None,
    story: str,
    style: PlanStyle | None,
    title: str | None,
) -> ProjectPublic:
    project, plan = plan_into_project(session, settings, user, project, story, style, title)
    report = PlanReport(
        planner=plan.planner, kind=plan.kind, warnings=plan.warnings, credits=plan.credits
    )
    return ProjectPublic.model_validate(project).model_copy(update={"plan": report})


@router.get("")
def list_projects(
    user: CurrentUser, session: SessionDep, page: PageDep, status: ProjectStatus | None = None
) -> Page[ProjectSummary]:
    query = select(Project).where(Project.owner_id == user.id)
    if status is not None:
        query = query.where(Project.status == status)
    ordered = query.order_by(col(Project.created_at).desc())
    return fetch_page(session, ordered, page, ProjectSummary)


@router.get("/{project_id}", responses=problem_responses(404))
def read_project(project: OwnedProject) -> ProjectPublic:
    return ProjectPublic.model_validate(project)


@router.patch("/{project_id}", responses=problem_responses(404, 409))
def update_project(
    project: OwnedProject, body: ProjectUpdate, user: CurrentUser, session: SessionDep
) -> ProjectPublic:
    if project.status == ProjectStatus.rendering:
        raise Conflict("the project is rendering: cancel the render or wait for it to finish")
    if body.title is not None:
        project.title = body.title
    if body.spec is not None:
        jobs.check_spec_assets(session, user, body.spec)
        project.spec = body.spec.model_dump(mode="json")
    project.updated_at = utcnow()
    session.add(project)
    session.commit()
    return ProjectPublic.model_validate(project)


@router.delete(
    "/{project_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409)
)
def delete_project(project: OwnedProject, session: SessionDep) -> None:
    """Deletes the project (`pipeline.jobs.submission.delete_project`)."""
    jobs.delete_project(session, project)
    session.commit()


@router.post(
    "/{project_id}/render",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
    responses=SUBMIT_RESPONSES,
    summary="Render the project: reserve its credits and queue a job (or estimate: dry_run)",
)
def render_project(
    project: OwnedProject,
    body: jobs.RenderRequest,
    user: CurrentUser,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return _submit(project, body, user, settings, idempotency, regenerate=False)


@router.post(
    "/{project_id}/regenerate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=None,
    responses=SUBMIT_RESPONSES,
    summary="Render the current spec again: unchanged scenes come from the cache",
)
def regenerate_project(
    project: OwnedProject,
    body: jobs.RenderRequest,
    user: CurrentUser,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    return _submit(project, body, user, settings, idempotency, regenerate=True)


def _submit(
    project: Project,
    body: jobs.RenderRequest,
    user: User,
    settings: Settings,
    idempotency: Idempotency,
    *,
    regenerate: bool,
) -> JSONResponse:
    key = idempotency.key
    return idempotency.run(
        lambda: submitted(
            jobs.submit_render(
                settings, user, project.id, body, regenerate=regenerate, idempotency_key=key
            )
        )
    )
