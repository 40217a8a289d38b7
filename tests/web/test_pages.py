"""The pages' doors, over plain HTTP: no page without a session, no form without its CSRF
token, a strict policy on every page, and nothing of the pages in the OpenAPI schema."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.conftest import PASSWORD, Api
from tests.web.conftest import form_token

pytestmark = [pytest.mark.ray]

PAGES = (
    "/",
    "/films/new",
    "/credits",
    f"/films/{uuid.uuid4()}",
    f"/films/{uuid.uuid4()}/watch",
    f"/films/{uuid.uuid4()}/subtitles.vtt",
    f"/jobs/{uuid.uuid4()}",
    f"/jobs/{uuid.uuid4()}/events",
)


def sign_up(client: httpx.Client) -> None:
    token = form_token(client.get("/sign-up"))
    email = f"pages-{uuid.uuid4().hex[:10]}@example.com"
    form = {"email": email, "password": PASSWORD, "csrf_token": token}
    response = client.post("/sign-up", data=form)
    assert response.status_code == 303, response.text


@pytest.mark.parametrize("path", PAGES)
def test_a_page_without_a_session_redirects_to_sign_in(studio: Api, path: str) -> None:
    with studio.client() as client:
        response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/web/sign-in"


def test_a_form_without_its_csrf_token_is_refused(studio: Api) -> None:
    with studio.client() as client:
        page = client.get("/sign-up")
        email = f"csrf-{uuid.uuid4().hex[:10]}@example.com"
        form = {"email": email, "password": PASSWORD}
        assert client.post("/sign-up", data=form).status_code == 403
        wrong = client.post("/sign-up", data=form | {"csrf_token": "0" * 64})
        assert wrong.status_code == 403
        assert "text/html" in wrong.headers["content-type"]
        # Nothing was created: the address is still free.
        right = client.post("/sign-up", data=form | {"csrf_token": form_token(page)})
        assert right.status_code == 303, right.text
        # Signed in, the pre-session token no longer posts; the session's does.
        story = {"story": "A fox finds a grape vine.", "csrf_token": form_token(page)}
        assert client.post("/films/new", data=story).status_code == 403
        story["csrf_token"] = form_token(client.get("/films/new"))
        planned = client.post("/films/new", data=story)
        assert planned.status_code == 303, planned.text


def test_a_session_ends_when_signed_out(studio: Api) -> None:
    with studio.client() as client:
        sign_up(client)
        cookie = client.cookies["studio_session"]
        films = client.get("/")
        assert films.status_code == 200
        signed_out = client.post("/sign-out", data={"csrf_token": form_token(films)})
        assert signed_out.status_code == 303
        assert "studio_session" not in client.cookies
    with studio.client() as replay:
        replay.cookies.set("studio_session", cookie)
        assert replay.get("/").status_code == 303


def test_every_page_has_a_strict_policy_and_a_samesite_httponly_cookie(studio: Api) -> None:
    with studio.client() as client:
        page = client.get("/sign-up")
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        policy = page.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert "form-action 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "<script>" not in page.text and " style=" not in page.text


def test_bad_input_on_a_page_is_a_4xx_page_with_the_reason(studio: Api) -> None:
    with studio.client() as client:
        sign_up(client)
        token = form_token(client.get("/films/new"))
        empty = client.post("/films/new", data={"story": "   ", "csrf_token": token})
        assert 400 <= empty.status_code < 500
        assert 'class="error"' in empty.text
        wrong = client.post(
            "/films/new", data={"story": "A tale.", "resolution": "4000", "csrf_token": token}
        )
        assert wrong.status_code == 422 and "resolution" in wrong.text
        missing = client.get(f"/films/{uuid.uuid4()}")
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


def test_the_pages_add_nothing_to_the_openapi_schema(studio: Api) -> None:
    with studio.client() as client:
        schema = client.get("/openapi.json").json()
    assert all(path.startswith("/api/") for path in schema["paths"]), list(schema["paths"])
    for operations in schema["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                assert "text/html" not in response.get("content", {})
