"""Stopping a job's task (what pause and cancel do) leaves no worker behind that later jobs could
hang on."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest
import ray

from pipeline.jobs.scheduler import stop

pytestmark = pytest.mark.ray


@ray.remote
def stage() -> int:
    return os.getpid()


@ray.remote(num_cpus=0.1, max_retries=0)
def job(pid_file: str, slow_export: bool) -> int:
    """Like `run_job`: starts a stage. With `slow_export`, Ray's export of the stage function
    takes seconds, so that the stop lands inside it."""
    Path(pid_file).write_text(str(os.getpid()))
    if slow_export:
        manager = ray._private.worker.global_worker.function_actor_manager
        export = manager.export

        def slow(function: object) -> None:
            time.sleep(5)
            export(function)

        manager.export = slow
    return ray.get(stage.remote())  # type: ignore[no-any-return]


def test_a_job_stopped_inside_a_function_export_leaves_no_worker_that_hangs_on_it(
    ray_session: None, tmp_path: Path
) -> None:
    """Interrupted there, a worker that lived on would believe the stage function exported when
    it never was, and the next job it ran would wait forever for it (what made a resumed render
    hang in CI)."""
    pid_file = tmp_path / "pid"
    first = job.remote(str(pid_file), True)
    deadline = time.monotonic() + 60
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    worker = psutil.Process(int(pid_file.read_text()))
    time.sleep(1)
    stop(first)
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(first, timeout=30)
    _, alive = psutil.wait_procs([worker], timeout=30)
    assert not alive, "the stopped job's worker lives on"
    second = job.remote(str(tmp_path / "pid2"), False)
    assert ray.get(second, timeout=60) != worker.pid
