"""Security headers on every answer of the API (`deployments.api.headers`), and `/docs` on a
pinned Swagger UI checked by subresource integrity under its own policy."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from deployments.api import docs
from deployments.api.app import create_app
from tests.api.conftest import Account, Api, app_settings, assert_problem

ALWAYS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_secured(response: httpx.Response) -> None:
    for name, value in ALWAYS.items():
        assert response.headers.get(name) == value, (name, response.request.url)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_every_kind_of_answer_carries_the_headers(client: httpx.Client, account: Account) -> None:
    answers = [
        client.get("/api/plans"),
        client.get("/api/users/profile", headers=account.auth),
        client.get("/api/users/profile"),  # 401
        client.get("/api/no/such/route"),  # 404
        client.post("/api/projects/create", headers=account.auth, json={}),  # 422
        client.get("/openapi.json"),
    ]
    for response in answers:
        assert_secured(response)
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert_problem(answers[2], 401, "unauthorized")


def test_token_answers_are_never_stored(client: httpx.Client, account: Account) -> None:
    login = client.post(
        "/api/users/login",
        json={"email": account.email, "password": "correct horse battery staple"},
    )
    refreshed = client.post("/api/users/refresh", json={"refresh_token": account.refresh_token})
    for response in (login, refreshed):
        assert response.status_code == 200, response.text
        assert "access_token" in response.json()
        assert response.headers["cache-control"] == "no-store"


def test_no_hsts_over_plain_http(client: httpx.Client) -> None:
    assert "strict-transport-security" not in client.get("/api/plans").headers


def test_hsts_when_the_studio_is_served_over_https(tmp_path: Path) -> None:
    settings = app_settings(tmp_path, f"sqlite:///{tmp_path / 'studio.db'}")
    settings = settings.model_copy(update={"public_url": "https://studio.example"})
    with TestClient(create_app(settings)) as local:
        hsts = local.get("/openapi.json").headers["strict-transport-security"]
    assert hsts.startswith("max-age=31536000")


def test_docs_load_pinned_swagger_with_integrity_under_a_policy(
    api: Api, client: httpx.Client
) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert_secured(response)
    html = response.text
    assert f"/{api.name}/openapi.json" in html
    tags = re.findall(r"<(?:script|link)[^>]*(?:src|href)=\"(https://[^\"]+)\"[^>]*>", html)
    assert sorted(tags) == sorted(docs.INTEGRITY), "every remote file is pinned"
    for url, integrity in docs.INTEGRITY.items():
        assert "@5.36.0/" in url
        assert f'"{url}" integrity="{integrity}" crossorigin="anonymous"' in html
    policy = response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    (inline,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy


@pytest.mark.parametrize("path", ["/redoc", "/docs/oauth2-redirect"])
def test_no_other_doc_pages(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 404
