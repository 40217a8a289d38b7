"""OAuth tokens at rest, and out of the logs.

`TokenCipher` seals a token with AES-256-GCM: a fresh 96-bit random nonce per seal, the stored
value is `nonce || ciphertext || tag`, and the row's `key_id` column names the key. The
associated data is the table, row id and column, so a ciphertext copied to another row or
column does not open. Several keys can be held at once (one current, the others only for
opening), which is how a key is rotated: add the new key as current, let rows be re-sealed
as their tokens are refreshed, drop the old key when no row names it. Anything wrong (unknown
key id, wrong key, a flipped bit, a moved ciphertext) raises `TokenUnreadable`: it fails closed.

The Google client libraries log token requests and responses at DEBUG (requests-oauthlib dumps
whole token responses), so `redact_token_logs` puts a redacting filter on their loggers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cluster.errors import StudioError
from cluster.settings import Settings
from db.models import OAuthAccount

NONCE_BYTES = 12
TAG_BYTES = 16


class TokenUnreadable(StudioError):
    slug, status, title = "token-unreadable", 500, "Stored credentials unreadable"


def key_id_for(key: bytes) -> str:
    """A stable, non-secret name for a key: rows record it, so a rotation knows which key
    sealed what without trying every key."""
    return "k" + hashlib.sha256(b"studio-token-key-id\0" + key).hexdigest()[:12]


class TokenCipher:
    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"current key {current!r} is not among the keys")
        if any(len(key) != 32 for key in keys.values()):
            raise ValueError("AES-256-GCM keys are 32 bytes")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        """`STUDIO_TOKEN_ENCRYPTION_KEY` seals; it and `STUDIO_TOKEN_PREVIOUS_KEYS` open."""
        current, *previous = settings.token_keys()
        keys = {key_id_for(key): key for key in previous}
        keys[key_id_for(current)] = current
        return cls(keys, key_id_for(current))

    def seal(self, plaintext: str, associated_data: bytes) -> bytes:
        """`nonce || ciphertext || tag` under the current key."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._keys[self.current].encrypt(nonce, plaintext.encode(), associated_data)

    def open(self, key_id: str | None, sealed: bytes, associated_data: bytes) -> str:
        aead = self._keys.get(key_id or "")
        if aead is None:
            raise TokenUnreadable(f"no key {key_id!r} to open stored credentials")
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise TokenUnreadable("stored credentials are truncated")
        try:
            plaintext = aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
        except InvalidTag:
            raise TokenUnreadable("stored credentials failed authentication") from None
        return plaintext.decode()


@dataclass(frozen=True)
class OAuthTokens:
    """Plaintext tokens: kept out of `repr` so a traceback or log line cannot show them."""

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)


def _aad(account: OAuthAccount, column: str) -> bytes:
    return f"oauth_accounts:{account.id}:{column}".encode()


def seal_tokens(cipher: TokenCipher, account: OAuthAccount, tokens: OAuthTokens) -> None:
    """Seals both tokens under the current key (one `key_id` names the key of both)."""
    account.key_id = cipher.current
    account.access_token = (
        cipher.seal(tokens.access_token, _aad(account, "access_token"))
        if tokens.access_token is not None
        else None
    )
    account.refresh_token = (
        cipher.seal(tokens.refresh_token, _aad(account, "refresh_token"))
        if tokens.refresh_token is not None
        else None
    )


def open_tokens(cipher: TokenCipher, account: OAuthAccount) -> OAuthTokens:
    return OAuthTokens(
        access_token=(
            cipher.open(account.key_id, account.access_token, _aad(account, "access_token"))
            if account.access_token is not None
            else None
        ),
        refresh_token=(
            cipher.open(account.key_id, account.refresh_token, _aad(account, "refresh_token"))
            if account.refresh_token is not None
            else None
        ),
    )


REDACTED = "[redacted]"
_SECRET_FIELD = re.compile(
    r"""(?ix)
    \b(access_token|refresh_token|id_token|code_verifier|client_secret|code|token|assertion)
    (["']?\s*[:=]\s*["']?)
    [^"'&\s,;}]+
    """
)
_AUTH_HEADER = re.compile(r"(?i)\b(Bearer|Basic)\s+[^\s\"',;}]+")
_JWT = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]*")
_GOOGLE_TOKEN = re.compile(r"\b(ya29\.|1//)[\w.-]+")


def redact(text: str) -> str:
    """The text with anything token-shaped replaced: `name=value` and `'name': 'value'` pairs of
    token fields, Authorization header values, JWTs and Google access/refresh token shapes."""
    text = _SECRET_FIELD.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m[1]} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    return _GOOGLE_TOKEN.sub(REDACTED, text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message with `redact`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


LOGGERS_THAT_SEE_TOKENS = (
    "requests_oauthlib",
    "oauthlib",
    "google_auth_oauthlib",
    "google",
    "google_auth_httplib2",
    "googleapiclient",
    "httplib2",
    "urllib3",
    "requests",
    "httpx",
    "httpcore",
    "uvicorn.access",
)
_FILTER = RedactTokens()


def redact_token_logs() -> None:
    """Puts the filter on every logger (existing now) of the libraries that handle tokens.

    A filter on a logger only sees records logged to that very logger, not those propagated
    from its children, so each module logger gets it. Idempotent; called again after the
    libraries are imported, since their loggers appear at import."""
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name.split(".")[0] in LOGGERS_THAT_SEE_TOKENS or name in LOGGERS_THAT_SEE_TOKENS
    ]
    for name in [*LOGGERS_THAT_SEE_TOKENS, *names]:
        logging.getLogger(name).addFilter(_FILTER)
