"""The root of the studio's errors. Every error the studio raises on purpose, from settings,
storage, engines, the domains or the HTTP exchange, subclasses `StudioError` and carries a
stable problem `type` slug, an HTTP status and a title, so that one function turns any of them
into an RFC 9457 problem document (deployments/api/problems.py). It lives at the bottom layer
so that every layer can raise it."""

from __future__ import annotations

from typing import Any, ClassVar


class StudioError(Exception):
    """`detail` says what went wrong in this instance; `extra` members join its problem
    document. An `internal` error's detail is for operators (it names paths, endpoints or
    settings): clients are only told that an internal error occurred."""

    slug: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    internal: ClassVar[bool] = False

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
