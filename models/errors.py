"""Errors the engines raise: one small hierarchy under the studio's root error. Their details
name model folders and providers, so they are internal: clients see a generic problem."""

from __future__ import annotations

from typing import Any

from cluster.errors import StudioError


class EngineError(StudioError):
    """Base of every engine failure."""

    slug, status, title = "engine-failed", 500, "Engine failed"
    internal = True


class ModelUnavailable(EngineError):
    """The engine cannot start: its model folder or runtime dependency is missing or corrupt."""

    slug, title = "model-unavailable", "Model unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedRequest(EngineError):
    """The engine is healthy but cannot serve this request (e.g. a language it does not speak)."""

    slug, title = "unsupported-request", "Request not supported by the engine"


class ProviderError(EngineError):
    """A remote provider refused or failed a request; `provider_status` is its HTTP status."""

    slug, title = "provider-failed", "Engine provider failed"

    def __init__(self, provider: str, provider_status: int | None, message: str) -> None:
        status = f" {provider_status}:" if provider_status else ""
        super().__init__(f"{provider}:{status} {message}")
        self.provider = provider
        self.provider_status = provider_status
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its own arguments when it crosses processes (Ray, Serve): pickle's
        default would call the constructor with the formatted message alone, and fail."""
        return type(self), (self.provider, self.provider_status, self.message)


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials (401/403): retrying cannot help."""


class ProviderRejected(ProviderError):
    """The provider rejected the request itself (400/404/422): retrying cannot help."""


class ProviderUnavailable(ProviderError):
    """The provider kept failing (429/5xx/network) after every retry."""


class ProviderTimedOut(ProviderError):
    """A hosted generation did not finish in the time the engine waits for it (and was
    cancelled at the provider)."""


class GenerationFailed(ProviderError):
    """The provider accepted a generation, then reported it failed (e.g. its moderation)."""


class DrivingVideoRefused(StudioError):
    """A driving video for character animation is too big or cannot be decoded: the user's
    input is at fault, so the detail is for the client."""

    slug, status, title = "driving-video-refused", 422, "Driving video refused"
