"""The studio's REST API as one FastAPI app; `deployments.api.ingress` serves it on Ray Serve and
`uvicorn --factory` can serve it alone. Migrations are applied by whoever starts the studio."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from cluster.settings import Settings, get_settings
from deployments.api import docs
from deployments.api.bodylimit import BodyLimitMiddleware
from deployments.api.headers import SecurityHeadersMiddleware
from deployments.api.inputs import storable_json
from deployments.api.metrics_middleware import MetricsMiddleware
from deployments.api.multipart import MiB
from deployments.api.problems import (
    PROBLEM_JSON,
    Problem,
    install_error_handlers,
    problem_responses,
)
from deployments.api.ratelimit import IpRateLimitMiddleware, Limiter, open_limiter, studio_prefix
from deployments.api.routers import (
    admin,
    ai,
    assets,
    auth_email,
    auth_google,
    billing,
    credits,
    files,
    jobs,
    notifications,
    projects,
    users,
    youtube,
)
from deployments.web import site
from pipeline.storage import open_storage

DESCRIPTION = """
Turns a written film spec into a short film: projects, uploads, renders as jobs (with progress
as server-sent events), credits, single-engine AI jobs.

Authenticate with `POST /api/users/login` and send `Authorization: Bearer <access_token>`.
Every error is an RFC 9457 problem document (`application/problem+json`). POSTs that spend
credits accept an `Idempotency-Key`.
"""

ROUTERS = (
    users,
    auth_email,
    auth_google,
    projects,
    assets,
    jobs,
    notifications,
    credits,
    billing,
    ai,
    files,
    youtube,
    admin,
)


def create_app(settings: Settings, limiter: Limiter | None = None) -> FastAPI:
    """The app on `settings`; `limiter` defaults to the shared one (`ratelimit.open_limiter`)."""
    app = FastAPI(
        title="AI Film Studio",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,  # deployments.api.docs
        redoc_url=None,
        responses=problem_responses(400, 413, 429, 500),
        dependencies=[Depends(storable_json)],
    )
    app.state.settings = settings
    app.state.storage = open_storage(settings)
    app.state.limiter = limiter or open_limiter(settings)
    app.state.limit_prefix = studio_prefix(settings)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_body_mb * MiB)
    app.add_middleware(
        IpRateLimitMiddleware,
        limiter=app.state.limiter,
        limit=settings.rate_limit_per_minute_ip,
        prefix=app.state.limit_prefix,
        trusted_proxies=settings.trusted_proxies,
    )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, public_url=settings.public_url)
    if settings.cors_origins:
        # Outermost: a preflight is answered before limits; bearer tokens, never cookies.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Retry-After", "Location"],
            max_age=600,
        )
    for module in ROUTERS:
        app.include_router(module.router)
    app.include_router(docs.router)
    site.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_with_problems(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _openapi_with_problems(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with one error format: every 4xx/5xx response of every router is a
    problem document, and every operation that takes a bearer token documents its 401."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    _, problem_schemas = models_json_schema(
        [(Problem, "serialization")], ref_template="#/components/schemas/{model}"
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(problem_schemas["$defs"])
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema["paths"].values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "security" in operation:
                responses.setdefault("401", {"description": "Unauthorized"})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = problem
    return schema


def app_from_environment() -> FastAPI:
    """For `uvicorn --factory deployments.api.app:app_from_environment`: settings from STUDIO_*."""
    return create_app(get_settings())
