"""Google sign-in for a frontend hosted elsewhere (`STUDIO_FRONTEND_URL`): the callback sends
the browser to the frontend with a one-time code, never tokens, and the frontend trades the
code once for the login's token pair."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi.testclient import TestClient

from cluster.settings import Settings
from tests.accounts.conftest import (
    Mailbox,
    assert_problem,
    bearer,
    client_for,
    login,
    register,
)
from tests.fakes.google import FakeGoogle

FRONTEND = "https://app.example.com/signed-in"


def callback(api: TestClient, google: FakeGoogle) -> httpx.Response:
    """Start a Google sign-in, consent at the fake Google, and the callback's own answer."""
    started = api.get("/api/auth/google/start?purpose=signin")
    assert started.status_code == 200, started.text
    code, state = google.authorize(started.json()["authorization_url"])
    params = {"code": code, "state": state}
    return api.get("/api/auth/google/callback", params=params, follow_redirects=False)


def verified_google_user(
    api: TestClient, studio: Settings, google: FakeGoogle, mailbox: Mailbox
) -> str:
    """A password account with the Google account's address, verified: Google signs it in."""
    email = google.account.email
    user_id = register(studio, email)
    tokens = login(api, email).json()
    assert api.post("/api/users/verify-email", headers=bearer(tokens)).status_code == 202
    confirm = {"token": mailbox.token(email)}
    assert api.post("/api/users/verify-email/confirm", json=confirm).status_code == 204
    return user_id


def test_the_callback_redirects_to_the_frontend_with_a_code_it_exchanges_once(
    studio: Settings, google: FakeGoogle, mailbox: Mailbox
) -> None:
    with client_for(studio.model_copy(update={"frontend_url": FRONTEND})) as api:
        user_id = verified_google_user(api, studio, google, mailbox)
        redirected = callback(api, google)
        assert redirected.status_code == 303, redirected.text
        location = redirected.headers["location"]
        assert location.startswith(f"{FRONTEND}?code=")
        assert "token" not in location
        [code] = parse_qs(urlsplit(location).query)["code"]

        # The code is no refresh token, and no access token.
        assert_problem(
            api.post("/api/users/refresh", json={"refresh_token": code}), 401, "unauthorized"
        )
        assert (
            api.get("/api/users/profile", headers={"Authorization": f"Bearer {code}"}).status_code
            == 401
        )

        exchanged = api.post("/api/auth/google/exchange", json={"code": code})
        assert exchanged.status_code == 200, exchanged.text
        tokens = exchanged.json()
        profile = api.get("/api/users/profile", headers=bearer(tokens)).json()
        assert profile["id"] == user_id

        # Presented again, the code is refused and the login it started ends.
        assert_problem(
            api.post("/api/auth/google/exchange", json={"code": code}), 401, "unauthorized"
        )
        refreshed = api.post("/api/users/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_problem(refreshed, 401, "unauthorized")


def test_without_a_frontend_the_callback_answers_the_tokens(
    api: TestClient, studio: Settings, google: FakeGoogle, mailbox: Mailbox
) -> None:
    verified_google_user(api, studio, google, mailbox)
    signed_in = callback(api, google)
    assert signed_in.status_code == 200, signed_in.text
    assert set(signed_in.json()) >= {"access_token", "refresh_token"}


def test_a_forged_code_is_refused(api: TestClient) -> None:
    assert_problem(
        api.post("/api/auth/google/exchange", json={"code": "not-a-code"}), 401, "unauthorized"
    )
