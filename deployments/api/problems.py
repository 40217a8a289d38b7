"""One error format for every 4xx and 5xx: RFC 9457 `application/problem+json`.

Every error the studio raises on purpose subclasses `StudioError` (cluster/errors.py) and carries
its slug, status and title; those of the HTTP exchange itself (401, 413, 415, 429, ...) are
declared here the same way. `problem_for` is the one place that turns such an error into a
problem document. `install_error_handlers` also answers Starlette's `HTTPException` (unknown
routes, wrong methods), validation errors, and anything unexpected (500, no internals).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from cluster.errors import StudioError

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://ai-film-studio.dev/problems/"
PROBLEM_JSON = "application/problem+json"

_HTTP_PROBLEMS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("content-too-large", "Content too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Invalid request"),
    429: ("rate-limited", "Too many requests"),
}


class ProblemError(BaseModel):
    loc: list[str | int] = Field(
        description="Where the problem is: `body`, `query`, ... then names"
    )
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document; domain errors may add extension members."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A stable URI naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[ProblemError] | None = Field(
        default=None, description="One entry per invalid input (validation problems only)."
    )


class HttpProblem(StudioError):
    """A problem of the HTTP exchange itself rather than of the domain; may carry headers."""

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers = headers


class Unauthorized(HttpProblem):
    slug, status, title = "unauthorized", 401, "Not authenticated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": "Bearer"})


class Forbidden(HttpProblem):
    slug, status, title = "forbidden", 403, "Forbidden"


class SignatureInvalid(HttpProblem):
    slug, status, title = "signature-invalid", 403, "Link invalid or expired"


class BadRequest(HttpProblem):
    slug, status, title = "bad-request", 400, "Bad request"


class ContentTooLarge(HttpProblem):
    slug, status, title = "content-too-large", 413, "Content too large"


class UnsupportedMediaType(HttpProblem):
    slug, status, title = "unsupported-media-type", 415, "Unsupported media type"


class RateLimited(HttpProblem):
    slug, status, title = "rate-limited", 429, "Too many requests"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, {"Retry-After": str(retry_after_s)}, retry_after=retry_after_s)


class IdempotencyKeyReused(HttpProblem):
    slug, status, title = "idempotency-key-reused", 422, "Idempotency key used for another request"


class IdempotencyInProgress(HttpProblem):
    slug, status, title = "idempotency-in-progress", 409, "A request with this key is in progress"


def problem(
    request: Request | None,
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else None,
    }
    body.update({k: v for k, v in jsonable_encoder(extra).items() if k not in body})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_for(request: Request | None, error: StudioError) -> JSONResponse:
    """The error's problem document, from its own slug, status, title, detail and extra
    members; an internal error's is the generic internal problem (its detail names internals)."""
    if error.internal:
        return _internal_problem(request)
    return problem(
        request,
        error.status,
        error.slug,
        error.title,
        error.detail,
        getattr(error, "headers", None),
        **error.extra,
    )


def _internal_problem(request: Request | None) -> JSONResponse:
    return problem(request, 500, "internal", "Internal error", "An unexpected error occurred.")


async def _studio_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StudioError)
    if error.internal:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    elif error.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, error.detail)
    return problem_for(request, error)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    status = error.status_code
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    slug, title = _HTTP_PROBLEMS.get(status, (f"http-{status}", phrase))
    detail = error.detail if isinstance(error.detail, str) else title
    return problem(request, status, slug, title, detail, error.headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """Only loc, msg and type: the offending input is never echoed (it may be a password)."""
    assert isinstance(error, RequestValidationError)
    errors = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg", ""), "type": item.get("type", "")}
        for item in error.errors()
    ]
    count = len(errors)
    return problem(
        request,
        422,
        "validation-error",
        "Invalid request",
        f"{count} invalid input{'s' if count != 1 else ''}",
        errors=errors,
    )


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return _internal_problem(request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StudioError, _studio_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem documents for these statuses."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
