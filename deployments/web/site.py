"""The web studio on the API's app: its pages (outside the OpenAPI schema), its static files,
and its answers to errors: a page without a session redirects to the sign-in page, a refused
form or a domain error on a page (or on the Google callback of a flow the pages started) is a
page with the error's status. Errors of the JSON API stay problem documents."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from cluster.errors import StudioError
from deployments.api.routers.auth_google import PAGES_COOKIE
from deployments.web import account_pages, admin_pages, credit_pages, film_pages, publish_pages
from deployments.web.session import SignInRequired
from deployments.web.templating import STATIC, page, redirect

ROUTERS = (
    account_pages.router,
    film_pages.router,
    publish_pages.router,
    credit_pages.router,
    admin_pages.router,
)


def install(app: FastAPI) -> None:
    """Adds the pages to `app`; call after the API's error handlers are installed."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    api_handler = app.exception_handlers[StudioError]

    async def studio_error(request: Request, error: Exception) -> Any:
        assert isinstance(error, StudioError)
        if not _for_pages(request):
            answer = api_handler(request, error)
            return await answer if inspect.isawaitable(answer) else answer
        if isinstance(error, SignInRequired):
            return redirect(request, "sign_in_page")
        return _error_page(request, error)

    app.add_exception_handler(StudioError, studio_error)


def _for_pages(request: Request) -> bool:
    """A page's request, or the Google callback of a flow the pages started."""
    tags = getattr(request.scope.get("route"), "tags", ())
    return "web" in tags or PAGES_COOKIE in request.cookies


def _error_page(request: Request, error: StudioError) -> Response:
    detail = "An unexpected error occurred." if error.internal else error.detail
    return page(request, "error.html", {"title": error.title, "detail": detail}, error.status)
