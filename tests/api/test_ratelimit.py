"""Rate limits hold across replicas: two ingress replicas share one budget per client address,
kept by the named Ray actor by default or by Redis; the client address comes from
X-Forwarded-For only when a trusted proxy sends it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from ray import serve

from db.migrate import upgrade
from deployments.api.ratelimit import SHARE_DIVISOR
from tests.api.conftest import Api, app_settings, assert_problem, deploy
from tests.services import free_port, unavailable

pytestmark = pytest.mark.ray

LIMIT = 30


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        unavailable("the `redis-server` binary")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                unavailable(f"redis-server did not answer on port {port}")
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module", params=["actor", "redis"])
def replicated(
    request: pytest.FixtureRequest, serve_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The API with two replicas and a per-address limit of LIMIT a minute."""
    data_dir: Path = tmp_path_factory.mktemp(f"ratelimit-{request.param}")
    database_url = f"sqlite:///{data_dir / 'studio.db'}"
    upgrade(database_url)
    fields: dict[str, object] = {"rate_limit_per_minute_ip": LIMIT}
    if request.param == "redis":
        fields["redis_url"] = request.getfixturevalue("redis_url")
    name = f"ratelimit-{request.param}"
    api = deploy(name, app_settings(data_dir, database_url, **fields), serve_http, num_replicas=2)
    yield api
    serve.delete(name)


def test_the_limit_holds_across_two_replicas(replicated: Api) -> None:
    """With per-replica counters twice the limit would pass; the shared budget lets LIMIT
    through, less at most one unspent share per replica (ratelimit's stated tolerance), and
    one more may refill while the burst runs (one every 60/LIMIT s)."""
    with httpx.Client(base_url=replicated.url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.get("/api/plans"), range(2 * LIMIT)))

    served_by = {r.headers["x-served-by"] for r in responses}
    allowed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(served_by) == 2
    assert len(allowed) + len(refused) == 2 * LIMIT
    tolerance = 2 * max(1, LIMIT // SHARE_DIVISOR)
    assert LIMIT - tolerance <= len(allowed) <= LIMIT + 1
    assert_problem(refused[0], 429, "rate-limited")
    assert int(refused[0].headers["retry-after"]) >= 1


@pytest.fixture(scope="module", params=["untrusted", "trusted"])
def behind_loopback(
    request: pytest.FixtureRequest, serve_http: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The API with a per-address limit of LIMIT a minute, reached from loopback: a proxy it
    does not trust (no STUDIO_TRUSTED_PROXIES), or one it trusts."""
    data_dir: Path = tmp_path_factory.mktemp(f"proxies-{request.param}")
    database_url = f"sqlite:///{data_dir / 'studio.db'}"
    upgrade(database_url)
    fields: dict[str, object] = {"rate_limit_per_minute_ip": LIMIT}
    if request.param == "trusted":
        fields["trusted_proxies"] = ["127.0.0.1"]
    name = f"proxies-{request.param}"
    yield deploy(name, app_settings(data_dir, database_url, **fields), serve_http)
    serve.delete(name)


def test_forwarded_for_counts_only_from_a_trusted_proxy(behind_loopback: Api) -> None:
    """Each request claims another client in X-Forwarded-For. From an untrusted peer the claim
    is ignored and the peer's budget runs out; from a trusted proxy each client has its own."""
    forwarded = [{"X-Forwarded-For": f"198.51.100.{n}"} for n in range(2 * LIMIT)]
    with (
        httpx.Client(base_url=behind_loopback.url, timeout=30) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        responses = list(pool.map(lambda h: client.get("/api/plans", headers=h), forwarded))

    refused = [r for r in responses if r.status_code == 429]
    if behind_loopback.name == "proxies-trusted":
        assert refused == []
    else:
        assert len(refused) >= LIMIT - 1
        assert_problem(refused[0], 429, "rate-limited")
