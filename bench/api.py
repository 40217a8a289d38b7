"""The API under plain uvicorn and under Ray Serve, side by side, on the same database, Ray
cluster and rate-limit actor: req/s and p50/p99 of an authenticated `GET /api/credits/balance`
at concurrency 1, 16 and 64, from a separate load process (raw HTTP/1.1 keep-alive over asyncio,
so the client costs as little CPU as possible on a small machine). Run by hand:

    python bench/api.py [--seconds 8] [--replicas 1] [--max-ongoing 200]
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1 python bench/api.py     # Serve's throughput mode

uvicorn runs one process (as one Serve replica is one process); both apps are built by
`create_app` with the same settings. Prints a table and the Serve/uvicorn ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster.settings import Settings  # noqa: E402

CONCURRENCY = (1, 16, 64)
PATH = "/api/credits/balance"


@dataclass
class Result:
    server: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


# -- load (runs in its own process) ------------------------------------------------------------


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status


async def _worker(
    port: int, request: bytes, until: float, measure_from: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while (started := time.perf_counter()) < until:
            writer.write(request)
            status = await _response(reader)
            if started >= measure_from:
                latencies.append(time.perf_counter() - started)
                errors += status != 200
    finally:
        writer.close()
    return errors


async def _load(port: int, token: str, concurrency: int, warmup: float, seconds: float) -> tuple:
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    now = time.perf_counter()
    measure_from, until = now + warmup, now + warmup + seconds
    latencies: list[float] = []
    errors = await asyncio.gather(
        *(_worker(port, request, until, measure_from, latencies) for _ in range(concurrency))
    )
    return latencies, sum(errors)


def load(port: int, token: str, concurrency: int, warmup: float, seconds: float) -> tuple:
    return asyncio.run(_load(port, token, concurrency, warmup, seconds))


def measure(name: str, port: int, token: str, concurrency: int, seconds: float) -> Result:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        latencies, errors = pool.apply(load, (port, token, concurrency, 2.0, seconds))
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Result(
        name, concurrency, len(latencies), errors, seconds, quantiles[49] * 1e3, quantiles[98] * 1e3
    )


# -- the servers -------------------------------------------------------------------------------


def studio_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, rate_limit_per_minute_ip=10**9, _env_file=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_uvicorn(data_dir: str, port: int, ray_address: str) -> None:
    """The uvicorn child: the same app, joined to the same Ray cluster (same limiter actor)."""
    import ray
    import uvicorn

    from deployments.api.app import create_app

    ray.init(address=ray_address, namespace="studio", log_to_driver=False)
    app = create_app(studio_settings(Path(data_dir)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_for(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/api/plans", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(url)


def bench_user(url: str, settings: Settings) -> str:
    """A registered user on a plan whose rate limit the benchmark cannot reach."""
    from sqlmodel import select

    from db.models import Plan, User
    from db.session import session_scope

    email, password = "bench@example.com", "benchmark password"
    httpx.post(f"{url}/api/users/register", json={"email": email, "password": password}, timeout=30)
    with session_scope(settings.resolved_database_url) as session:
        free = session.exec(select(Plan).where(Plan.code == "free")).one()
        limits = free.model_dump(exclude={"id", "code", "created_at"})
        session.add(Plan(code="bench", **(limits | {"rate_limit_per_minute": 10**9})))
        session.flush()
        user = session.exec(select(User).where(User.email == email)).one()
        user.plan_code = "bench"
    login = httpx.post(f"{url}/api/users/login", json={"email": email, "password": password})
    return str(login.json()["access_token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--replicas", type=int, default=1, help="Serve ingress replicas")
    parser.add_argument("--max-ongoing", type=int, default=200, help="max_ongoing_requests")
    args = parser.parse_args()

    import ray
    from ray import serve

    from db.migrate import upgrade
    from deployments.api.ingress import build_api

    data_dir = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    settings = studio_settings(data_dir)
    upgrade(settings.resolved_database_url)
    ray.init(
        num_cpus=8,
        namespace="studio",
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    serve_port, uvicorn_port = free_port(), free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    serve.run(
        build_api(settings, num_replicas=args.replicas, max_ongoing_requests=args.max_ongoing),
        name="bench",
        route_prefix="/",
    )
    child = subprocess.Popen(
        [sys.executable, __file__, "--uvicorn-child", str(data_dir), str(uvicorn_port),
         ray.get_runtime_context().gcs_address],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    servers = {"uvicorn": uvicorn_port, "serve": serve_port}
    try:
        for port in servers.values():
            wait_for(f"http://127.0.0.1:{port}", child)
        token = bench_user(f"http://127.0.0.1:{uvicorn_port}", settings)
        mode = os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED", "0")
        print(
            f"GET {PATH}, {args.seconds:.0f} s per run; Serve: {args.replicas} replica(s), "
            f"max_ongoing_requests={args.max_ongoing}, RAY_SERVE_THROUGHPUT_OPTIMIZED={mode}"
        )
        print(f"{'conc':>5} {'server':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        results: dict[tuple[str, int], Result] = {}
        for concurrency in CONCURRENCY:
            for name, port in servers.items():
                result = measure(name, port, token, concurrency, args.seconds)
                results[name, concurrency] = result
                print(
                    f"{concurrency:>5} {name:>8} {result.rps:>8.0f} {result.p50_ms:>8.1f} "
                    f"{result.p99_ms:>8.1f} {result.errors:>7}",
                    flush=True,
                )
        print("Serve / uvicorn:")
        for concurrency in CONCURRENCY:
            s, u = results["serve", concurrency], results["uvicorn", concurrency]
            print(
                f"  c={concurrency:<3} throughput x{s.rps / u.rps:.2f}  "
                f"p50 x{s.p50_ms / u.p50_ms:.2f}  p99 x{s.p99_ms / u.p99_ms:.2f}"
            )
    finally:
        child.terminate()
        child.wait(timeout=30)
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--uvicorn-child":
        run_uvicorn(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
