"""Engine placement and autoscaling on a local two-node Ray, in its own process (test_multinode.py
runs `python -m tests.deployments.multinode SERVE_CONFIG MODELS_DIR DATA_DIR` and reads the JSON
it prints last): a head with CPUs only and a worker with two fake GPUs and render slots.

It deploys GPU engine applications of the given Serve config with `cluster.runtime.deploy` and
reports the node of every replica, then loads a slow autoscaled deployment (min 1, max 3
replicas, a quarter GPU each) until it has scaled up and reports how far it went, and how many
replicas are left once it has idled past its downscale delay.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.cluster_utils import Cluster
from ray.serve.handle import DeploymentHandle
from ray.serve.schema import ReplicaState
from ray.util.state import list_actors

from cluster.runtime import deploy
from cluster.settings import Settings
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
ENGINE_APPS = ("video-ltx", "lipsync-wav2lip")
SLOW_APP = "slow"
DOWNSCALE_DELAY_S = 2.0


@serve.deployment(
    max_ongoing_requests=2,
    ray_actor_options={"num_cpus": 0.1, "num_gpus": 0.25},
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": 3,
        "target_ongoing_requests": 1,
        "upscale_delay_s": 0.5,
        "downscale_delay_s": DOWNSCALE_DELAY_S,
        "look_back_period_s": 2,
    },
)
class Slow:
    async def __call__(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return str(ray.get_runtime_context().get_node_id())


def replica_nodes(app: str) -> list[str]:
    """The node of every live replica actor of the application's deployment."""
    prefix = f"ServeReplica:{app}:"
    address = ray.get_runtime_context().gcs_address
    actors = list_actors(address=address, filters=[("state", "=", "ALIVE")], limit=1000)
    return [str(a.node_id) for a in actors if a.class_name.startswith(prefix)]


def running(app: str) -> int:
    deployment = serve.status().applications[app].deployments
    return sum(d.replica_states.get(ReplicaState.RUNNING, 0) for d in deployment.values())


def wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def load(handle: DeploymentHandle, stop: threading.Event) -> None:
    """Twelve requests in flight at a time until stopped."""
    while not stop.is_set():
        responses = [handle.remote(1.0) for _ in range(12)]
        for response in responses:
            response.result(timeout_s=60)


def autoscale() -> dict[str, Any]:
    handle = serve.run(Slow.bind(), name=SLOW_APP, route_prefix=None)
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(handle, stop), daemon=True)
    started = time.monotonic()
    loader.start()
    scaled_up = wait_for(lambda: running(SLOW_APP) == 3, timeout_s=90)
    up_s = time.monotonic() - started
    peak_nodes = replica_nodes(SLOW_APP)
    stop.set()
    loader.join()
    idle = time.monotonic()
    scaled_down = wait_for(lambda: running(SLOW_APP) == 1, timeout_s=90)
    return {
        "scaled_up": scaled_up,
        "up_s": round(up_s, 1),
        "peak_nodes": peak_nodes,
        "scaled_down": scaled_down,
        "down_s": round(time.monotonic() - idle, 1),
        "replicas_after_idle": running(SLOW_APP),
    }


def main(serve_config: Path, models_dir: Path, data_dir: Path) -> dict[str, Any]:
    head = {"num_cpus": 4, "num_gpus": 0, "dashboard_port": free_port()}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    gpu_node = cluster.add_node(num_cpus=4, num_gpus=2, resources={"render_slot": 2})
    ray.init(
        address=cluster.address,
        namespace="studio",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    try:
        port = free_port()
        # Both nodes share this machine, so only the head runs an HTTP proxy.
        serve.start(proxy_location="HeadOnly", http_options={"port": port})
        settings = Settings(
            data_dir=data_dir,
            models_dir=models_dir,
            serve_config=serve_config,
            port=port,
            _env_file=None,
        )
        deploy(settings, set(ENGINE_APPS), timeout_s=240)
        return {
            "gpu_node": gpu_node.node_id,
            "head_node": cluster.head_node.node_id,
            "engine_nodes": {app: replica_nodes(app) for app in ENGINE_APPS},
            **autoscale(),
        }
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    config, models, data = (Path(arg) for arg in sys.argv[1:4])
    print(json.dumps(main(config, models, data)))
