"""Items 2 and 9 of issue 24: image uploads are checked by parsing their header with the image
library (the format their first bytes claim, and at most `MAX_IMAGE_PIXELS` pixels), so neither a
decompression bomb nor image magic followed by HTML is stored; a bomb stored before that check is
refused at submit from its header, never decoded in the API; every refusal is a 4xx; the API
replica's memory stays within 100 MB of idle throughout; downloads say `nosniff`."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from db.models import Asset
from db.session import session_scope
from pipeline.render.images import MAX_IMAGE_PIXELS
from pipeline.storage import open_storage
from tests.api.conftest import Account, Api, assert_problem, png_bytes
from tests.security.conftest import MB, png, replica_rss

pytestmark = pytest.mark.ray

BOMBS = {"13000x13000": (13_000, 13_000), "20000x20000": (20_000, 20_000)}
NOT_IMAGES = {
    "png magic, then html": b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>",
    "jpeg magic, then html": b"\xff\xd8\xff\xe0<html><script>alert(1)</script></html>",
    "webp magic, then html": b"RIFF\x10\x00\x00\x00WEBPVP8 <html></html>",
    "png, truncated header": b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00",
}


def upload(client: httpx.Client, account: Account, project: str, data: bytes) -> httpx.Response:
    return client.post(
        f"/api/projects/{project}/assets",
        headers=account.auth,
        files={"file": ("image.png", data, "image/png")},
    )


@pytest.mark.parametrize("size", BOMBS)
def test_a_decompression_bomb_is_refused_at_upload_within_the_memory_budget(
    api: Api, client: httpx.Client, account: Account, project: str, size: str
) -> None:
    bomb = png(*BOMBS[size])
    assert len(bomb) < MB  # what the upload costs the sender
    idle = replica_rss(api)
    for _ in range(4):
        refused = upload(client, account, project, bomb)
        assert_problem(refused, 422, "image-invalid")
    grown = replica_rss(api) - idle
    print(f"API replica RSS: idle {idle / MB:.0f} MB, grown by {grown / MB:.1f} MB")
    assert grown < 100 * MB
    assert f"more than {MAX_IMAGE_PIXELS:,} pixels" in refused.json()["detail"]


def test_a_stored_bomb_is_refused_at_submit_from_its_header(
    api: Api, client: httpx.Client, account: Account
) -> None:
    """An image stored before uploads were checked: a dry run reads its header, not its pixels."""
    stored = open_storage(api.settings).put_bytes(
        f"uploads/{uuid.uuid4().hex}.png", png(13_000, 13_000)
    )
    with session_scope(api.database_url) as session:
        asset = Asset(owner_id=account.id, kind="upload", filename="bomb.png",
                      content_type="image/png", size=stored.size, sha256=stored.sha256,
                      storage_key=stored.key)  # fmt: skip
        session.add(asset)
    idle = replica_rss(api)
    for _ in range(4):
        refused = client.post(
            "/api/ai/video-generate",
            headers=account.auth,
            json={"prompt": "a hill", "image": str(asset.id), "dry_run": True},
        )
        assert_problem(refused, 422, "spec-invalid")
        assert f"more than {MAX_IMAGE_PIXELS:,} pixels" in refused.json()["detail"]
    grown = replica_rss(api) - idle
    print(f"API replica RSS: idle {idle / MB:.0f} MB, grown by {grown / MB:.1f} MB")
    assert grown < 100 * MB


@pytest.mark.parametrize("name", NOT_IMAGES)
def test_image_magic_without_an_image_is_refused(
    client: httpx.Client, account: Account, project: str, name: str
) -> None:
    refused = upload(client, account, project, NOT_IMAGES[name])
    assert refused.status_code in (415, 422), refused.text
    assert refused.json()["type"].rsplit("/", 1)[-1] in ("image-invalid", "unsupported-media-type")


def test_a_real_image_is_accepted_and_downloaded_with_nosniff(
    client: httpx.Client, account: Account, project: str
) -> None:
    asset = upload(client, account, project, png_bytes(64, 32))
    assert asset.status_code == 201, asset.text
    link = client.get(f"/api/assets/{asset.json()['id']}/download", headers=account.auth).json()
    url = urlsplit(link["url"])
    response = httpx.get(link["url"], timeout=30)
    assert response.status_code == 200, (url.path, response.text)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == png_bytes(64, 32)
