"""HTTP metrics: every request the API answers, counted and timed by its route template."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster import metrics

UNMATCHED_ROUTE = "<unmatched>"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """ASGI middleware recording every HTTP request by its route template (`/api/jobs/{id}`,
    never the raw path, so that ids cannot explode the label set); unmatched paths share
    one label. Add it outermost so that error responses are timed too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = scope["method"] if scope["method"] in HTTP_METHODS else "OTHER"
            elapsed = time.perf_counter() - started
            metrics.observe_request(route_template(scope), method, status, elapsed)


def route_template(scope: Scope) -> str:
    """The matched route's path template, as the router left it in the scope."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED_ROUTE
