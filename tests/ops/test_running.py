"""The running studio's announcement in the data folder: found while its process lives, ignored
once it is gone, and withdrawn only by the studio that wrote it."""

from __future__ import annotations

import os
import subprocess
import sys

from cluster import running
from cluster.settings import Settings


def studio(pid: int) -> running.RunningStudio:
    return running.RunningStudio(ray_address="127.0.0.1:6390", api_url="http://x:1", pid=pid)


def test_a_live_studio_is_found_and_a_dead_ones_announcement_is_ignored(
    settings: Settings,
) -> None:
    assert running.find(settings) is None
    running.announce(settings, studio(os.getpid()))
    assert running.find(settings) == studio(os.getpid())

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    running.announce(settings, studio(int(gone.stdout)))
    assert running.find(settings) is None


def test_only_the_announcing_process_withdraws(settings: Settings) -> None:
    running.announce(settings, studio(os.getppid()))
    running.withdraw(settings)
    assert running.find(settings) == studio(os.getppid())
    running.announce(settings, studio(os.getpid()))
    running.withdraw(settings)
    assert not running.announcement(settings).exists()
