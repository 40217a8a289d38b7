"""How many renders run at once follows the cluster's `render_slot`s as nodes join and leave, up
to the `render_jobs_max` bound, with the scheduler running throughout. The cluster lives in its
own process (tests/jobs/capacity_scenario.py), apart from the session's Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.own_cluster, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def capacity(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "RAY_ADDRESS"))}
    done = subprocess.run(
        [sys.executable, "-m", "tests.jobs.capacity_scenario", str(tmp_path_factory.mktemp("cap"))],
        cwd=ROOT,
        env=env | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_node_with_render_slots_raises_the_capacity(capacity: dict[str, int]) -> None:
    assert (capacity["head"], capacity["small_joined"]) == (1, 3)


def test_the_setting_bounds_the_capacity(capacity: dict[str, int]) -> None:
    assert capacity["large_joined"] == 4


def test_a_node_leaving_lowers_the_capacity(capacity: dict[str, int]) -> None:
    assert (capacity["large_left"], capacity["small_left"]) == (3, 1)
