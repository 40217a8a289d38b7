"""On a local multi-node Ray (a CPU-only head, a worker with two fake GPUs): the GPU engine
applications of serve_config.cluster.yaml run on the GPU node only, and an autoscaled deployment
grows to its max under load and shrinks back to its min when idle. The cluster lives in its own
process (tests/deployments/multinode.py), apart from the session's Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.deployments.conftest import CLUSTER_CONFIG, ROOT, derived_config

pytestmark = [pytest.mark.ray, pytest.mark.own_cluster, pytest.mark.timeout(600)]

# Serve pushes autoscaling metrics every 10 s by default; the test wants decisions in seconds.
FAST_METRICS = {
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}


@pytest.fixture(scope="module")
def observed(
    tiny_models: Callable[[Iterable[str]], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("multinode")
    starts_at_deploy = {"autoscaling_config": {"initial_replicas": 1}}
    config = derived_config(
        CLUSTER_CONFIG,
        tmp / "serve_config.yaml",
        num_gpus=0.5,
        deployment={"video-ltx": starts_at_deploy, "lipsync-wav2lip": starts_at_deploy},
    )
    models_dir = tiny_models(["ltx-video", "wav2lip"])
    command = [sys.executable, "-m", "tests.deployments.multinode", config, models_dir, tmp / "var"]
    done = subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        env={**os.environ, **FAST_METRICS, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_gpu_engines_run_on_the_gpu_node_only(observed: dict[str, Any]) -> None:
    for app, nodes in observed["engine_nodes"].items():
        assert nodes, f"{app} has no replica"
        assert set(nodes) == {observed["gpu_node"]}, app


def test_an_autoscaled_deployment_grows_to_its_max_under_load(observed: dict[str, Any]) -> None:
    assert observed["scaled_up"], "3 replicas within 90 s of load"
    assert observed["peak_nodes"] == [observed["gpu_node"]] * 3


def test_an_autoscaled_deployment_shrinks_to_its_min_when_idle(observed: dict[str, Any]) -> None:
    assert observed["scaled_down"], "back to 1 replica within 90 s of idling"
    assert observed["replicas_after_idle"] == 1
