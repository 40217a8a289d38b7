# Findings kept from the ledger's docstrings (2-core machine):
# - One lane in the CreditLedger actor beat two or four: bigger batches, fewer contending
#   transactions.
# - One LedgerClient batch on its way beat two at 32 client threads: 1.25x the
#   reserve+captures per second, p99 down by a fifth (the actor runs one transaction for all
#   the callers instead of two for half of them each, and there are fewer Ray calls).
# - Plain dataclasses for the ledger's outcomes: a validating pydantic model cost the actor
#   several times more to build and pickle.
"""Reserve+capture per second through the CreditLedger actor against the same operation as raw
conditional UPDATEs, on the same PostgreSQL, at 1, 8 and 32 client threads.

    python -m bench.ledger [--database-url postgresql://...] [--seconds 5] [--users 8]

Runs in a fresh schema of the given database (dropped afterwards) and a local Ray. The ledger
starts with a history (`--history` settled reservations, analysed), as a ledger in use has: on
tables it has never analysed, PostgreSQL plans sequential scans, and the actor's lookups would
slow down with every operation the bench adds. Each client
thread works on user `i % users`, so several clients share each hot account, and the threads
share one `LedgerClient`, as the threads of an API replica or a render worker do. The actor
does the whole double-entry job (reservation row, ledger entries, cached balance); the raw
baseline only moves the numbers, in autocommit: reserve is `UPDATE credit_accounts SET
available = available - 1, held = held + 1 WHERE user_id = :u AND available >= 1`, capture
`UPDATE credit_accounts SET held = held - 1 WHERE user_id = :u AND held >= 1`. Two more
columns, for context: `debit` is one such UPDATE per op (the lower bound of any safe debit),
`direct` the actor's reserve+capture through pipeline/ledger/store.py from the client threads,
without the actor (two transactions per op, no batching).

A 2-core machine's speed drifts by a third from one pass to the next, so the actor and raw
passes alternate for `--repeat` rounds (3) and the ratio reported is the median of the rounds'
ratios, with their range; the rates are the medians, the latencies those of all rounds.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import ray
from ray.actor import ActorHandle

from db.migrate import upgrade
from db.models import LedgerKind, User
from db.session import get_engine, session_scope
from pipeline.ledger import rules, store
from pipeline.ledger.actor import LedgerClient, ledger_handle

RAW_RESERVE = (
    "UPDATE credit_accounts SET available = available - %(n)s, held = held + %(n)s "
    "WHERE user_id = %(u)s AND available >= %(n)s"
)
RAW_CAPTURE = (
    "UPDATE credit_accounts SET held = held - %(n)s WHERE user_id = %(u)s AND held >= %(n)s"
)
RAW_DEBIT = (
    "UPDATE credit_accounts SET available = available - %(n)s "
    "WHERE user_id = %(u)s AND available >= %(n)s"
)


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    admin = psycopg.connect(url, autocommit=True)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


def make_users(url: str, count: int, credits_each: int) -> list[uuid.UUID]:
    with session_scope(url) as session:
        users = [User(email=f"bench-{uuid.uuid4().hex}@example.com") for _ in range(count)]
        session.add_all(users)
    for user in users:
        store.credit(url, user.id, credits_each, LedgerKind.grant, "bench", "bench")
    return [user.id for user in users]


def seed_history(url: str, users: list[uuid.UUID], count: int, batch: int = 250) -> None:
    """`count` reservations made and captured, then ANALYZE: the planner sees the tables at a
    size that a ledger in use has, and plans index lookups for the actor's reads."""
    with get_engine(url).connect() as conn:
        for start in range(0, count, batch):
            size = min(batch, count - start)
            reserve = [
                rules.Reserve(users[i % len(users)], 1, f"history-{start + i}") for i in range(size)
            ]
            held = store.apply(conn, reserve)
            store.apply(conn, [rules.Capture(info.id, 1) for info in held])  # type: ignore[union-attr]
        for table in ("credit_accounts", "reservations", "ledger_entries"):
            conn.exec_driver_sql(f"ANALYZE {table}")
        conn.commit()


def run_clients(
    clients: int, seconds: float, make_op: Callable[[int], Callable[[], None]]
) -> tuple[float, list[float]]:
    """Runs `clients` threads for `seconds`; returns ops/s and every op's latency in seconds."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    done = threading.Event()

    def client(i: int) -> None:
        op = make_op(i)
        start.wait()
        while not done.is_set():
            t0 = time.perf_counter()
            op()
            latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    done.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    merged = [x for own in latencies for x in own]
    return len(merged) / elapsed, merged


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument("--history", type=int, default=20_000, help="settled reservations")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of actor and raw passes")
    args = parser.parse_args()

    with fresh_schema(args.database_url) as url:
        upgrade(url)
        users = make_users(url, args.users, 10**9)
        seed_history(url, users, args.history)
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parents[1])}},
        )
        try:
            handle = ledger_handle(url, name=f"bench-{uuid.uuid4().hex[:8]}", lanes=args.lanes)
            clients_process = ClientProcess.remote(url, users, handle)  # type: ignore[attr-defined]

            def measure(kind: str, clients: int) -> tuple[float, list[float]]:
                return ray.get(clients_process.run.remote(kind, clients, args.seconds))  # type: ignore[no-any-return]

            print(
                f"{args.users} users, {args.seconds:.0f} s per pass, {args.repeat} rounds, "
                f"lanes={args.lanes}, {args.history} reservations of history"
            )
            print(
                f"{'clients':>7} | {'actor ops/s':>11} {'p50 ms':>7} {'p99 ms':>7} | "
                f"{'raw ops/s':>9} {'p50 ms':>7} {'p99 ms':>7} | {'actor/raw':>15} | "
                f"{'debit':>7} {'direct':>7}"
            )
            for clients in args.clients:
                ray.get(clients_process.run.remote("actor", clients, 1.0))
                actor, raw = Passes(), Passes()
                for _ in range(args.repeat):
                    actor.add(*measure("actor", clients))
                    raw.add(*measure("raw", clients))
                ratios = sorted(a / r for a, r in zip(actor.rates, raw.rates, strict=True))
                ratio = f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"
                debit_rate, _ = measure("debit", clients)
                direct_rate, _ = measure("direct", clients)
                print(
                    f"{clients:>7} | {actor.summary(11)} | {raw.summary(9)} | {ratio:>15} | "
                    f"{debit_rate:>7.0f} {direct_rate:>7.0f}",
                    flush=True,
                )
        finally:
            ray.shutdown()


@dataclass
class Passes:
    """The rounds of one kind of pass: their rates and all their latencies."""

    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def add(self, rate: float, latencies: list[float]) -> None:
        self.rates.append(rate)
        self.latencies += latencies

    def summary(self, width: int) -> str:
        """The median rate, then p50 and p99 in ms."""
        p50, p99 = (percentile(self.latencies, q) * 1e3 for q in (50, 99))
        return f"{statistics.median(self.rates):>{width}.0f} {p50:>7.2f} {p99:>7.2f}"


@ray.remote(num_cpus=0)
class ClientProcess:
    """The client threads of every pass, in a Ray worker process: API replicas and render
    workers, the ledger's real clients, are Ray workers too (and Ray runs its workers at a
    lower CPU priority than a driver, so clients in the driver would starve the actor)."""

    def __init__(self, url: str, users: list[uuid.UUID], handle: ActorHandle) -> None:
        self.url, self.users = url, users
        self.ledger = LedgerClient(handle)

    def run(self, kind: str, clients: int, seconds: float) -> tuple[float, list[float]]:
        connections: list[psycopg.Connection[Any]] = []
        make_op = {
            "actor": self._actor_op,
            "direct": self._direct_op,
            "raw": self._raw(connections, RAW_RESERVE, RAW_CAPTURE),
            "debit": self._raw(connections, RAW_DEBIT),
        }[kind]
        try:
            return run_clients(clients, seconds, make_op)
        finally:
            for conn in connections:
                conn.close()

    def _actor_op(self, i: int) -> Callable[[], None]:
        user = self.users[i % len(self.users)]

        def op() -> None:
            info = self.ledger.reserve(user, 1, uuid.uuid4().hex)
            self.ledger.capture(info.id, 1)

        return op

    def _direct_op(self, i: int) -> Callable[[], None]:
        user = self.users[i % len(self.users)]

        def op() -> None:
            info = store.reserve(self.url, user, 1, uuid.uuid4().hex)
            store.capture(self.url, info.id, 1)

        return op

    def _raw(
        self, connections: list[psycopg.Connection[Any]], *statements: str
    ) -> Callable[[int], Callable[[], None]]:
        def make(i: int) -> Callable[[], None]:
            connections.append(conn := psycopg.connect(self.url, autocommit=True))
            params = {"u": self.users[i % len(self.users)], "n": 1}

            def op() -> None:
                for statement in statements:
                    conn.execute(statement, params)

            return op

        return make


if __name__ == "__main__":
    main()
