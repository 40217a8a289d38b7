"""Assets: uploads to a project (streamed, sniffed, limited by plan), listing, download links."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session, col, select

from db.models import Asset, Project
from db.types import utcnow
from deployments.api.deps import (
    CurrentPlan,
    OwnedAsset,
    OwnedProject,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from deployments.api.multipart import MiB, ReceivedFile, receive_file, sniff, verify_image
from deployments.api.pagination import Page, PageDep, fetch_page
from deployments.api.problems import problem_responses
from pipeline.storage import StoredObject

router = APIRouter(tags=["assets"], responses=problem_responses(401, 422, 429))

_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


class AssetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID | None
    kind: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime


class DownloadLink(BaseModel):
    url: str
    expires_at: datetime


@router.post(
    "/api/projects/{project_id}/assets",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 404, 413, 415),
    openapi_extra=_MULTIPART_BODY,
    summary="Upload an image (PNG, JPEG, WebP), audio (WAV, MP3) or video (MP4) as `file`",
)
async def upload_asset(
    request: Request,
    project: OwnedProject,
    plan: CurrentPlan,
    session: SessionDep,
    storage: StorageDep,
) -> AssetPublic:
    """The type is read from the content; the size limit is the plan's `upload_limit_mb`. An
    image's header is parsed by the image library: its format must be the one its first bytes
    say, and its pixels within the cap (`pipeline.render.images`); nothing is decoded here."""
    async with receive_file(request, "file", plan.upload_limit_mb * MiB) as received:
        content_type, suffix = sniff(received.head)
        if content_type.startswith("image/"):
            await run_in_threadpool(verify_image, received.path, content_type)
        stored = await run_in_threadpool(storage.put_content, received.path, suffix, content_type)
        asset = await run_in_threadpool(_record, session, project, received, stored)
    return AssetPublic.model_validate(asset)


def _record(
    session: Session, project: Project, received: ReceivedFile, stored: StoredObject
) -> Asset:
    asset = Asset(
        owner_id=project.owner_id,
        project_id=project.id,
        kind="upload",
        filename=received.filename,
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
        storage_key=stored.key,
    )
    session.add(asset)
    session.commit()
    return asset


@router.get("/api/projects/{project_id}/assets", responses=problem_responses(404))
def list_assets(project: OwnedProject, session: SessionDep, page: PageDep) -> Page[AssetPublic]:
    query = select(Asset).where(Asset.project_id == project.id)
    return fetch_page(session, query.order_by(col(Asset.created_at).desc()), page, AssetPublic)


@router.get(
    "/api/assets/{asset_id}/download",
    response_model=DownloadLink,
    responses={
        307: {"description": "With `redirect=true`: to the file itself"},
        **problem_responses(404),
    },
    summary="A time-limited URL of the file (presigned S3, or signed by this API)",
)
def download_asset(
    asset: OwnedAsset,
    storage: StorageDep,
    settings: SettingsDep,
    redirect: Annotated[bool, Query(description="Answer 307 to the URL instead.")] = False,
) -> DownloadLink | RedirectResponse:
    expires_at = utcnow() + timedelta(seconds=settings.presign_expiry_s)
    url = storage.url(asset.storage_key, settings.presign_expiry_s, asset.filename)
    if redirect:
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    return DownloadLink(url=url, expires_at=expires_at)
