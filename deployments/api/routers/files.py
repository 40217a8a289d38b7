"""Files of the local storage, by the HMAC-signed URLs that `LocalStorage.url` makes. The
signature is the authorisation: these URLs work without a token, until they expire. It covers
the download's `filename` too, so a link cannot be renamed (to `evil.html`, say)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from deployments.api.deps import StorageDep
from deployments.api.problems import SignatureInvalid, problem_responses
from pipeline.errors import NotFound
from pipeline.storage import LocalStorage, guess_type

router = APIRouter(tags=["files"], responses=problem_responses(422, 429))


@router.get(
    "/api/files/{key:path}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file, typed by its content",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        **problem_responses(403, 404),
    },
    summary="Download a stored file by a signed URL",
)
def read_file(
    key: str,
    storage: StorageDep,
    expires: Annotated[int, Query(ge=0, le=2**40)],
    sig: Annotated[str, Query(pattern="^[0-9a-f]{64}$", description="HMAC-SHA256, hex.")],
    filename: Annotated[str | None, Query(max_length=255)] = None,
) -> FileResponse:
    if not isinstance(storage, LocalStorage):
        raise NotFound("files are served by the object store")
    if not storage.verify(key, expires, sig, filename):
        raise SignatureInvalid("the link is invalid or has expired")
    path = (storage.root / key).resolve()
    if not path.is_relative_to(storage.root) or not path.is_file():
        raise NotFound("no such file")
    return FileResponse(
        path,
        media_type=guess_type(key),
        filename=filename,
        content_disposition_type="attachment",
        headers={"X-Content-Type-Options": "nosniff"},  # the type is ours: never sniffed
    )
