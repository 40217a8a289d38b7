"""The account routes are published in /openapi.json with the problems they answer."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from cluster.runtime import SECRET_FIELDS

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.fixture
def schema(api: TestClient) -> dict[str, Any]:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


@pytest.mark.parametrize(
    ("method", "path", "problems"),
    [
        ("post", "/api/users/verify-email", {"401", "409", "422", "429", "503"}),
        ("post", "/api/users/verify-email/confirm", {"400", "422", "429"}),
        ("post", "/api/users/password-reset", {"422", "429", "503"}),
        ("post", "/api/users/password-reset/confirm", {"400", "403", "422", "429"}),
        ("delete", "/api/users/me", {"401", "403", "409", "422", "429"}),
        ("get", "/api/auth/google/callback", {"400", "409", "422", "503"}),
    ],
)
def test_account_routes_document_their_problems(
    schema: dict[str, Any], method: str, path: str, problems: set[str]
) -> None:
    responses = schema["paths"][path][method]["responses"]

    assert problems <= set(responses)
    for status in problems:
        assert responses[status]["content"] == PROBLEM


def test_google_start_offers_connecting_sign_in(schema: dict[str, Any]) -> None:
    [purpose] = [p for p in schema["paths"]["/api/auth/google/start"]["get"]["parameters"]
                 if p["name"] == "purpose"]  # fmt: skip
    ref = purpose["schema"]["$ref"].rsplit("/", 1)[1]

    assert set(schema["components"]["schemas"][ref]["enum"]) == {"signin", "link", "connect"}


def test_the_new_settings_keep_secrets_out_of_replica_arguments() -> None:
    """Settings travel to Serve replicas as YAML arguments without their secrets."""
    assert {"jwt_previous_secrets", "token_previous_keys", "smtp_url"} <= SECRET_FIELDS
