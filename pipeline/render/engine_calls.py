"""How the render DAG reaches the engines: by calling their Serve applications (named after
`models.registry.EngineInfo.deployment`), so that engines autoscale and only their replicas hold
GPUs. A call waits while the engine computes, up to the limit the render watchdog gives it
(`pipeline.render.watchdog`), and is then cancelled and sent again once. It fails with
EngineUnavailable and Serve's reason when no replica of the engine can start (a missing or
corrupt model folder), instead of queueing until then."""

from __future__ import annotations

import logging
import re
import time
from functools import cache
from typing import Any

from ray import serve
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle, DeploymentResponse
from ray.serve.schema import ReplicaState

from models.registry import EngineInfo
from pipeline.errors import EngineUnavailable, StageTimedOut
from pipeline.render.watchdog import Watch

_FIRST_CHECK_S = 2.0
_CHECK_EVERY_S = 30.0
_PROBLEM = re.compile(r"EngineUnavailable: (.+)")
RETRIES = 1
"""How many times a call that gave no answer in time is sent again."""

log = logging.getLogger(__name__)


def engine_problem(info: EngineInfo) -> str | None:
    """Why the engine's application cannot serve, from `serve.status()`: not deployed, or no
    replica running while its replicas fail to start with EngineUnavailable (a model folder that
    is missing or corrupt does not heal by retrying). None while it serves or may yet start."""
    application = serve.status().applications.get(info.deployment)
    if application is None:
        return f"{info.deployment} is not deployed"
    deployment = application.deployments.get(info.deployment)
    if deployment is None or deployment.replica_states.get(ReplicaState.RUNNING, 0) > 0:
        return None
    found = _PROBLEM.findall(deployment.message)
    return found[-1].strip() if found else None


def call_engine(info: EngineInfo, method: str, *args: Any, watch: Watch) -> Any:
    """`method(*args)` on the engine's application. Raises EngineUnavailable with Serve's reason
    when no replica of it can start, rather than waiting for one forever (an application scaled
    to zero queues the request meanwhile). A call that gives no answer within the watch's limit
    is cancelled and sent again once; a second silence raises StageTimedOut naming the stage
    (`pipeline.render.watchdog`)."""
    try:
        for attempt in range(1 + RETRIES):
            response = getattr(_handle(info.deployment), method).remote(*args)
            try:
                return _answer(info, response, watch.limit_s)
            except _Silent:
                response.cancel()
                log.warning(
                    "%s: %s.%s gave no answer in %.1f s; cancelled (attempt %d of %d)",
                    watch.name, info.deployment, method, watch.limit_s, attempt + 1, 1 + RETRIES,
                )  # fmt: skip
    except RayServeException as error:
        raise EngineUnavailable(engine_problem(info) or str(error)) from error
    raise StageTimedOut(
        f"{watch.name} ({info.deployment}) made no progress for {watch.limit_s:.0f} s; "
        f"it was cancelled and retried once, with no answer again"
    )


class _Silent(Exception):
    """The engine gave no answer within the limit."""


def _answer(info: EngineInfo, response: DeploymentResponse, limit_s: float) -> Any:
    """The response's result once it comes within `limit_s`; the engine's status is checked
    ever more rarely while it computes, so that long generations cost the controller little."""
    deadline = time.monotonic() + limit_s
    wait_s = _FIRST_CHECK_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            return response.result(timeout_s=min(wait_s, left))
        except TimeoutError:
            if (problem := engine_problem(info)) is not None:
                response.cancel()
                raise EngineUnavailable(problem) from None
            wait_s = min(2 * wait_s, _CHECK_EVERY_S)
    raise _Silent


@cache
def _handle(application: str) -> DeploymentHandle:
    """One handle per application and process: a handle's first call sets up its routing to the
    replicas (a round of messages with the Serve controller), which render tasks, reused by Ray
    from scene to scene, should pay once."""
    return serve.get_app_handle(application)
