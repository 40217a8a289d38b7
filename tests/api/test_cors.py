"""A frontend hosted elsewhere: the origins of `STUDIO_CORS_ORIGINS`, and only they, may call
the API from a browser (preflights answered, bearer tokens allowed, cookies never)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cluster.settings import Settings
from deployments.api.app import create_app
from deployments.api.ratelimit import LocalLimiter

FRONTEND = "https://app.example.com"


def client(tmp_path: Path, sqlite_url: str, **fields: object) -> TestClient:
    settings = Settings(
        data_dir=tmp_path / "var", database_url=sqlite_url, _env_file=None, **fields
    )
    return TestClient(create_app(settings, LocalLimiter()))


def preflight(api: TestClient, origin: str) -> dict[str, str]:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    response = api.options("/api/projects/create", headers=headers)
    return {"status": str(response.status_code), **response.headers}


def test_an_allowed_origin_may_call_the_api_with_a_bearer_token(
    tmp_path: Path, sqlite_url: str
) -> None:
    with client(tmp_path, sqlite_url, cors_origins=f"{FRONTEND},http://localhost:5173") as api:
        allowed = preflight(api, FRONTEND)
        assert allowed["status"] == "200"
        assert allowed["access-control-allow-origin"] == FRONTEND
        assert "POST" in allowed["access-control-allow-methods"]
        assert "authorization" in allowed["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in allowed
        plans = api.get("/api/plans", headers={"Origin": "http://localhost:5173"})
        assert plans.status_code == 200
        assert plans.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_another_origin_is_not_allowed(tmp_path: Path, sqlite_url: str) -> None:
    with client(tmp_path, sqlite_url, cors_origins=FRONTEND) as api:
        refused = preflight(api, "https://evil.example.com")
        assert refused["status"] == "400"
        assert "access-control-allow-origin" not in refused
        plans = api.get("/api/plans", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in plans.headers


def test_without_origins_no_browser_elsewhere_is_allowed(tmp_path: Path, sqlite_url: str) -> None:
    with client(tmp_path, sqlite_url) as api:
        assert "access-control-allow-origin" not in preflight(api, FRONTEND)
        plans = api.get("/api/plans", headers={"Origin": FRONTEND})
        assert "access-control-allow-origin" not in plans.headers


@pytest.mark.parametrize(
    "origin", ["*", "https://*.example.com", "https://app.example.com/", "app.example.com",
               "https://user:pw@app.example.com", "ftp://app.example.com"],
)  # fmt: skip
def test_an_origin_setting_that_is_not_an_exact_origin_is_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(cors_origins=origin, _env_file=None)
