"""The domains' errors shared by several domains, under the studio's root `StudioError`
(cluster/errors.py); each carries a stable problem `type` slug, an HTTP status and a title."""

from __future__ import annotations

from cluster.errors import StudioError


class NotFound(StudioError):
    slug, status, title = "not-found", 404, "Not found"


class Conflict(StudioError):
    slug, status, title = "conflict", 409, "Conflict"


class SpecInvalid(StudioError):
    slug, status, title = "spec-invalid", 422, "Invalid film spec"


class InsufficientCredits(StudioError):
    slug, status, title = "insufficient-credits", 402, "Not enough credits"


class IllegalTransition(StudioError):
    slug, status, title = "illegal-transition", 409, "Illegal job state change"


class PlanLimit(StudioError):
    slug, status, title = "plan-limit", 403, "Not allowed on your plan"


class LicenceRefused(StudioError):
    slug, status, title = "licence-refused", 403, "Model licence not allowed on your plan"


class EngineUnavailable(StudioError):
    slug, status, title = "engine-unavailable", 503, "Engine unavailable"


class RelinkRequired(StudioError):
    slug, status, title = "relink-required", 409, "Relink your channel"


class StageTimedOut(StudioError):
    """A render stage's engine call gave no answer within its limit, twice
    (`pipeline.render.watchdog`)."""

    slug, status, title = "stage-timed-out", 504, "Render stage timed out"
