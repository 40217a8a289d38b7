"""Google sign-in and channel linking through the HTTP API, against the fake Google: PKCE,
state, nonce and ID token checks, joining accounts by verified email only, token refresh,
revocation and unlinking."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from cluster.settings import Settings
from db.models import OAuthAccount, OAuthState, User
from db.session import session_scope
from db.types import utcnow
from deployments.api.security import decode_token
from pipeline.publish.sealing import TokenCipher, open_tokens
from tests.fakes.google import FakeGoogle, GoogleAccount
from tests.youtube import add_user, auth, link, studio_api, studio_settings, youtube_account


def signs_up(test: Callable[..., None]) -> Callable[..., None]:
    """For tests whose Google sign-in creates a user: its plan's credits are granted through
    the ledger actor, so they need Ray."""
    return pytest.mark.ray(pytest.mark.usefixtures("ray_session")(test))


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    """oauthlib refuses plain-HTTP token endpoints unless told otherwise; Google's are HTTPS."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with FakeGoogle.running() as fake:
        yield fake


@pytest.fixture
def studio(settings: Settings, google: FakeGoogle, database_url: str) -> Settings:
    return studio_settings(settings, google, database_url)


@pytest.fixture
def api(studio: Settings) -> TestClient:
    return studio_api(studio)


def start(api: TestClient, purpose: str = "signin", **headers: str) -> str:
    response = api.get(f"/api/auth/google/start?purpose={purpose}", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["authorization_url"])


def callback(api: TestClient, code: str, state: str) -> httpx.Response:
    return api.get("/api/auth/google/callback", params={"code": code, "state": state})


def sign_in(api: TestClient, google: FakeGoogle) -> httpx.Response:
    return callback(api, *google.authorize(start(api)))


def google_identities(database_url: str, subject: str) -> list[OAuthAccount]:
    with session_scope(database_url) as session:
        return list(session.exec(select(OAuthAccount).where(OAuthAccount.subject == subject)))


def assert_rejected(response: httpx.Response, words: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("/oauth-rejected")
    assert words.lower() in response.json()["detail"].lower()


# -- the authorization request --------------------------------------------------------------


def test_sign_in_url_carries_pkce_s256_state_and_nonce(api: TestClient, google: FakeGoogle) -> None:
    query = {k: v[0] for k, v in parse_qs(urlsplit(start(api)).query).items()}

    assert query["response_type"] == "code"
    assert query["client_id"] == google.client_id
    assert query["redirect_uri"].endswith("/api/auth/google/callback")
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 43
    assert query["scope"].split()[0] == "openid"
    assert "code_verifier" not in query


@signs_up
def test_the_token_request_proves_the_pkce_challenge(api: TestClient, google: FakeGoogle) -> None:
    url = start(api)
    challenge = parse_qs(urlsplit(url).query)["code_challenge"][0]

    assert callback(api, *google.authorize(url)).status_code == 200

    verifier = google.calls_to("POST", "/token")[0].form["code_verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert digest.decode() == challenge


def test_link_url_asks_for_offline_youtube_access(
    api: TestClient, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    query = parse_qs(urlsplit(start(api, "link", **auth(studio, user))).query)

    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"]
    scopes = query["scope"][0].split()
    assert "https://www.googleapis.com/auth/youtube.upload" in scopes
    assert "https://www.googleapis.com/auth/youtube" in scopes


def test_linking_needs_a_signed_in_user(api: TestClient) -> None:
    response = api.get("/api/auth/google/start?purpose=link")

    assert response.status_code == 401


# -- sign-in --------------------------------------------------------------------------------


@signs_up
def test_sign_in_creates_a_user_and_returns_studio_tokens(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    response = sign_in(api, google)

    assert response.status_code == 200, response.text
    tokens = response.json()
    user_id = decode_token(studio, tokens["access_token"], "access")["sub"]
    assert decode_token(studio, tokens["refresh_token"], "refresh")["sub"] == user_id
    with session_scope(database_url) as session:
        user = session.exec(select(User).where(User.email == google.account.email)).one()
    assert str(user.id) == user_id and user.email_verified and user.password_hash is None


@signs_up
def test_signing_in_again_finds_the_same_user(
    api: TestClient, google: FakeGoogle, studio: Settings
) -> None:
    first, second = sign_in(api, google), sign_in(api, google)

    def subject(response: httpx.Response) -> str:
        return str(decode_token(studio, response.json()["access_token"], "access")["sub"])

    assert subject(first) == subject(second)


def test_sign_in_joins_an_existing_account_by_verified_email(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    existing = add_user(
        database_url, email=google.account.email, password_hash="x", email_verified=True
    )
    google.account.email = google.account.email.upper()  # the same address, in Google's case

    response = sign_in(api, google)

    assert response.status_code == 200, response.text
    assert decode_token(studio, response.json()["access_token"], "access")["sub"] == str(
        existing.id
    )
    [identity] = google_identities(database_url, google.account.sub)
    assert identity.user_id == existing.id and identity.provider == "google"


def test_unverified_email_joins_no_existing_account(
    api: TestClient, google: FakeGoogle, database_url: str
) -> None:
    add_user(database_url, email=google.account.email, password_hash="x")
    google.account.email_verified = False

    assert_rejected(sign_in(api, google), "not verified")
    assert google_identities(database_url, google.account.sub) == []


def test_unverified_email_creates_no_account(
    api: TestClient, google: FakeGoogle, database_url: str
) -> None:
    google.account.email_verified = False

    assert_rejected(sign_in(api, google), "not verified")
    with session_scope(database_url) as session:
        assert session.exec(select(User).where(User.email == google.account.email)).all() == []


# -- what a callback must match -------------------------------------------------------------


def test_forged_state_is_rejected_before_google_is_asked(
    api: TestClient, google: FakeGoogle
) -> None:
    code, _ = google.authorize(start(api))

    assert_rejected(callback(api, code, "forged-state"), "unknown or already used")
    assert google.calls_to("POST", "/token") == []


@signs_up
def test_replayed_callback_is_rejected(api: TestClient, google: FakeGoogle) -> None:
    code, state = google.authorize(start(api))
    assert callback(api, code, state).status_code == 200

    assert_rejected(callback(api, code, state), "unknown or already used")
    assert len(google.calls_to("POST", "/token")) == 1


@signs_up
def test_replayed_code_under_a_new_state_is_refused_by_google(
    api: TestClient, google: FakeGoogle
) -> None:
    code, state = google.authorize(start(api))
    assert callback(api, code, state).status_code == 200
    _, fresh_state = google.authorize(start(api))

    assert_rejected(callback(api, code, fresh_state), "invalid_grant")


def test_callback_in_another_browser_is_rejected(
    api: TestClient, google: FakeGoogle, studio: Settings
) -> None:
    code, state = google.authorize(start(api))
    elsewhere = studio_api(studio)

    assert_rejected(callback(elsewhere, code, state), "another browser")


def test_stale_flow_is_rejected(api: TestClient, google: FakeGoogle, database_url: str) -> None:
    code, state = google.authorize(start(api))
    with session_scope(database_url) as session:
        for pending in session.exec(select(OAuthState)):
            pending.expires_at = utcnow() - timedelta(seconds=1)
            session.add(pending)

    assert_rejected(callback(api, code, state), "too long")


def test_denied_consent_is_rejected(api: TestClient) -> None:
    response = api.get("/api/auth/google/callback", params={"state": "s", "error": "access_denied"})

    assert_rejected(response, "access_denied")


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"nonce": "a-nonce-of-another-sign-in"}, "nonce"),
        ({"aud": "another-client.apps.googleusercontent.com"}, "audience"),
        ({"iss": "https://accounts.example.com"}, "issuer"),
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "expired"),
    ],
)
def test_id_token_that_does_not_check_out_is_rejected(
    api: TestClient, google: FakeGoogle, database_url: str, claims: dict[str, object], words: str
) -> None:
    google.id_token_claims = claims

    assert_rejected(sign_in(api, google), words)
    assert google_identities(database_url, google.account.sub) == []


def test_id_token_signed_with_another_key_is_rejected(api: TestClient, google: FakeGoogle) -> None:
    google.sign_with_foreign_key = True

    assert_rejected(sign_in(api, google), "Signature verification failed")


# -- linking a channel ----------------------------------------------------------------------


def test_linking_stores_the_tokens_sealed(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)

    linked = link(api, google, studio, user)

    account = youtube_account(database_url, user.id)
    assert account is not None and linked["email"] == account.email == google.account.email
    assert account.subject == google.account.sub
    assert "https://www.googleapis.com/auth/youtube.upload" in account.scopes
    [refresh_token] = google.refresh_tokens()
    assert open_tokens(TokenCipher.from_settings(studio), account).refresh_token == refresh_token
    assert account.expires_at is not None and account.expires_at > utcnow()


def test_linking_without_youtube_access_is_rejected(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    google.granted_scopes = ["openid", "https://www.googleapis.com/auth/userinfo.email"]
    code, state = google.authorize(start(api, "link", **auth(studio, user)))

    assert_rejected(callback(api, code, state), "allow YouTube access")
    assert youtube_account(database_url, user.id) is None


def test_a_channel_linked_to_another_user_is_refused(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    owner, other = add_user(database_url), add_user(database_url)
    link(api, google, studio, owner)
    code, state = google.authorize(start(api, "link", **auth(studio, other)))

    response = callback(api, code, state)

    assert response.status_code == 409
    assert youtube_account(database_url, other.id) is None


def test_linking_another_channel_replaces_and_revokes_the_first(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    link(api, google, studio, user)
    [first_grant] = google.refresh_tokens()
    google.account = GoogleAccount()

    link(api, google, studio, user)

    account = youtube_account(database_url, user.id)
    assert account is not None and account.subject == google.account.sub
    assert google.is_revoked(first_grant)


# -- using and refreshing the tokens --------------------------------------------------------


def test_expired_access_token_is_refreshed_and_resealed(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    link(api, google, studio, user)
    before = youtube_account(database_url, user.id)
    google.expire_access_tokens()

    response = api.post(
        "/api/youtube/playlist", json={"title": "Shorts"}, headers=auth(studio, user)
    )

    assert response.status_code == 201, response.text
    after = youtube_account(database_url, user.id)
    assert before is not None and after is not None
    assert after.access_token != before.access_token
    tokens = open_tokens(TokenCipher.from_settings(studio), after)
    assert tokens.access_token == google.access_tokens()[-1]
    assert tokens.refresh_token == google.refresh_tokens()[0]
    assert [(c.method, c.path) for c in google.calls[-3:]] == [
        ("POST", "/youtube/v3/playlists"),
        ("POST", "/token"),
        ("POST", "/youtube/v3/playlists"),
    ]


def test_token_past_its_expiry_is_refreshed_before_the_call(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    link(api, google, studio, user)
    with session_scope(database_url) as session:
        account = session.exec(select(OAuthAccount).where(OAuthAccount.user_id == user.id)).one()
        account.expires_at = utcnow() - timedelta(minutes=1)
        session.add(account)

    response = api.post(
        "/api/youtube/playlist", json={"title": "Shorts"}, headers=auth(studio, user)
    )

    assert response.status_code == 201, response.text
    assert [(c.method, c.path) for c in google.calls[-2:]] == [
        ("POST", "/token"),
        ("POST", "/youtube/v3/playlists"),
    ]
    refreshed = youtube_account(database_url, user.id)
    assert refreshed is not None and refreshed.expires_at is not None
    assert refreshed.expires_at > utcnow() + timedelta(minutes=30)


def test_revoked_refresh_token_asks_to_relink_and_loses_nothing(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    link(api, google, studio, user)
    before = youtube_account(database_url, user.id)
    google.revoke(google.refresh_tokens()[0])
    google.expire_access_tokens()

    response = api.post(
        "/api/youtube/playlist", json={"title": "Shorts"}, headers=auth(studio, user)
    )

    assert response.status_code == 409
    assert response.json()["type"].endswith("/relink-required")
    assert "relink your channel" in response.json()["detail"]
    after = youtube_account(database_url, user.id)
    assert before is not None and after is not None
    assert (after.access_token, after.refresh_token) == (before.access_token, before.refresh_token)


# -- unlinking ------------------------------------------------------------------------------


def test_unlink_revokes_at_google_and_forgets_the_tokens(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    link(api, google, studio, user)

    response = api.delete("/api/youtube/link", headers=auth(studio, user))

    assert response.status_code == 204
    assert google.is_revoked(google.refresh_tokens()[0])
    assert google.calls_to("POST", "/revoke")[0].form["token"] == google.refresh_tokens()[0]
    assert youtube_account(database_url, user.id) is None
    assert api.delete("/api/youtube/link", headers=auth(studio, user)).status_code == 404


def test_unlink_of_a_grant_google_already_dropped_still_forgets_it(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    link(api, google, studio, user)
    google.revoke(google.refresh_tokens()[0])

    assert api.delete("/api/youtube/link", headers=auth(studio, user)).status_code == 204
    assert youtube_account(database_url, user.id) is None


def test_unlink_keeps_the_link_when_google_does_not_confirm(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    link(api, google, studio, user)
    google.fail("POST", "/revoke", 503)

    response = api.delete("/api/youtube/link", headers=auth(studio, user))

    assert response.status_code == 503
    assert youtube_account(database_url, user.id) is not None


def test_unlink_forgets_a_link_whose_tokens_no_longer_open(
    api: TestClient, google: FakeGoogle, studio: Settings, database_url: str
) -> None:
    user = add_user(database_url)
    link(api, google, studio, user)
    with session_scope(database_url) as session:
        account = session.exec(select(OAuthAccount).where(OAuthAccount.user_id == user.id)).one()
        account.key_id = "k-of-a-lost-key"
        session.add(account)

    assert api.delete("/api/youtube/link", headers=auth(studio, user)).status_code == 204
    assert youtube_account(database_url, user.id) is None
    assert google.calls_to("POST", "/revoke") == []
