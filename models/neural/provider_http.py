"""The HTTP client of the hosted engines (voices, video): httpx with one retry policy.

Requests are retried with exponential backoff on 429, 5xx and network errors, waiting at least
what a Retry-After header asks; 401/403 and 400-class answers fail at once with the provider's
message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from models.errors import ProviderAuthError, ProviderRejected, ProviderUnavailable

_RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP-date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def provider_message(response: httpx.Response) -> str:
    """The provider's own words: OpenAI {"error": {"message"}}, Runway {"error": "..."},
    ElevenLabs {"detail": {"message"}}, Luma {"detail": "..."}."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    if isinstance(error, str):
        return error[:300]
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict) and "message" in detail:
        return str(detail["message"])
    return str(detail or body)[:300]


class ProviderHttp:
    """An httpx client for one provider (`name`) with the retry policy."""

    name: ClassVar[str]

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_wait_s: float,
    ) -> None:
        self._client = httpx.Client(base_url=base_url, headers=dict(headers), timeout=timeout_s)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s

    def close(self) -> None:
        self._client.close()

    def _pause(self, attempt: int, asked: float | None = None) -> None:
        time.sleep(min(max(self.backoff_s * 2**attempt, asked or 0.0), self.max_wait_s))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            asked = None
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as error:
                failure = ProviderUnavailable(self.name, None, f"{type(error).__name__}: {error}")
            else:
                if response.is_success:
                    return response
                status, message = response.status_code, provider_message(response)
                if status in (401, 403):
                    raise ProviderAuthError(self.name, status, message)
                if status not in _RETRYABLE:
                    raise ProviderRejected(self.name, status, message)
                failure = ProviderUnavailable(self.name, status, message)
                asked = retry_after(response)
                if asked is not None and asked > self.max_wait_s:
                    raise ProviderUnavailable(
                        self.name, status, f"asked to retry after {asked:.0f} s"
                    )
            if attempt == self.max_retries:
                raise failure
            self._pause(attempt, asked)
            attempt += 1
