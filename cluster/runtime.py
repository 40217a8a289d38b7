"""Starting the studio's Ray side: a local Ray (or a connection to a cluster), then every Serve
application of the Serve config YAML (the API and one application per engine), then the
scheduler. The YAML is the one place that sets replicas, autoscaling and resources."""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import serve
from ray.serve import Application, RunTarget
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

from cluster.head import Head, start_head
from cluster.settings import Settings
from deployments.api.ratelimit import serve_environment
from pipeline.jobs.scheduler import scheduler

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SERVE_CONFIG = ROOT / "deployments" / "serve_config.yaml"
SECRET_FIELDS = {
    "jwt_secret", "token_encryption_key", "s3_access_key_id", "s3_secret_access_key",
    "openai_api_key", "elevenlabs_api_key", "runway_api_key", "luma_api_key",
    "google_client_secret",
    "jwt_previous_secrets", "token_previous_keys", "smtp_url",
}  # fmt: skip


def start_ray(settings: Settings, *, quiet: bool = False) -> None:
    """Connects to `STUDIO_RAY_ADDRESS`, or starts a local Ray. Locally, logical CPUs are more
    than the cores on purpose: Serve replicas and tasks that wait on engines take fractions,
    and the CPU-heavy stages (clip encoding, assembly) are limited by `render_slot` resources
    instead, so that the API, the engines and the render DAG never starve each other."""
    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace="studio")
        return
    ray.init(
        address="local",
        num_cpus=max(8, 2 * (os.cpu_count() or 2)),
        resources={"render_slot": settings.render_workers},
        namespace="studio",
        include_dashboard=False,
        log_to_driver=not quiet,
        runtime_env=_runtime_env(settings),
    )


def _runtime_env(settings: Settings) -> dict[str, Any]:
    return {"env_vars": {"PYTHONPATH": str(ROOT), **serve_environment(settings)}}


def serve_config(settings: Settings, applications: set[str] | None = None) -> ServeDeploySchema:
    """The Serve config YAML with this process's settings passed to every application's
    builder (secrets stay out: replicas read them from STUDIO_* or the data folder)."""
    path = settings.serve_config or DEFAULT_SERVE_CONFIG
    raw: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    overrides = settings.model_dump(
        mode="json", exclude=SECRET_FIELDS, exclude_defaults=True, exclude_computed_fields=True
    )
    overrides["data_dir"] = str(settings.data_dir.resolve())
    raw["http_options"] = {**raw.get("http_options", {}), "host": settings.host,
                           "port": settings.port}  # fmt: skip
    raw["applications"] = [
        {**app, "args": {**app.get("args", {}), "settings": overrides}}
        for app in raw["applications"]
        if applications is None or app["name"] in applications
    ]
    return ServeDeploySchema.model_validate(raw)


def deploy(
    settings: Settings, applications: set[str] | None = None, timeout_s: float = 180
) -> None:
    """Deploys the config's applications (all, or those named) and waits until they run; the
    other applications stay as they are. Each is built by its builder on the cluster, with the
    config's options of its deployment passed in the builder's `deployments` argument (`serve
    deploy` and KubeRay take the YAML as is, and Serve applies those options itself)."""
    config = serve_config(settings, applications)
    serve.start(proxy_location=config.proxy_location, http_options=config.http_options.model_dump())
    built = ray.get(
        _build.remote([(app.import_path, _builder_args(app)) for app in config.applications])
    )
    serve.run_many(
        [
            RunTarget(
                application,
                name=app.name,
                route_prefix=app.route_prefix,
                logging_config=app.logging_config,
                external_scaler_enabled=app.external_scaler_enabled,
            )
            for app, application in zip(config.applications, built, strict=True)
        ],
        wait_for_ingress_deployment_creation=False,
        wait_for_applications_running=False,
    )
    wait_running({app.name for app in config.applications}, timeout_s)


def _builder_args(app: ServeApplicationSchema) -> dict[str, Any]:
    """The application's args plus `deployments`: each deployment's options set in the config,
    by deployment name."""
    options = {
        deployment.name: deployment.model_dump(exclude_unset=True, exclude={"name"})
        for deployment in app.deployments
    }
    return {**app.args, "deployments": options}


@ray.remote(num_cpus=0)
def _build(builders: list[tuple[str, dict[str, Any]]]) -> list[Application]:
    """The applications of the builders at `module:function` with their args, built where Serve
    would build them for a config: on the cluster, whose STUDIO_* variables and data folder they
    read. One task for all: each task in a fresh worker process pays the imports again (Ray
    Serve's take 2 s of CPU), and on a cold start every task gets a fresh worker."""
    built = []
    for import_path, args in builders:
        module, _, name = import_path.partition(":")
        built.append(getattr(importlib.import_module(module), name)(args))
    return built


def wait_running(names: set[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {name: apps[name].status if name in apps else "MISSING" for name in names}
        if all(state == "RUNNING" for state in states.values()):
            return
        failed = {n: apps[n].message for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed:
            raise RuntimeError(f"Serve applications failed to deploy: {failed}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve applications not running after {timeout_s} s: {states}")
        time.sleep(0.5)


def ensure_deployed(settings: Settings, names: set[str], timeout_s: float = 300) -> None:
    """Deploys those of the named applications that are not deployed (the others, the studio's
    API included, stay as they are) and waits until all of them run."""
    if missing := names - set(serve.status().applications):
        deploy(settings, missing, timeout_s=timeout_s)
    wait_running(names, timeout_s)


def start_studio(settings: Settings) -> Head | None:
    """Ray, every application of the Serve config, and the scheduler (which resumes jobs left
    queued or running by an earlier run). Ray is `STUDIO_RAY_ADDRESS`'s when set, else a local
    head with its dashboard, returned for the caller to stop after `serve.shutdown()`."""
    head = None if settings.ray_address else start_head(settings)
    try:
        if head is None:
            start_ray(settings)
        else:
            ray.init(
                address=head.gcs_address, namespace="studio", runtime_env=_runtime_env(settings)
            )
        deploy(settings)
        scheduler(settings)
    except BaseException:
        stop_studio(head)
        raise
    return head


def stop_studio(head: Head | None) -> None:
    """Serve's applications, this driver, then the head this process started (if any)."""
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()
    if head is not None:
        head.stop()
