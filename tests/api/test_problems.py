"""Every error is an RFC 9457 problem document of one shape."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Account, Api, assert_problem, put_on_plan

pytestmark = pytest.mark.ray


def test_unknown_route_is_a_404_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/api/no-such-thing"), 404, "not-found")


def test_missing_token_is_a_401_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/api/projects"), 401, "unauthorized")


def test_validation_errors_list_each_input(client: httpx.Client) -> None:
    response = client.post("/api/users/register", json={"email": "nope", "password": "s3cr"})

    body = assert_problem(response, 422, "validation-error")
    locations = {tuple(error["loc"]) for error in body["errors"]}
    assert locations == {("body", "email"), ("body", "password")}
    for error in body["errors"]:
        assert set(error) == {"loc", "msg", "type"}
    assert "s3cr" not in response.text


def test_malformed_json_is_a_422_problem(client: httpx.Client) -> None:
    response = client.post(
        "/api/users/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "validation-error")


def test_nul_characters_are_refused_before_the_database(
    client: httpx.Client, account: Account
) -> None:
    response = client.put(
        "/api/users/profile", headers=account.auth, json={"full_name": "Ada\u0000Lovelace"}
    )

    body = assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "full_name"]


def test_a_declared_oversized_body_is_a_413_problem(client: httpx.Client) -> None:
    body = b'{"email": "a@b.co", "password": "' + b"x" * (3 * 1024 * 1024) + b'"}'

    response = client.post(
        "/api/users/login", content=body, headers={"content-type": "application/json"}
    )

    assert_problem(response, 413, "content-too-large")


def test_a_streamed_oversized_body_is_a_413_problem(client: httpx.Client) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"email": "a@b.co", "password": "'
        for _ in range(48):
            yield b"x" * 65536
        yield b'"}'

    response = client.post(
        "/api/users/login", content=chunks(), headers={"content-type": "application/json"}
    )

    assert_problem(response, 413, "content-too-large")


def test_the_users_rate_limit_is_a_429_problem_with_retry_after(
    api: Api, client: httpx.Client, account: Account
) -> None:
    put_on_plan(api, account.id, "slow", rate_limit_per_minute=5)

    statuses = [client.get("/api/users/profile", headers=account.auth) for _ in range(7)]

    assert [r.status_code for r in statuses[:5]] == [200] * 5
    body = assert_problem(statuses[5], 429, "rate-limited")
    assert int(statuses[5].headers["retry-after"]) >= 1
    assert body["retry_after"] == int(statuses[5].headers["retry-after"])


def test_the_docs_page_and_the_schema_are_served(api: Api, client: httpx.Client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()

    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "Problem" in schema["components"]["schemas"]
    login = schema["paths"]["/api/users/login"]["post"]
    assert "application/problem+json" in login["responses"]["401"]["content"]
