"""Jobs are durable: the whole local cluster restarts while two renders run, and both finish
afterwards, each charged exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.own_cluster]
ROOT = Path(__file__).resolve().parents[2]


def test_renders_survive_a_cluster_restart_and_are_charged_once(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.jobs.restart_scenario", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
        env={**os.environ, "RAY_ADDRESS": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses_at_stop"] == ["running", "running"]
    assert report["statuses"] == ["succeeded", "succeeded"]
    assert all(attempts >= 2 for attempts in report["attempts"]), "both ran again after restart"
    assert report["held"] == 0
    assert report["available"] == report["granted"] - sum(report["used"])
    assert list(report["captures"].values()) == [1, 1]
