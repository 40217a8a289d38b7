"""Accounts and tokens: the flows that work, and every token that must be refused with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api.conftest import (
    PASSWORD,
    Account,
    Api,
    assert_problem,
    delete_user,
    register,
    set_user,
)

pytestmark = pytest.mark.ray


def claims(api: Api, account: Account, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base = {
        "iss": api.settings.jwt_issuer,
        "aud": api.settings.jwt_audience,
        "sub": str(account.id),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": str(uuid.uuid4()),
        "typ": "access",
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def signed(api: Api, payload: dict[str, Any]) -> str:
    return jwt.encode(payload, api.settings.jwt_key(), algorithm="HS256")


def profile(client: httpx.Client, token: str) -> httpx.Response:
    return client.get("/api/users/profile", headers={"Authorization": f"Bearer {token}"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the flows -------------------------------------------------------------------------------


def test_register_login_and_read_profile(client: httpx.Client) -> None:
    email = f"Ada-{uuid.uuid4().hex[:8]}@Example.com"
    account = register(client, email)

    response = client.get("/api/users/profile", headers=account.auth)

    assert response.status_code == 200
    body = response.json()
    assert body["email"] == email.lower()
    assert body["role"] == "user"
    assert body["plan_code"] == "free"
    assert "password_hash" not in body


def test_registering_an_email_twice_conflicts(client: httpx.Client, account: Account) -> None:
    response = client.post(
        "/api/users/register", json={"email": account.email.upper(), "password": PASSWORD}
    )
    assert_problem(response, 409, "conflict")


def test_login_with_a_wrong_password_is_refused(client: httpx.Client, account: Account) -> None:
    response = client.post(
        "/api/users/login", json={"email": account.email, "password": "not the password"}
    )
    assert_problem(response, 401, "unauthorized")


def test_an_account_has_its_own_login_limit_whatever_the_password(
    client: httpx.Client, account: Account, other: Account
) -> None:
    """The fixture logged in once; four wrong passwords use the burst of five, and then even
    the right password waits, while another account logs in as usual."""
    for _ in range(4):
        wrong = client.post("/api/users/login", json={"email": account.email, "password": "x"})
        assert_problem(wrong, 401, "unauthorized")

    right = client.post("/api/users/login", json={"email": account.email, "password": PASSWORD})
    assert_problem(right, 429, "rate-limited")
    assert int(right.headers["retry-after"]) >= 1
    assert "this account" in right.json()["detail"]
    elsewhere = client.post("/api/users/login", json={"email": other.email, "password": PASSWORD})
    assert elsewhere.status_code == 200


def test_updating_the_profile(client: httpx.Client, account: Account) -> None:
    response = client.put("/api/users/profile", headers=account.auth, json={"full_name": "Ada L"})

    assert response.status_code == 200
    assert client.get("/api/users/profile", headers=account.auth).json()["full_name"] == "Ada L"


def test_changing_the_password_ends_every_login(client: httpx.Client, account: Account) -> None:
    response = client.put(
        "/api/users/profile",
        headers=account.auth,
        json={"current_password": PASSWORD, "new_password": "a brand new secret"},
    )
    assert response.status_code == 200

    refreshed = client.post("/api/users/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refreshed, 401, "unauthorized")
    relogin = client.post(
        "/api/users/login", json={"email": account.email, "password": "a brand new secret"}
    )
    assert relogin.status_code == 200


def test_a_password_change_refuses_earlier_access_tokens_at_once(
    client: httpx.Client, account: Account
) -> None:
    new = {"current_password": PASSWORD, "new_password": "a brand new secret"}
    assert client.put("/api/users/profile", headers=account.auth, json=new).status_code == 200

    assert_problem(profile(client, account.access_token), 401, "unauthorized")
    relogin = client.post(
        "/api/users/login", json={"email": account.email, "password": "a brand new secret"}
    )
    assert profile(client, relogin.json()["access_token"]).status_code == 200


def test_logout_refuses_the_access_token_at_once(client: httpx.Client, account: Account) -> None:
    assert profile(client, account.access_token).status_code == 200
    client.post("/api/users/logout", json={"refresh_token": account.refresh_token})

    refused = profile(client, account.access_token)
    assert_problem(refused, 401, "unauthorized")
    assert "login has ended" in refused.json()["detail"]


def test_refresh_rotates_the_pair(client: httpx.Client, account: Account) -> None:
    response = client.post("/api/users/refresh", json={"refresh_token": account.refresh_token})

    assert response.status_code == 200
    pair = response.json()
    assert pair["refresh_token"] != account.refresh_token
    assert profile(client, pair["access_token"]).status_code == 200
    again = client.post("/api/users/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 200


def test_logout_revokes_the_refresh_token(client: httpx.Client, account: Account) -> None:
    response = client.post("/api/users/logout", json={"refresh_token": account.refresh_token})
    assert response.status_code == 204

    refreshed = client.post("/api/users/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refreshed, 401, "unauthorized")
    assert "revoked" in refreshed.json()["detail"]


def test_a_reused_refresh_token_revokes_its_whole_family(
    client: httpx.Client, account: Account
) -> None:
    first = client.post("/api/users/refresh", json={"refresh_token": account.refresh_token})
    next_token = first.json()["refresh_token"]

    reuse = client.post("/api/users/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(reuse, 401, "unauthorized")

    successor = client.post("/api/users/refresh", json={"refresh_token": next_token})
    assert_problem(successor, 401, "unauthorized")
    assert_problem(profile(client, first.json()["access_token"]), 401, "unauthorized")


def test_other_logins_survive_a_revoked_family(client: httpx.Client, account: Account) -> None:
    second = client.post("/api/users/login", json={"email": account.email, "password": PASSWORD})
    client.post("/api/users/logout", json={"refresh_token": account.refresh_token})

    refreshed = client.post(
        "/api/users/refresh", json={"refresh_token": second.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert profile(client, refreshed.json()["access_token"]).status_code == 200


# -- tokens that must be refused -------------------------------------------------------------


def test_no_token(client: httpx.Client) -> None:
    response = client.get("/api/users/profile")
    body = assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "bearer" in body["detail"]


def test_alg_none(api: Api, client: httpx.Client, account: Account) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = claims(api, account)
    payload["iat"], payload["exp"] = int(time.time()), int(time.time()) + 300
    token = f"{header}.{b64(json.dumps(payload).encode())}."

    assert_problem(profile(client, token), 401, "unauthorized")


def test_hs256_signed_with_a_public_key(api: Api, client: httpx.Client, account: Account) -> None:
    """The key-confusion attack: an HS256 token whose HMAC secret is a public key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = claims(api, account)
    payload["iat"], payload["exp"] = int(time.time()), int(time.time()) + 300
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()

    assert_problem(profile(client, f"{header}.{body}.{b64(signature)}"), 401, "unauthorized")


def test_rs256_token(api: Api, client: httpx.Client, account: Account) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(api, account), private, algorithm="RS256")

    assert_problem(profile(client, token), 401, "unauthorized")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": datetime.now(UTC) - timedelta(seconds=5)}, id="expired"),
        pytest.param({"aud": "someone-else"}, id="wrong-aud"),
        pytest.param({"iss": "https://evil.example"}, id="wrong-iss"),
        pytest.param({"jti": None}, id="no-jti"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"typ": "refresh"}, id="refresh-as-access"),
        pytest.param({"sub": "not-a-uuid"}, id="bad-sub"),
    ],
)
def test_defective_claims(
    api: Api, client: httpx.Client, account: Account, changes: dict[str, Any]
) -> None:
    token = signed(api, claims(api, account, **changes))
    assert_problem(profile(client, token), 401, "unauthorized")


def test_tampered_payload(api: Api, client: httpx.Client, account: Account, other: Account) -> None:
    header, _, signature = account.access_token.split(".")
    forged = claims(api, account, sub=str(other.id))
    forged["iat"], forged["exp"] = int(time.time()), int(time.time()) + 300
    token = f"{header}.{b64(json.dumps(forged).encode())}.{signature}"

    assert_problem(profile(client, token), 401, "unauthorized")


def test_a_refresh_token_is_not_an_access_token(client: httpx.Client, account: Account) -> None:
    assert_problem(profile(client, account.refresh_token), 401, "unauthorized")


def test_an_access_token_does_not_refresh(client: httpx.Client, account: Account) -> None:
    response = client.post("/api/users/refresh", json={"refresh_token": account.access_token})
    assert_problem(response, 401, "unauthorized")


def test_token_of_a_deleted_user(api: Api, client: httpx.Client, account: Account) -> None:
    delete_user(api, account.id)

    assert_problem(profile(client, account.access_token), 401, "unauthorized")
    refreshed = client.post("/api/users/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refreshed, 401, "unauthorized")


def test_token_of_a_suspended_user(api: Api, client: httpx.Client, account: Account) -> None:
    set_user(api, account.id, is_active=False)

    assert_problem(profile(client, account.access_token), 401, "unauthorized")
    refreshed = client.post("/api/users/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refreshed, 401, "unauthorized")
    relogin = client.post("/api/users/login", json={"email": account.email, "password": PASSWORD})
    assert_problem(relogin, 401, "unauthorized")
