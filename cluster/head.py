"""The local Ray head of `studio serve`: `ray start --head --block` as a child process the studio
owns, with the dashboard and the job server on 127.0.0.1, so that operators see the studio in the
dashboard and `ray job submit` reaches it.

`ray.init(address="local")` cannot do this here: each such Ray's dashboard agent takes the fixed
port 52365, so a second Ray on the machine collides. The head below gets a free port for every
process that needs none fixed; the dashboard port is a setting (8265, where `ray job submit` looks)
and so is the metrics export port (free when unset: Prometheus finds it through the head's service
discovery file). Its processes see the venv first on PATH, so that a job's `python` is the studio's,
and STUDIO_DATA_DIR, so that a job finds the studio's settings, database and storage.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import httpx

from cluster.errors import StudioError
from cluster.settings import Settings

HOST = "127.0.0.1"
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30


class HeadFailed(StudioError):
    slug, status, title = "ray-head-failed", 503, "The local Ray head did not start"
    internal = True


@dataclass
class Head:
    process: subprocess.Popen[bytes]
    gcs_address: str  # what `ray.init(address=...)` joins
    dashboard_url: str  # the dashboard and job server: `ray job submit --address`
    metrics_port: int  # the head's metrics export port (Prometheus scrapes it)
    log: Path

    def stop(self) -> None:
        """Ends the head and every Ray process it started (`ray start --block` kills them on
        SIGTERM); only this head's, never the other Rays of the machine as `ray stop` would."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def temp_dir(settings: Settings) -> Path:
    """The head's own Ray folder (sessions, sockets, logs, unpacked job packages), apart from
    other Rays of the machine in /tmp/ray; short, as Unix socket paths must be."""
    digest = sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"studio-ray-{digest}"


def command(settings: Settings, gcs_port: int, metrics_port: int) -> list[str]:
    """The `ray start` line of the studio's head, in its own folder."""
    ray = str(Path(sys.executable).parent / "ray")
    ports = {
        "--port": gcs_port,
        "--dashboard-port": settings.dashboard_port,
        "--metrics-export-port": metrics_port,
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--ray-client-server-port": free_port(),
    }
    return [
        ray, "start", "--head", "--block", "--disable-usage-stats",
        f"--temp-dir={temp_dir(settings)}",
        f"--dashboard-host={HOST}", "--include-dashboard=true",
        *(f"{flag}={port}" for flag, port in ports.items()),
        f"--num-cpus={max(8, 2 * (os.cpu_count() or 2))}",
        f"--resources={json.dumps({'render_slot': settings.render_workers})}",
    ]  # fmt: skip


def environment(settings: Settings) -> dict[str, str]:
    """The head's environment, inherited by its workers and by submitted jobs' entry points."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["STUDIO_DATA_DIR"] = str(settings.data_dir.resolve())
    env.setdefault("RAY_AUTH_MODE", "token")
    # `ray job stop` sends SIGTERM, then SIGKILL after this many seconds (Ray's default, 3, is
    # too short for a batch to cancel its renders through the database)
    env.setdefault("RAY_JOB_STOP_WAIT_TIME_S", "60")
    return env


def token_auth_for_drivers() -> None:
    """Ray reads RAY_AUTH_MODE once, as it is imported, and enables its token by itself only for
    a Ray it starts or finds at "auto": a process that joins the studio's head by its address
    sets it first (RAY_AUTH_MODE=disabled in the environment opts out, head included)."""
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def ensure_token(env: dict[str, str]) -> None:
    """Ray's token authentication needs a token before the head starts: Ray's own, from
    RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, generated there when there is
    none. A driver on this machine (the studio, `ray job submit` with RAY_AUTH_MODE=token)
    sends the same one."""
    if env["RAY_AUTH_MODE"] != "token" or env.get("RAY_AUTH_TOKEN"):
        return
    path = Path(env.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not path.is_file():
        ray = str(Path(sys.executable).parent / "ray")
        subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True)  # fmt: skip


def start_head(settings: Settings) -> Head:
    """Starts the head and waits until its GCS and dashboard answer; HeadFailed (with the end
    of its log) when it exits or does not answer in time."""
    gcs_port = free_port()
    metrics_port = settings.metrics_export_port or free_port()
    log = settings.data_dir.resolve() / "logs" / "ray-head.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = environment(settings)
    ensure_token(env)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(settings, gcs_port, metrics_port),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the studio, which stops the head itself
        )
    head = Head(
        process=process,
        gcs_address=f"{HOST}:{gcs_port}",
        dashboard_url=f"http://{HOST}:{settings.dashboard_port}",
        metrics_port=metrics_port,
        log=log,
    )
    try:
        _wait_ready(head)
    except HeadFailed:
        head.stop()
        raise
    return head


def _wait_ready(head: Head) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if head.process.poll() is not None:
            raise HeadFailed(f"`ray start` exited with {head.process.returncode}: {_tail(head)}")
        if _answers(head):
            return
        if time.monotonic() > deadline:
            raise HeadFailed(f"no answer after {START_TIMEOUT_S} s: {_tail(head)}")
        time.sleep(0.5)


def _answers(head: Head) -> bool:
    """The GCS accepts connections and the dashboard answers (401 to a request without the
    token is an answer)."""
    host, _, port = head.gcs_address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        version = httpx.get(f"{head.dashboard_url}/api/version", timeout=2)
    except (OSError, httpx.HTTPError):
        return False
    return version.status_code < 500


def _tail(head: Head, lines: int = 15) -> str:
    text = head.log.read_text(encoding="utf-8", errors="replace").splitlines()
    return " | ".join(text[-lines:])
