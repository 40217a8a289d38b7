"""The API under plain uvicorn and under Ray Serve, side by side with a bare FastAPI route, on
the same database, Ray cluster and rate-limit actor: req/s and p50/p99 of an authenticated
`GET /api/credits/balance` at concurrency 1, 16 and 64, from a separate load process (raw
HTTP/1.1 keep-alive over asyncio, so the client costs as little CPU as possible on a small
machine). Run by hand:

    python bench/api.py [--seconds 8] [--replicas 1] [--max-ongoing 200]
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1 python bench/api.py     # Serve's throughput mode
    RAY_SERVE_ENABLE_HA_PROXY=1 python bench/api.py          # Serve's HAProxy ingress

`bare` is the baseline: a FastAPI app with only the same SQL read of the same user's balance
(no authentication, no rate limits, no middleware) under uvicorn. `uvicorn` is the studio's
app, built by `create_app` with the same settings as the Serve deployment, in one process (as
one Serve replica is one process). Prints a table, Serve against uvicorn (the cost of Serve)
and Serve against bare (the cost of the studio's app and Serve together).
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
import uuid
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


async def _load(
    port: int, path: str, token: str, concurrency: int, warmup: float, seconds: float
) -> tuple:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    now = time.perf_counter()
    measure_from, until = now + warmup, now + warmup + seconds
    latencies: list[float] = []
    errors = await asyncio.gather(
        *(_worker(port, request, until, measure_from, latencies) for _ in range(concurrency))
    )
    return latencies, sum(errors)


def load(
    port: int, path: str, token: str, concurrency: int, warmup: float, seconds: float
) -> tuple:
    return asyncio.run(_load(port, path, token, concurrency, warmup, seconds))


def measure(
    name: str, port: int, path: str, token: str, concurrency: int, seconds: float
) -> Result:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        latencies, errors = pool.apply(load, (port, path, token, concurrency, 2.0, seconds))
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


def run_bare(data_dir: str, port: int) -> None:
    """The baseline child: one route doing the studio route's SQL read, nothing else. The user
    comes from a query parameter, as the studio's comes from the token."""
    import uvicorn
    from fastapi import FastAPI

    from pipeline.ledger import store

    url = studio_settings(Path(data_dir)).resolved_database_url
    app = FastAPI()

    @app.get(PATH)
    def balance(user: uuid.UUID) -> dict[str, int]:
        found = store.balance(url, user)
        return {"available": found.available, "held": found.held}

    @app.get("/api/plans")
    def ready() -> list[str]:
        return []

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


def bench_user(url: str, settings: Settings) -> tuple[str, str]:
    """A registered user on a plan whose rate limit the benchmark cannot reach: their access
    token and id."""
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
        user_id = str(user.id)
    login = httpx.post(f"{url}/api/users/login", json={"email": email, "password": password})
    return str(login.json()["access_token"]), user_id


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
    ports = {name: free_port() for name in ("bare", "uvicorn", "serve")}
    serve.start(http_options={"host": "127.0.0.1", "port": ports["serve"]})
    serve.run(
        build_api(settings, num_replicas=args.replicas, max_ongoing_requests=args.max_ongoing),
        name="bench",
        route_prefix="/",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--uvicorn-child", str(data_dir), str(ports["uvicorn"]),
             ray.get_runtime_context().gcs_address],
            env=env,
        ),
        subprocess.Popen(
            [sys.executable, __file__, "--bare-child", str(data_dir), str(ports["bare"])], env=env
        ),
    ]  # fmt: skip
    try:
        for port, child in zip(ports.values(), [children[1], children[0], None], strict=True):
            wait_for(f"http://127.0.0.1:{port}", child)
        token, user_id = bench_user(f"http://127.0.0.1:{ports['uvicorn']}", settings)
        paths = {"bare": f"{PATH}?user={user_id}", "uvicorn": PATH, "serve": PATH}
        modes = " ".join(
            f"{var}={os.environ.get(var, '0')}"
            for var in ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_HA_PROXY")
        )
        print(
            f"GET {PATH}, {args.seconds:.0f} s per run; Serve: {args.replicas} replica(s), "
            f"max_ongoing_requests={args.max_ongoing}, {modes}; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(f"{'conc':>5} {'server':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        results: dict[tuple[str, int], Result] = {}
        for concurrency in CONCURRENCY:
            for name, port in ports.items():
                result = measure(name, port, paths[name], token, concurrency, args.seconds)
                results[name, concurrency] = result
                print(
                    f"{concurrency:>5} {name:>8} {result.rps:>8.0f} {result.p50_ms:>8.1f} "
                    f"{result.p99_ms:>8.1f} {result.errors:>7}",
                    flush=True,
                )
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("serve vs uvicorn (Serve's cost) and serve vs bare (the studio's app and Serve):")
        for concurrency in CONCURRENCY:
            s, u, b = (results[name, concurrency] for name in ("serve", "uvicorn", "bare"))
            print(
                f"  c={concurrency:<3} p50 +{s.p50_ms - u.p50_ms:.1f} ms over uvicorn, "
                f"throughput x{s.rps / u.rps:.2f} of uvicorn, x{s.rps / b.rps:.2f} of bare"
            )
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=30)
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--uvicorn-child":
        run_uvicorn(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "--bare-child":
        run_bare(sys.argv[2], int(sys.argv[3]))
    else:
        main()
