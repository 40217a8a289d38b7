"""OAuth tokens at rest: AES-256-GCM ciphertext in the row, failing closed on any tampering;
and out of the logs."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import text

from cluster.settings import Settings
from db.models import OAuthAccount
from db.session import get_engine, session_scope
from pipeline.publish.google_oauth import youtube_credentials
from pipeline.publish.sealing import (
    NONCE_BYTES,
    TAG_BYTES,
    OAuthTokens,
    TokenCipher,
    TokenUnreadable,
    key_id_for,
    open_tokens,
    redact,
    redact_token_logs,
    seal_tokens,
)
from tests.youtube import add_user

OLD_KEY, NEW_KEY = bytes(range(32)), bytes(range(32, 64))
ACCESS = "ya29.a0AfB_byC-access-token-of-ada"
REFRESH = "1//0gLq-refresh-token-of-ada"


def cipher(*keys: bytes) -> TokenCipher:
    """A cipher holding `keys`; the last one is current."""
    ids = {key_id_for(key): key for key in keys}
    return TokenCipher(ids, key_id_for(keys[-1]))


def sealed_account(sealer: TokenCipher) -> OAuthAccount:
    account = OAuthAccount(user_id=uuid.uuid4(), provider="youtube", subject="110248495921")
    seal_tokens(sealer, account, OAuthTokens(ACCESS, REFRESH))
    return account


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def test_sealed_token_is_nonce_then_ciphertext_then_tag() -> None:
    account = sealed_account(cipher(NEW_KEY))

    assert account.access_token is not None
    assert len(account.access_token) == NONCE_BYTES + len(ACCESS) + TAG_BYTES
    assert ACCESS.encode() not in account.access_token
    assert account.key_id == key_id_for(NEW_KEY)
    assert open_tokens(cipher(NEW_KEY), account) == OAuthTokens(ACCESS, REFRESH)


def test_every_seal_draws_a_fresh_nonce() -> None:
    first, second = sealed_account(cipher(NEW_KEY)), sealed_account(cipher(NEW_KEY))

    assert first.access_token and second.access_token
    assert first.access_token[:NONCE_BYTES] != second.access_token[:NONCE_BYTES]


def test_a_wrong_key_under_the_same_id_fails_closed() -> None:
    account = sealed_account(cipher(NEW_KEY))
    impostor = TokenCipher({key_id_for(NEW_KEY): OLD_KEY}, key_id_for(NEW_KEY))

    with pytest.raises(TokenUnreadable):
        open_tokens(impostor, account)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_a_flipped_bit_fails_closed(where: str) -> None:
    account = sealed_account(cipher(NEW_KEY))
    assert account.refresh_token is not None
    index = {"nonce": 0, "ciphertext": NONCE_BYTES + 3, "tag": -1}[where]
    account.refresh_token = flip(account.refresh_token, index % len(account.refresh_token))

    with pytest.raises(TokenUnreadable):
        open_tokens(cipher(NEW_KEY), account)


def test_a_ciphertext_moved_to_another_row_or_column_fails_closed() -> None:
    sealer = cipher(NEW_KEY)
    victim, attacker = sealed_account(sealer), sealed_account(sealer)
    attacker.access_token = victim.access_token
    swapped = sealed_account(sealer)
    swapped.access_token, swapped.refresh_token = swapped.refresh_token, swapped.access_token

    for account in (attacker, swapped):
        with pytest.raises(TokenUnreadable):
            open_tokens(sealer, account)


def test_truncated_ciphertext_and_unknown_key_id_fail_closed() -> None:
    account = sealed_account(cipher(NEW_KEY))
    truncated = sealed_account(cipher(NEW_KEY))
    truncated.access_token = b"\0" * (NONCE_BYTES + TAG_BYTES - 1)

    with pytest.raises(TokenUnreadable):
        open_tokens(cipher(OLD_KEY), account)
    with pytest.raises(TokenUnreadable):
        open_tokens(cipher(NEW_KEY), truncated)


def test_rotation_opens_rows_of_the_old_key_and_seals_with_the_new() -> None:
    account = sealed_account(cipher(OLD_KEY))
    rotated = cipher(OLD_KEY, NEW_KEY)

    tokens = open_tokens(rotated, account)
    seal_tokens(rotated, account, tokens)

    assert account.key_id == key_id_for(NEW_KEY)
    assert open_tokens(cipher(NEW_KEY), account) == OAuthTokens(ACCESS, REFRESH)


def test_tokens_never_show_in_repr() -> None:
    assert ACCESS not in repr(OAuthTokens(ACCESS, REFRESH))
    assert REFRESH not in repr(OAuthTokens(ACCESS, REFRESH))


def test_settings_key_is_named_stably(settings: Settings) -> None:
    assert (
        TokenCipher.from_settings(settings).current == TokenCipher.from_settings(settings).current
    )


def _store_account(database_url: str, settings: Settings) -> OAuthAccount:
    user = add_user(database_url)
    with session_scope(database_url) as session:
        account = OAuthAccount(
            user_id=user.id, provider="youtube", subject=uuid.uuid4().hex, scopes=["youtube"]
        )
        seal_tokens(TokenCipher.from_settings(settings), account, OAuthTokens(ACCESS, REFRESH))
        session.add(account)
    return account


def test_tokens_in_the_database_are_ciphertext(database_url: str, settings: Settings) -> None:
    account = _store_account(database_url, settings)

    with get_engine(database_url).connect() as connection:
        row = connection.execute(
            text("SELECT access_token, refresh_token, key_id FROM oauth_accounts WHERE id = :id"),
            {"id": account.id.hex if database_url.startswith("sqlite") else account.id},
        ).one()

    stored = bytes(row.access_token) + bytes(row.refresh_token)
    assert ACCESS.encode() not in stored and REFRESH.encode() not in stored
    assert b"ya29." not in stored and b"1//" not in stored
    assert row.key_id == TokenCipher.from_settings(settings).current
    with session_scope(database_url) as session:
        loaded = session.get(OAuthAccount, account.id)
        assert loaded is not None
        assert open_tokens(TokenCipher.from_settings(settings), loaded).access_token == ACCESS


def test_a_tampered_row_fails_closed_before_any_call(database_url: str, settings: Settings) -> None:
    account = _store_account(database_url, settings)
    assert account.refresh_token is not None
    with session_scope(database_url) as session:
        loaded = session.get(OAuthAccount, account.id)
        assert loaded is not None and loaded.refresh_token is not None
        loaded.refresh_token = flip(loaded.refresh_token, NONCE_BYTES)
        session.add(loaded)
    settings = settings.model_copy(update={"database_url": database_url})

    with pytest.raises(TokenUnreadable):
        youtube_credentials(database_url, settings, account.user_id)


@pytest.mark.parametrize(
    "line",
    [
        "Request body was grant_type=refresh_token&refresh_token=1//0gsecret"
        "&client_secret=GOCSPX-x",
        "Obtained token {'access_token': 'ya29.secret', 'id_token': 'eyJa.eyJb.c'}.",
        "Request headers were {'Authorization': 'Basic c2VjcmV0', 'Accept': 'application/json'}",
        'Response content {"access_token": "opaque-secret", "expires_in": 3599}',
        "GET /api/auth/google/callback?state=s&code=4/0Asecret HTTP/1.1",
        "token ya29.secret passed as is",
    ],
)
def test_redact_removes_every_token_shape(line: str) -> None:
    cleaned = redact(line)

    for secret in ("1//0gsecret", "GOCSPX-x", "ya29.secret", "eyJa.eyJb.c", "c2VjcmV0",
                   "opaque-secret", "4/0Asecret"):  # fmt: skip
        assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_library_loggers_redact_what_they_log(caplog: pytest.LogCaptureFixture) -> None:
    redact_token_logs()
    caplog.set_level(logging.DEBUG)

    logging.getLogger("requests_oauthlib.oauth2_session").debug(
        "Obtained token %s.", {"access_token": ACCESS, "refresh_token": REFRESH}
    )

    assert "Obtained token" in caplog.text
    assert ACCESS not in caplog.text and REFRESH not in caplog.text
