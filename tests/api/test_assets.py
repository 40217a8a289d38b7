"""Uploads: typed by their content, limited by plan, stored by content, fetched by signed URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from pipeline.storage import open_storage
from tests.api.conftest import Account, Api, assert_problem, create_project, png_bytes, put_on_plan

pytestmark = pytest.mark.ray


@pytest.fixture
def project(client: httpx.Client, account: Account) -> str:
    return str(create_project(client, account)["id"])


def upload(
    client: httpx.Client, account: Account, project: str, name: str, data: bytes, mime: str
) -> httpx.Response:
    return client.post(
        f"/api/projects/{project}/assets",
        headers=account.auth,
        files={"file": (name, data, mime)},
    )


def test_a_png_named_mp4_is_stored_as_a_png(
    client: httpx.Client, account: Account, project: str
) -> None:
    response = upload(client, account, project, "holiday.mp4", png_bytes(), "video/mp4")

    assert response.status_code == 201, response.text
    asset = response.json()
    assert asset["content_type"] == "image/png"
    assert asset["filename"] == "holiday.mp4"
    assert asset["size"] == len(png_bytes())
    listed = client.get(f"/api/projects/{project}/assets", headers=account.auth).json()
    assert [a["id"] for a in listed["items"]] == [asset["id"]]


def test_text_named_png_is_refused(client: httpx.Client, account: Account, project: str) -> None:
    response = upload(client, account, project, "face.png", b"just some text\n" * 50, "image/png")

    assert_problem(response, 415, "unsupported-media-type")


def test_a_file_over_the_plans_limit_is_refused(
    api: Api, client: httpx.Client, account: Account, project: str
) -> None:
    put_on_plan(api, account.id, "tiny-uploads", upload_limit_mb=1)
    data = png_bytes() + b"\x00" * (2 * 1024 * 1024)

    response = upload(client, account, project, "big.png", data, "image/png")

    assert_problem(response, 413, "content-too-large")


def test_a_streamed_file_over_the_limit_is_cut_off(
    api: Api, client: httpx.Client, account: Account, project: str
) -> None:
    """Without Content-Length the limit is found while streaming."""
    put_on_plan(api, account.id, "tiny-uploads", upload_limit_mb=1)
    boundary = "studio-boundary"

    def body():  # type: ignore[no-untyped-def]
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode() + png_bytes()
        for _ in range(40):
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        f"/api/projects/{project}/assets",
        headers={**account.auth, "content-type": f"multipart/form-data; boundary={boundary}"},
        content=body(),
    )

    assert_problem(response, 413, "content-too-large")


def test_a_body_without_the_file_field_is_a_validation_problem(
    client: httpx.Client, account: Account, project: str
) -> None:
    response = client.post(
        f"/api/projects/{project}/assets",
        headers=account.auth,
        files={"picture": ("a.png", png_bytes(), "image/png")},
    )

    body = assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "file"]


def test_the_download_link_serves_the_bytes(
    client: httpx.Client, account: Account, project: str
) -> None:
    asset = upload(client, account, project, "face.png", png_bytes(), "image/png").json()

    link = client.get(f"/api/assets/{asset['id']}/download", headers=account.auth).json()
    fetched = httpx.get(link["url"], timeout=30)

    assert fetched.status_code == 200
    assert fetched.content == png_bytes()
    assert fetched.headers["content-type"] == "image/png"
    assert "face.png" in fetched.headers["content-disposition"]


def test_the_redirect_leads_to_the_file(
    client: httpx.Client, account: Account, project: str
) -> None:
    asset = upload(client, account, project, "face.png", png_bytes(), "image/png").json()

    response = client.get(f"/api/assets/{asset['id']}/download?redirect=true", headers=account.auth)

    assert response.status_code == 307
    assert httpx.get(response.headers["location"], timeout=30).content == png_bytes()


@pytest.mark.parametrize("change", ["sig", "expires", "key"])
def test_a_tampered_signed_url_is_refused(
    client: httpx.Client, account: Account, project: str, change: str
) -> None:
    asset = upload(client, account, project, "face.png", png_bytes(), "image/png").json()
    url = urlsplit(
        client.get(f"/api/assets/{asset['id']}/download", headers=account.auth).json()["url"]
    )
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    path = url.path
    if change == "sig":
        query["sig"] = "0" * 64
    elif change == "expires":
        query["expires"] = str(int(query["expires"]) + 3600)
    else:
        path = path.replace("/cas/", "/cas/x")

    response = httpx.get(f"{url.scheme}://{url.netloc}{path}?{urlencode(query)}", timeout=30)

    assert_problem(response, 403, "signature-invalid")


def test_an_expired_signed_url_is_refused(api: Api, account: Account) -> None:
    storage = open_storage(api.settings)
    url = storage.url("cas/00/whatever.png", expires_s=-10)

    assert_problem(httpx.get(url, timeout=30), 403, "signature-invalid")
