"""A worker node is lost while a render runs on a local three-node Ray: the render still
succeeds, its credits are captured exactly once, nothing stays held, the film decodes, and the
API answers 200 throughout. The cluster lives in its own process
(tests/ops/node_loss_scenario.py), apart from the session's Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.own_cluster, pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("node-loss")
    result = subprocess.run(
        [sys.executable, "-m", "tests.ops.node_loss_scenario", str(data)],
        capture_output=True, text=True, cwd=ROOT, timeout=1100,
        env={**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_node_went_while_the_render_ran(report: dict[str, Any]) -> None:
    assert report["status_at_loss"] == "running"
    assert report["progress_at_loss"] > 0
    assert report["removed_was_running"], "the node removed was running a render task"
    assert report["removed_node"] != report["head_node"]
    critical = (
        "CreditLedger", "RenderScheduler", "UploadManager", "RateLimitActor", "ServeController",
        "ProxyActor", "ServeReplica:api:StudioIngress",
    )  # fmt: skip
    for name in critical:
        assert report["actors_at_loss"].get(name) == [report["head_node"]], name


def test_the_render_succeeds_and_is_charged_once(report: dict[str, Any]) -> None:
    assert report["status"] == "succeeded", report["error"]
    assert report["captures"] == 1
    assert report["held"] == 0
    assert report["available"] == report["available_before"] - report["credits_used"]


def test_the_film_decodes(report: dict[str, Any]) -> None:
    film = report["film"]
    assert (film["video_codec"], film["audio_codec"]) == ("h264", "aac")
    assert film["duration_s"] == pytest.approx(12, abs=0.5)


def test_the_api_answered_throughout(report: dict[str, Any]) -> None:
    assert report["api_answers_after_loss"] > 5
    assert report["api_failures"] == []
