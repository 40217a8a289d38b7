"""Errors the engines raise: one small hierarchy, mapped to HTTP problems by the API layer."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every engine failure."""


class ModelUnavailable(EngineError):
    """The engine cannot start: its model folder or runtime dependency is missing or corrupt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedRequest(EngineError):
    """The engine is healthy but cannot serve this request (e.g. a language it does not speak)."""


class ProviderError(EngineError):
    """A remote provider refused or failed a request."""

    def __init__(self, provider: str, status: int | None, message: str) -> None:
        super().__init__(f"{provider}: {status or 'no response'}: {message}")
        self.provider = provider
        self.status = status
        self.message = message


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials (401/403): retrying cannot help."""


class ProviderRejected(ProviderError):
    """The provider rejected the request itself (400/404/422): retrying cannot help."""


class ProviderUnavailable(ProviderError):
    """The provider kept failing (429/5xx/network) after every retry."""
