"""Request body size limits, answered as problem documents.

Every request gets `settings.max_request_body_mb`; a route that takes more (uploads) raises the
limit for its own request with `raise_limit` before reading. The check happens as the body is
read, so a declared `Content-Length` over the limit is refused before a byte of it is taken.
(FastAPI's own `max_body_size` answers such requests in plain text, hence this.)
"""

from __future__ import annotations

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.api.problems import ContentTooLarge

LIMIT_KEY = "studio.body_limit"


class BodyTooLarge(ContentTooLarge, HTTPException):
    """A body over the limit, answered by the studio's error handler like any `StudioError`
    (it comes first in the bases). Also a Starlette `HTTPException`: FastAPI passes only those
    on from reading a body and answers any other error there with a 400."""

    def __init__(self, limit: int) -> None:
        detail = f"the request body is larger than {limit} bytes"
        super().__init__(detail)
        # The chain above reaches HTTPException.__init__ with `detail` alone: set its fields.
        HTTPException.__init__(self, self.status, detail)


def raise_limit(request: Request, limit: int) -> None:
    request.scope[LIMIT_KEY] = limit


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[LIMIT_KEY] = self.limit
        declared = _content_length(scope)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            limit = scope[LIMIT_KEY]
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
