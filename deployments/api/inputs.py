"""A check on JSON bodies that the request models cannot express: no string may hold a NUL
character or an unpaired surrogate and no number may be infinite or NaN, because PostgreSQL
(text and JSONB) cannot store them. Refused as a validation problem (422), before any route,
on every body that FastAPI reads as JSON (whatever the case or suffix of its content type); the
request bodies (`pipeline.fields.StrictInput`) refuse NULs too, so no body stores one."""

from __future__ import annotations

import email.message
import json
import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

MESSAGE = "NUL characters, unpaired surrogates and non-finite numbers are not accepted"


async def storable_json(request: Request) -> None:
    if not is_json(request.headers.get("content-type")):
        return
    body = await request.body()
    if not body:
        return
    try:
        data = json.loads(body)
    except ValueError:
        return  # the route's own parsing reports it
    where = _unstorable(data, ("body",))
    if where is not None:
        raise RequestValidationError([{"type": "unstorable", "loc": where, "msg": MESSAGE}])


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this type as JSON: none given, `application/json` or
    any `application/*+json`, in any case and with any parameters (parsed as a MIME header)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _unstorable(value: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    if isinstance(value, str):
        return loc if "\x00" in value or not _encodable(value) else None
    if isinstance(value, float):
        return None if math.isfinite(value) else loc
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        if isinstance(key, str) and _unstorable(key, loc) is not None:
            return (*loc, key)
        found = _unstorable(item, (*loc, key))
        if found is not None:
            return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
