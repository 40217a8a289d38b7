"""What routes take as parameters: settings, a database session, storage, the current user.

The session is function-scoped: it closes when the route function returns, before the response
is sent, so a long response (an event stream, a download) never holds a database connection.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, TypeVar

import anyio.from_thread
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, col, select

from cluster.settings import Settings
from db.models import Asset, Job, Plan, Project, Role, User
from db.session import get_engine
from deployments.api import ratelimit
from deployments.api.problems import Forbidden, Unauthorized
from deployments.api.security import decode_token
from pipeline.jobs import submission as jobs
from pipeline.storage import Storage

Loaded = TypeVar("Loaded")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(settings: SettingsDep) -> AsyncIterator[Session]:
    """Async, so that opening and closing it costs no worker-thread hop (the session connects
    when first used, in the sync dependency or route that uses it, and the routes end their
    transactions there too: closing it only hands the connection back)."""
    with Session(get_engine(settings.resolved_database_url), expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def released(session: Session, loaded: Loaded) -> Loaded:
    """Ends a dependency's read transaction, so that its connection goes back to the pool while
    the route goes on (the pipeline opens sessions of its own: requests holding one connection
    while they wait for a second could exhaust the pool under load). What it loaded stays."""
    session.commit()
    return loaded


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


StorageDep = Annotated[Storage, Depends(get_storage)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="An access token from `POST /api/users/login` or `/api/users/refresh`.",
)


def authenticate(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> tuple[User, Plan]:
    """The user the access token names, with their plan; 401 for any defect in the token, for a
    user who no longer exists or is suspended, and for a token issued before a login of the
    user ended (its `ver` is not the user's `token_version`). The user row is read on every
    request, one primary-key look-up: it is what makes those refusals immediate."""
    if credentials is None:
        raise Unauthorized("a bearer access token is required")
    try:
        claims = decode_token(settings, credentials.credentials, "access")
        user_id = uuid.UUID(claims["sub"])
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("invalid or expired access token") from None
    found = session.exec(
        select(User, Plan)
        .join(Plan, col(Plan.code) == col(User.plan_code))
        .where(User.id == user_id)
    ).first()
    if found is None or not found[0].is_active:
        raise Unauthorized("the account of this token is deleted or suspended")
    if claims.get("ver", 0) != found[0].token_version:
        raise Unauthorized("this access token's login has ended: refresh or log in again")
    return released(session, found)


def limit_login(request: Request, email: str) -> None:
    """Counts a login attempt against the account's own limits (`ratelimit.LOGIN_LIMITS`);
    called from a sync route's worker thread, before the password is checked."""
    anyio.from_thread.run(
        ratelimit.check_login, request.app.state.limiter, request.app.state.limit_prefix, email
    )


async def current_user(
    request: Request, auth: Annotated[tuple[User, Plan], Depends(authenticate)]
) -> User:
    """The authenticated user, counted against their plan's rate limit."""
    user, plan = auth
    await ratelimit.check(
        request.app.state.limiter,
        f"{request.app.state.limit_prefix}:user:{user.id}",
        plan.rate_limit_per_minute,
        f"on the {plan.code} plan",
    )
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def current_plan(
    user: CurrentUser, auth: Annotated[tuple[User, Plan], Depends(authenticate)]
) -> Plan:
    return auth[1]


CurrentPlan = Annotated[Plan, Depends(current_plan)]


async def admin_user(user: CurrentUser) -> User:
    if user.role != Role.admin:
        raise Forbidden("this needs the admin role")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def owned_project(project_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Project:
    """Another user's project is answered exactly like a missing one: 404."""
    return released(session, jobs.owned_project(session, user, project_id))


OwnedProject = Annotated[Project, Depends(owned_project)]


def owned_job(job_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Job:
    return released(session, jobs.owned_job(session, user, job_id))


OwnedJob = Annotated[Job, Depends(owned_job)]


def owned_asset(asset_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Asset:
    return released(session, jobs.owned_asset(session, user, asset_id))


OwnedAsset = Annotated[Asset, Depends(owned_asset)]
