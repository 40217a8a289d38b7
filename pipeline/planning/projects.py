"""A story planned into a project's spec: what the API's project routes and the web studio's
new-film page both do."""

from __future__ import annotations

from sqlmodel import Session

from cluster.settings import Settings
from db.models import Project, User
from db.types import utcnow
from pipeline.ledger.actor import ledger_client
from pipeline.planning.llm import Payer, plan_text
from pipeline.planning.planner import Plan, PlanStyle


def plan_into_project(
    session: Session,
    settings: Settings,
    user: User,
    project: Project | None,
    story: str,
    style: PlanStyle | None,
    title: str | None,
) -> tuple[Project, Plan]:
    """Plans the story and stores the plan as the spec of `project` (a new project of the user's
    when None, titled `title` or the plan's title). Planning with a model is charged to the user
    (`plan_text`); a story that cannot be planned costs nothing and stores nothing."""
    style = style or PlanStyle()
    payer = Payer(ledger_client(settings.resolved_database_url), user.id)
    plan = plan_text(settings, story, style, payer)
    if project is None:
        project = Project(owner_id=user.id, title=title or plan.spec.title, spec={})
    project.spec = plan.spec.model_dump(mode="json")
    project.story = plan.story or story
    project.plan_style = style.model_dump(mode="json")
    project.updated_at = utcnow()
    session.add(project)
    session.commit()
    return project, plan
