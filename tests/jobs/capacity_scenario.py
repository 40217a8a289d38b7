"""Render capacity on a local multi-node Ray, in its own process (test_capacity.py runs `python -m
tests.jobs.capacity_scenario DATA_DIR` and reads the JSON it prints last): a head with one
`render_slot`, then a worker with two joins, then a worker with four (past the setting's bound of
four), then both leave. It reports the scheduler actor's capacity after each change, as read by
the pass that starts renders, without restarting the scheduler.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ray
from ray.actor import ActorHandle
from ray.cluster_utils import Cluster

from cluster.settings import Settings
from db.migrate import upgrade
from pipeline.jobs.scheduler import scheduler

ROOT = Path(__file__).resolve().parents[2]
BOUND = 4


def settle(actor: ActorHandle, expected: int, timeout_s: float = 120) -> int:
    """The scheduler's capacity once it is `expected` (nodes are seen joining and leaving within
    seconds), or the last one seen after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (capacity := int(ray.get(actor.render_capacity.remote()))) != expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return capacity


def main(data: Path) -> dict[str, int]:
    head = {"num_cpus": 2, "resources": {"render_slot": 1}, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    ray.init(
        address=cluster.address,
        namespace="studio",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    try:
        settings = Settings(data_dir=data, render_jobs_max=BOUND, _env_file=None)
        upgrade(settings.resolved_database_url)
        actor = scheduler(settings)
        seen = {"head": settle(actor, 1)}
        small = cluster.add_node(num_cpus=1, resources={"render_slot": 2})
        seen["small_joined"] = settle(actor, 3)
        large = cluster.add_node(num_cpus=1, resources={"render_slot": 4})
        seen["large_joined"] = settle(actor, BOUND)
        cluster.remove_node(large)
        seen["large_left"] = settle(actor, 3)
        cluster.remove_node(small)
        seen["small_left"] = settle(actor, 1)
        return seen
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
