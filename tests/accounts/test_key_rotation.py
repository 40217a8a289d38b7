"""Keys that rotate: with the old JWT key and the old AES key still listed, a new key signs no
one out and every linked channel stays readable; a key dropped from the list opens nothing."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cluster.settings import Settings
from db.types import utcnow
from deployments.api.security import ALGORITHM, decode_token, key_id
from pipeline.publish.google_oauth import youtube_credentials
from pipeline.publish.sealing import TokenCipher, TokenUnreadable, key_id_for, open_tokens
from tests.accounts.conftest import (
    assert_problem,
    bearer,
    client_for,
    google_flow,
    login,
    new_email,
    register,
)
from tests.fakes.google import FakeGoogle
from tests.youtube import youtube_account

OLD_JWT, NEW_JWT = "old-signing-key-" + "a" * 48, "new-signing-key-" + "b" * 48
OLD_AES, NEW_AES = bytes(range(32)), bytes(range(32, 64))


def keyed(settings: Settings, jwt_keys: list[str], aes_keys: list[bytes]) -> Settings:
    """`settings` whose first key of each list signs or seals, the rest only verify or open."""
    return settings.model_copy(
        update={
            "jwt_secret": SecretStr(jwt_keys[0]),
            "jwt_previous_secrets": [SecretStr(key) for key in jwt_keys[1:]],
            "token_encryption_key": SecretStr(base64.b64encode(aes_keys[0]).decode()),
            "token_previous_keys": [SecretStr(base64.b64encode(k).decode()) for k in aes_keys[1:]],
        }
    )


@pytest.fixture
def before(studio: Settings) -> Settings:
    return keyed(studio, [OLD_JWT], [OLD_AES])


@pytest.fixture
def rotated(studio: Settings) -> Settings:
    return keyed(studio, [NEW_JWT, OLD_JWT], [NEW_AES, OLD_AES])


@pytest.fixture
def after(studio: Settings) -> Settings:
    """The old keys dropped from the lists."""
    return keyed(studio, [NEW_JWT], [NEW_AES])


def signed_in_with_channel(
    settings: Settings, google: FakeGoogle
) -> tuple[uuid.UUID, dict[str, str]]:
    """A user logged in and with a linked channel, both under `settings`' keys."""
    email = new_email()
    user_id = uuid.UUID(register(settings, email))
    with client_for(settings) as api:
        tokens = login(api, email).json()
        linked = google_flow(api, google, "link", **bearer(tokens))
        assert linked.status_code == 200, linked.text
    return user_id, tokens


def create_playlist(api: TestClient, tokens: dict[str, str]) -> int:
    """A call that needs the channel's tokens opened: it goes to YouTube with them."""
    body = {"title": "Shorts"}
    return api.post("/api/youtube/playlist", headers=bearer(tokens), json=body).status_code


def test_tokens_name_the_key_that_signed_them(before: Settings) -> None:
    email = new_email()
    register(before, email)
    with client_for(before) as client:
        tokens = login(client, email).json()

    for token in tokens["access_token"], tokens["refresh_token"]:
        assert jwt.get_unverified_header(token)["kid"] == key_id(OLD_JWT.encode())


def test_rotating_both_keys_signs_no_one_out_and_keeps_channels_readable(
    before: Settings, rotated: Settings, google: FakeGoogle
) -> None:
    user_id, tokens = signed_in_with_channel(before, google)
    account = youtube_account(before.resolved_database_url, user_id)
    assert account is not None and account.key_id == key_id_for(OLD_AES)

    with client_for(rotated) as api:
        profile = api.get("/api/users/profile", headers=bearer(tokens))
        refreshed = api.post("/api/users/refresh", json={"refresh_token": tokens["refresh_token"]})
        playlist = create_playlist(api, tokens)

    assert profile.status_code == 200, profile.text
    assert refreshed.status_code == 200, refreshed.text
    new_access = refreshed.json()["access_token"]
    assert jwt.get_unverified_header(new_access)["kid"] == key_id(NEW_JWT.encode())
    assert playlist == 201
    credentials = youtube_credentials(rotated.resolved_database_url, rotated, user_id)
    assert credentials.refresh_token in google.refresh_tokens()


def test_after_rotation_new_seals_use_the_new_key(
    before: Settings, rotated: Settings, after: Settings, google: FakeGoogle
) -> None:
    """Refreshed channel tokens are sealed again under the new key, so the old one can go."""
    user_id, tokens = signed_in_with_channel(before, google)
    google.expire_access_tokens()

    with client_for(rotated) as api:
        assert create_playlist(api, tokens) == 201

    account = youtube_account(rotated.resolved_database_url, user_id)
    assert account is not None and account.key_id == key_id_for(NEW_AES)
    assert open_tokens(TokenCipher.from_settings(after), account).refresh_token is not None


def test_a_dropped_jwt_key_verifies_nothing(before: Settings, after: Settings) -> None:
    email = new_email()
    register(before, email)
    with client_for(before) as api:
        tokens = login(api, email).json()

    with client_for(after) as api:
        profile = api.get("/api/users/profile", headers=bearer(tokens))
        refreshed = api.post("/api/users/refresh", json={"refresh_token": tokens["refresh_token"]})

    assert_problem(profile, 401, "unauthorized")
    assert_problem(refreshed, 401, "unauthorized")


def test_a_dropped_aes_key_asks_to_relink(
    before: Settings, after: Settings, google: FakeGoogle
) -> None:
    user_id, _ = signed_in_with_channel(before, google)
    account = youtube_account(after.resolved_database_url, user_id)
    assert account is not None

    with pytest.raises(TokenUnreadable):
        open_tokens(TokenCipher.from_settings(after), account)
    with pytest.raises(TokenUnreadable):
        youtube_credentials(after.resolved_database_url, after, user_id)


def test_a_token_without_a_key_id_verifies_against_every_listed_key(rotated: Settings) -> None:
    """Tokens issued before key ids existed keep working through a rotation."""
    now = utcnow()
    claims = {"iss": rotated.jwt_issuer, "aud": rotated.jwt_audience, "sub": str(uuid.uuid4()),
              "iat": now, "exp": now + timedelta(minutes=5), "jti": str(uuid.uuid4()),
              "typ": "access"}  # fmt: skip
    legacy = jwt.encode(claims, OLD_JWT.encode(), algorithm=ALGORITHM)
    assert "kid" not in jwt.get_unverified_header(legacy)

    assert decode_token(rotated, legacy, "access")["sub"] == claims["sub"]


def test_a_token_naming_an_unknown_key_is_refused(rotated: Settings) -> None:
    now = utcnow()
    claims = {"iss": rotated.jwt_issuer, "aud": rotated.jwt_audience, "sub": str(uuid.uuid4()),
              "iat": now, "exp": now + timedelta(minutes=5), "jti": str(uuid.uuid4()),
              "typ": "access"}  # fmt: skip
    forged = jwt.encode(claims, b"x" * 64, algorithm=ALGORITHM, headers={"kid": "jdeadbeef0000"})

    with pytest.raises(jwt.InvalidTokenError, match="unknown key"):
        decode_token(rotated, forged, "access")


def test_single_key_settings_still_work(studio: Settings) -> None:
    """No previous keys listed: today's STUDIO_JWT_SECRET / STUDIO_TOKEN_ENCRYPTION_KEY."""
    settings = studio.model_copy(update={"jwt_secret": SecretStr(OLD_JWT)})
    cipher = TokenCipher.from_settings(settings)

    assert settings.jwt_verify_keys() == [OLD_JWT.encode()]
    assert cipher.current == key_id_for(settings.token_key())
