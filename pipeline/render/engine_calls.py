"""How the render DAG reaches the engines: by calling their Serve applications (named after
`models.registry.EngineInfo.deployment`), so that engines autoscale and only their replicas hold
GPUs. A call waits as long as the engine computes, but fails with EngineUnavailable and Serve's
reason when no replica of the engine can start (a missing or corrupt model folder), instead of
queueing forever."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from ray import serve
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle
from ray.serve.schema import ReplicaState

from models.registry import EngineInfo
from pipeline.errors import EngineUnavailable

_FIRST_CHECK_S = 2.0
_CHECK_EVERY_S = 30.0
_PROBLEM = re.compile(r"EngineUnavailable: (.+)")


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


def call_engine(info: EngineInfo, method: str, *args: Any) -> Any:
    """`method(*args)` on the engine's application, waiting as long as the engine computes.
    Raises EngineUnavailable with Serve's reason when no replica of it can start, rather than
    waiting for one forever (an application scaled to zero queues the request meanwhile). The
    status is checked ever more rarely, so that long generations cost the controller little."""
    try:
        response = getattr(_handle(info.deployment), method).remote(*args)
        wait_s = _FIRST_CHECK_S
        while True:
            try:
                return response.result(timeout_s=wait_s)
            except TimeoutError:
                if (problem := engine_problem(info)) is not None:
                    response.cancel()
                    raise EngineUnavailable(problem) from None
                wait_s = min(2 * wait_s, _CHECK_EVERY_S)
    except RayServeException as error:
        raise EngineUnavailable(engine_problem(info) or str(error)) from error


@cache
def _handle(application: str) -> DeploymentHandle:
    """One handle per application and process: a handle's first call sets up its routing to the
    replicas (a round of messages with the Serve controller), which render tasks, reused by Ray
    from scene to scene, should pay once."""
    return serve.get_app_handle(application)
