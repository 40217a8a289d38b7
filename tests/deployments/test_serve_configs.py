"""The GPU Serve configs: valid for Serve, a superset of the embedded config, one application per
neural engine that asks for a GPU, scales to zero and shares a single GPU without waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from deployments.engines import BatchConfig
from models.registry import ENGINES, engine_info
from tests.deployments.conftest import CLUSTER_CONFIG, GPU_CONFIG, ROOT

EMBEDDED = ROOT / "deployments" / "serve_config.yaml"
CONFIGS = [GPU_CONFIG, CLUSTER_CONFIG]
WITH_WEIGHTS = {info.deployment for info in ENGINES if info.gpu} | {"planning-llm"}
"""The applications with model weights: the neural engines and the planning model."""


def applications(path: Path) -> dict[str, dict[str, Any]]:
    raw = yaml.safe_load(path.read_text())
    return {app["name"]: app for app in raw["applications"]}


def engine_deployment(app: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = app["deployments"]
    return deployment  # type: ignore[no-any-return]


def num_gpus(app: dict[str, Any]) -> float:
    return float(engine_deployment(app).get("ray_actor_options", {}).get("num_gpus", 0))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_serve_accepts_the_config(path: Path) -> None:
    ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_embedded_applications_keep_their_names_import_paths_and_args(path: Path) -> None:
    apps = applications(path)
    for name, app in applications(EMBEDDED).items():
        assert name in apps
        assert (apps[name]["import_path"], apps[name]["args"]) == (app["import_path"], app["args"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_engine_application_is_named_after_its_registry_entry(path: Path) -> None:
    for name, app in applications(path).items():
        if app["import_path"] != "deployments.engines:app_builder":
            continue
        info = engine_info(app["args"]["capability"], app["args"]["engine"])
        assert name == info.deployment == engine_deployment(app)["name"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_only_engines_with_weights_ask_for_a_gpu(path: Path) -> None:
    apps = applications(path)
    assert set(apps) >= WITH_WEIGHTS
    assert {name for name, app in apps.items() if num_gpus(app) > 0} == WITH_WEIGHTS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_gpu_engines_scale_to_zero_after_a_delay(path: Path) -> None:
    for name in WITH_WEIGHTS:
        scaling = engine_deployment(applications(path)[name])["autoscaling_config"]
        assert scaling["min_replicas"] == 0
        assert scaling["max_replicas"] >= 1
        delay = scaling.get("downscale_to_zero_delay_s", scaling.get("downscale_delay_s"))
        assert delay is not None and delay > 0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_batched_video_engines_take_a_whole_batch_at_once(path: Path) -> None:
    for name, app in applications(path).items():
        deployment = engine_deployment(app)
        if "user_config" in deployment:
            batching = BatchConfig.model_validate(deployment["user_config"])
            assert deployment["max_ongoing_requests"] >= batching.max_batch_size, name


def test_single_gpu_holds_every_neural_engine_at_once() -> None:
    """Fractions times max replicas stay within one GPU: no replica waits for another's GPU."""
    apps = applications(GPU_CONFIG)
    held = sum(
        num_gpus(apps[name]) * engine_deployment(apps[name])["autoscaling_config"]["max_replicas"]
        for name in WITH_WEIGHTS
    )
    assert 0 < held <= 1


def test_cluster_replicas_fit_a_one_gpu_node() -> None:
    """cluster.yaml's and rayservice.yaml's GPU workers have one GPU each."""
    apps = applications(CLUSTER_CONFIG)
    assert all(0 < num_gpus(apps[name]) <= 1 for name in WITH_WEIGHTS)
