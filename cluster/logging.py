"""Structured logging: one JSON object per line, carrying the request and job being served.

`request_id` and `job_id` live in context variables, so every log line written while a request
or a job is handled names it without threading ids through calls: set them with `log_context`
(the API's request-id middleware, the render driver). Sentry is initialised when
`STUDIO_SENTRY_DSN` is set and `sentry-sdk` is installed; it is not a dependency.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from cluster.settings import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)

logger = logging.getLogger(__name__)

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"?, "job_id"?, "exc"?, ...extra}`:
    fields passed with `extra=` are kept; values JSON cannot hold are written with `str`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(current_context())
        line.update(
            (key, value) for key, value in vars(record).items() if key not in _RECORD_FIELDS
        )
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def current_context() -> dict[str, str]:
    """The request and job ids set in this context, without the unset ones."""
    ids = {"request_id": request_id.get(), "job_id": job_id.get()}
    return {key: value for key, value in ids.items() if value is not None}


@contextmanager
def log_context(*, request: str | None = None, job: str | None = None) -> Iterator[None]:
    """Names the request and/or job in every log line written inside the block."""
    tokens = []
    if request is not None:
        tokens.append((request_id, request_id.set(request)))
    if job is not None:
        tokens.append((job_id, job_id.set(job)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def configure_logging(settings: Settings, level: int | str = logging.INFO) -> None:
    """Sends the root logger's records to stderr, as JSON lines when `settings.log_json`.

    Idempotent: a second call replaces the handler the first one installed, and leaves other
    handlers (Ray's, pytest's) alone.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_studio", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._studio = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter()
        if settings.log_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
    if settings.sentry_dsn:
        _init_sentry(settings.sentry_dsn)


def _init_sentry(dsn: str) -> None:
    try:
        import sentry_sdk
    except ImportError:
        logger.warning("STUDIO_SENTRY_DSN is set but sentry-sdk is not installed; not reporting")
        return
    sentry_sdk.init(dsn=dsn, before_send=_tag_event, send_default_pii=False)


def _tag_event(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    """Tags a Sentry event with the request and job it happened in."""
    event.setdefault("tags", {}).update(current_context())
    return event
