"""The API as the Ray Serve ingress.

The FastAPI app is built inside each replica from the `Settings` given to the deployment (Serve's
late-bound ingress, `__serve_build_asgi_app__`), so one process can serve several studios and a
test can point a deployment at its own database and data folder.

    serve.run(build_api(settings), route_prefix="/")             # from Python
    import_path: deployments.api.ingress:app_builder                 # from a Serve config YAML,
    args: {settings: {database_url: ..., storage_url: ...}}      #   overrides of STUDIO_*
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from fastapi import FastAPI
from ray import serve
from ray.serve import Application, Deployment
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.settings import Settings
from deployments.api.app import create_app
from pipeline.jobs.sampling import sample_forever

# An ingress replica mostly waits on the database, the ledger actor and clients (event streams
# hold a slot for their whole life), so it takes little CPU and many requests at once.
# Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1 with RAY_SERVE_THROUGHPUT_OPTIMIZED=1)
# takes a quarter of the Python proxy's latency (bench/api.py), but it stays off: Ray 2.60's
# HAProxy config neither appends X-Forwarded-For nor speaks the PROXY protocol, so the replica
# would see every client as HAProxy's address and the per-IP limit would be one shared budget.
DEFAULTS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.25},
    "max_ongoing_requests": 200,
}


@serve.deployment(**DEFAULTS)
@serve.ingress()
class StudioIngress:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __serve_build_asgi_app__(self) -> FastAPI:
        """Also starts sampling the studio's gauges for as long as the replica lives."""
        app = create_app(self.settings)
        replica = serve.get_replica_context().replica_id.unique_id
        app.add_middleware(ServedByMiddleware, replica=replica)
        self.sampler = asyncio.create_task(sample_forever(self.settings.resolved_database_url))
        return app


class ServedByMiddleware:
    """`X-Served-By: <replica>` on every response: which replica answered, for operators."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (b"x-served-by", replica.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header if scope["type"] == "http" else send)


def build_api(settings: Settings, **options: Any) -> Application:
    """The ingress application; `options` are Serve deployment options (num_replicas, ...).
    A relative data folder is resolved here, where it was meant, not in each replica."""
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    deployment = cast(Deployment, StudioIngress)
    return (deployment.options(**options) if options else deployment).bind(settings)


def app_builder(args: dict[str, Any]) -> Application:
    """For Serve config files: `args.settings` are `Settings` fields (STUDIO_* variables fill the
    rest), as for the engine applications; `studio serve` adds `deployments`, the config's
    deployment options by name."""
    options = args.get("deployments", {}).get(cast(Deployment, StudioIngress).name, {})
    return build_api(Settings(**args.get("settings", {})), **options)
