"""`studio serve` as a user runs it: a subprocess on the embedded default (SQLite and a local
storage folder in a fresh data folder), its API, dashboard and metrics on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from cluster import running
from cluster.settings import Settings
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 420
STOP_TIMEOUT_S = 180


@dataclass
class Studio:
    settings: Settings  # as the studio reads them (the data folder, the ports)
    env: dict[str, str]  # its environment: what a fresh shell of its user has
    cwd: Path
    api_url: str
    dashboard_url: str
    metrics_url: str
    log: Path


def ray_token() -> str:
    """The token of Ray's token authentication, where the studio's head finds it."""
    return (Path.home() / ".ray" / "auth_token").read_text().strip()


def token_header() -> dict[str, str]:
    return {"Authorization": f"Bearer {ray_token()}"}


@contextmanager
def studio_serve(folder: Path) -> Iterator[Studio]:
    """Runs `python -m cluster.cli serve` in `folder` until the context ends (SIGTERM, as
    Ctrl-C's twin)."""
    data_dir = folder / "var"
    ports = {"PORT": free_port(), "DASHBOARD_PORT": free_port(), "METRICS_EXPORT_PORT": free_port()}
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("STUDIO_", "RAY_"))
    }
    env |= {f"STUDIO_{key}": str(port) for key, port in ports.items()}
    env |= {"STUDIO_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", "serve"],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    settings = Settings(data_dir=data_dir, _env_file=None)
    studio = Studio(
        settings=settings,
        env=env,
        cwd=folder,
        api_url=f"http://127.0.0.1:{ports['PORT']}",
        dashboard_url=f"http://127.0.0.1:{ports['DASHBOARD_PORT']}",
        metrics_url=f"http://127.0.0.1:{ports['METRICS_EXPORT_PORT']}/metrics",
        log=log,
    )
    try:
        _wait_serving(process, studio)
        yield studio
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise


def _wait_serving(process: subprocess.Popen[bytes], studio: Studio) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while running.find(studio.settings) is None or not _answers(f"{studio.api_url}/api/plans"):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = studio.log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"studio serve did not start (exit {process.poll()}):\n{tail}")
        time.sleep(1)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
