"""`Idempotency-Key` for the POSTs that spend or add credits.

The first request with a key claims it (an `IdempotencyRecord` committed before any work), runs,
and stores its response. Later requests with the same key and the same request get that stored
response again (`Idempotent-Replayed: true`); with a different request, 422; while the first is
still running, 409. A request that fails releases its key so the client may retry with it; a
claim left behind by a crashed replica is taken over after `ABANDONED_AFTER`. Keys are kept for
`RETENTION`.

The key is also passed on to the ledger, so even a replay that slipped past this layer could not
reserve or add credits twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cluster.settings import Settings
from db.models import IdempotencyRecord
from db.session import session_scope
from db.types import utcnow
from deployments.api.deps import CurrentUser, SettingsDep
from deployments.api.problems import IdempotencyInProgress, IdempotencyKeyReused

ABANDONED_AFTER = timedelta(minutes=5)
RETENTION = timedelta(hours=24)
KEY_PATTERN = r"^[\x21-\x7e]{1,100}$"
_KEY_DOC = (
    "A client-chosen key (1 to 100 visible ASCII characters) that makes this request safe to "
    "retry: the same key and request return the first response instead of spending again."
)


@dataclass(frozen=True)
class Outcome:
    """A keyed request's answer: its status and JSON body, and whether it was stored before."""

    status: int
    body: Any
    replayed: bool


class Idempotency:
    def __init__(self, settings: Settings, user_id: UUID, key: str | None, request_hash: str):
        self.settings = settings
        self.user_id = user_id
        self.key = key
        self.request_hash = request_hash

    def run(self, call: Callable[[], tuple[int, Any]]) -> JSONResponse:
        """Runs `call` (which returns status and body) once per key; see the module doc."""
        outcome = self.outcome(call)
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
        return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)

    def outcome(self, call: Callable[[], tuple[int, Any]]) -> Outcome:
        """`call`'s status and body (as JSON values), run once per key; a replay gets the
        stored ones. The web studio's render button answers with a page from these."""
        if self.key is None:
            status, body = call()
            return Outcome(status, jsonable_encoder(body), replayed=False)
        replay = self._claim(self.key)
        if replay is not None:
            return replay
        try:
            status, body = call()
        except BaseException:
            self._release()
            raise
        content = jsonable_encoder(body)
        with session_scope(self.settings.resolved_database_url) as session:
            session.exec(
                update(IdempotencyRecord)
                .where(*self._match())
                .values(status_code=status, response=content)
            )
        return Outcome(status, content, replayed=False)

    def _match(self) -> tuple[Any, ...]:
        return (
            col(IdempotencyRecord.user_id) == self.user_id,
            col(IdempotencyRecord.key) == self.key,
        )

    def _claim(self, key: str) -> Outcome | None:
        """None when this request now owns the key, else the stored response to replay."""
        url = self.settings.resolved_database_url
        for _ in range(3):
            try:
                with session_scope(url) as session:
                    session.add(
                        IdempotencyRecord(
                            user_id=self.user_id, key=key, request_hash=self.request_hash
                        )
                    )
                return None
            except IntegrityError:
                pass
            with session_scope(url) as session:
                record = session.exec(select(IdempotencyRecord).where(*self._match())).first()
                now = utcnow()
                if record is None:
                    continue
                if record.created_at < now - RETENTION:
                    session.delete(record)
                    continue
                if record.request_hash != self.request_hash:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used for a different request; use a new key"
                    )
                if record.status_code is not None:
                    return Outcome(record.status_code, record.response, replayed=True)
                if self._take_over(session, record.id, now - ABANDONED_AFTER):
                    return None
                raise IdempotencyInProgress(
                    "a request with this Idempotency-Key is still in progress; retry later",
                    {"Retry-After": "1"},
                )
        raise IdempotencyInProgress("this Idempotency-Key is contended; retry later")

    def _take_over(self, session: Session, record_id: UUID, claimed_before: datetime) -> bool:
        """Claims a record whose first request has not finished since `claimed_before`."""
        taken = session.exec(
            update(IdempotencyRecord)
            .where(
                col(IdempotencyRecord.id) == record_id,
                col(IdempotencyRecord.status_code).is_(None),
                col(IdempotencyRecord.created_at) < claimed_before,
            )
            .values(created_at=utcnow())
        )
        return bool(taken.rowcount == 1)

    def _release(self) -> None:
        with session_scope(self.settings.resolved_database_url) as session:
            session.exec(
                delete(IdempotencyRecord).where(
                    *self._match(), col(IdempotencyRecord.status_code).is_(None)
                )
            )


async def _request_hash(request: Request) -> str:
    """Method, path, query and body; a JSON body counts by its content, not its formatting."""
    body = await request.body()
    with contextlib.suppress(ValueError):
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    return request_hash(request.method, f"{request.url.path}?{request.url.query}", body)


def request_hash(method: str, target: str, body: bytes) -> str:
    """What a key is bound to: the same key with another hash is another request (422)."""
    return hashlib.sha256(f"{method} {target}\n".encode() + body).hexdigest()


async def optional_key(
    request: Request,
    user: CurrentUser,
    settings: SettingsDep,
    key: Annotated[
        str | None, Header(alias="Idempotency-Key", pattern=KEY_PATTERN, description=_KEY_DOC)
    ] = None,
) -> Idempotency:
    return Idempotency(settings, user.id, key, await _request_hash(request))


async def required_key(
    request: Request,
    user: CurrentUser,
    settings: SettingsDep,
    key: Annotated[str, Header(alias="Idempotency-Key", pattern=KEY_PATTERN, description=_KEY_DOC)],
) -> Idempotency:
    return Idempotency(settings, user.id, key, await _request_hash(request))


IdempotencyDep = Annotated[Idempotency, Depends(optional_key)]
RequiredIdempotencyDep = Annotated[Idempotency, Depends(required_key)]
