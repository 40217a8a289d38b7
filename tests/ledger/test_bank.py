"""A Jepsen-style bank test of the CreditLedger actor on PostgreSQL: clients in threads (sharing
one LedgerClient, so that their calls reach the actor in batches), in separate processes and
one bypassing the actor (a `DatabaseLedger` straight on the database, as the transactions that
end jobs write, behind the back of the lanes' caches) hammer a few hot accounts with
reservations, captures and releases (some sharing idempotency keys, some abandoned to expire)
while the actor is killed and restarts. Afterwards the books must balance, no balance may ever
have been negative, nothing may be captured twice and every reservation must be settled."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
import ray
from ray.actor import ActorHandle
from sqlmodel import col, select

from db.models import LedgerEntry, LedgerKind, Reservation, ReservationStatus
from db.session import database_tag, session_scope
from db.types import utcnow
from pipeline.errors import Conflict, InsufficientCredits
from pipeline.ledger.actor import LEDGER_NAMESPACE, LedgerClient, ledger_handle
from pipeline.ledger.interface import Ledger
from pipeline.ledger.rules import SYSTEM_REVENUE, Balance, available_account, held_account
from pipeline.ledger.store import DatabaseLedger
from tests.ledger import assert_books_balance, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.ray, pytest.mark.timeout(240)]

HOT_USERS = 3
GRANT = 500
THREADS = 6
PROCESSES = 2
OPS_PER_CLIENT = 30
ABANDONED_TTL_S = 1.0
Record = tuple[Any, ...]


@pytest.fixture(scope="module")
def ledger_name(postgres_url: str, ray_session: None) -> Iterator[str]:
    """A ledger actor of this module's own, with two lanes (so the database locks, not the
    actor, must keep the peace), sweeping often, killed for good afterwards."""
    name = f"ledger-{uuid.uuid4().hex[:8]}"
    handle = ledger_handle(postgres_url, name=name, lanes=2, sweep_interval_s=0.5)
    yield name
    ray.kill(handle)


@pytest.fixture
def ledger(ledger_name: str) -> ActorHandle:
    return ray.get_actor(ledger_name, namespace=LEDGER_NAMESPACE)


def run_client(
    ledger: Ledger,
    client: str,
    users: list[uuid.UUID],
    run: str,
    seed: int,
    progress: Callable[[], None] = lambda: None,
) -> list[Record]:
    """One client's random walk. Every fifth reservation uses a key that all clients use at the
    same step (a replayed request, settled by several clients at once); of the others, one in
    five is abandoned and left to expire."""
    rng = random.Random(seed)
    records: list[Record] = []
    for step in range(OPS_PER_CLIENT):
        shared = step % 5 == 0
        if shared:
            user, amount, key = users[step % len(users)], 7, f"{run}-shared-{step}"
        else:
            user, amount, key = rng.choice(users), rng.randint(1, 60), f"{run}-{client}-{step}"
        action = rng.choices(["capture", "release", "abandon"], [5, 3, 0 if shared else 2])[0]
        ttl = ABANDONED_TTL_S if action == "abandon" else 120.0
        try:
            info = ledger.reserve(user, amount, key, None, ttl)
            records.append(("reserve", key, user, amount, info.id))
            if action == "capture":
                asked = rng.randint(0, amount + 10)
                info = ledger.capture(info.id, asked)
                records.append(("settled", info.id, info.status, info.captured))
            elif action == "release":
                info = ledger.release(info.id)
                records.append(("settled", info.id, info.status, info.captured))
        except (InsufficientCredits, Conflict) as error:
            records.append(("refused", key, type(error).__name__))
        except Exception as error:
            records.append(("error", key, repr(error)))
        progress()
    return records


def process_client(
    address: str,
    name: str,
    client: str,
    users: list[uuid.UUID],
    run: str,
    seed: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """A client in a process of its own, started with spawn."""
    ray.init(address=address, namespace=LEDGER_NAMESPACE, log_to_driver=False)
    ready.put(client)
    go.wait(120)
    ledger = LedgerClient(ray.get_actor(name, namespace=LEDGER_NAMESPACE))
    results.put(run_client(ledger, client, users, run, seed))
    ray.shutdown()


def test_the_books_hold_under_concurrent_clients_and_an_actor_kill(
    postgres_url: str, ledger_name: str, ledger: ActorHandle
) -> None:
    users = [make_user(postgres_url, grant=GRANT) for _ in range(HOT_USERS)]
    name = ledger_name
    run = uuid.uuid4().hex[:8]

    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    address = ray.get_runtime_context().gcs_address
    processes = [
        context.Process(
            target=process_client,
            args=(address, name, f"p{i}", users, run, 1000 + i, ready, go, results),
        )
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)

    done = 0
    lock = threading.Lock()

    def tick() -> None:
        nonlocal done
        with lock:
            done += 1

    go.set()
    shared = LedgerClient(ledger)
    clients = {f"t{i}": shared for i in range(THREADS)} | {"direct": DatabaseLedger(postgres_url)}
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = [
            pool.submit(run_client, client, name, users, run, seed, tick)
            for seed, (name, client) in enumerate(clients.items())
        ]
        deadline = time.monotonic() + 120
        while done < len(clients) * OPS_PER_CLIENT // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        ray.kill(ledger, no_restart=False)
        killed_at = done
        records = [r for f in futures for r in f.result()]
    for _ in processes:
        records += results.get(timeout=180)
    for process in processes:
        process.join(timeout=60)

    assert 0 < killed_at < len(clients) * OPS_PER_CLIENT
    assert [r for r in records if r[0] == "error"] == []
    time.sleep(ABANDONED_TTL_S)
    LedgerClient(ledger).expire_reservations(utcnow())
    check_books(postgres_url, users, run, records)


def check_books(url: str, users: list[uuid.UUID], run: str, records: list[Record]) -> None:
    assert_books_balance(url, users)
    with session_scope(url) as session:
        reservations = {
            r.id: r
            for r in session.exec(
                select(Reservation).where(col(Reservation.idempotency_key).startswith(run))
            ).all()
        }
        entries = session.exec(
            select(LedgerEntry)
            .where(col(LedgerEntry.user_id).in_(users))
            .order_by(col(LedgerEntry.created_at))
        ).all()

    granted = -sum(e.amount for e in entries if e.kind == LedgerKind.grant and e.amount < 0)
    revenue = sum(e.amount for e in entries if e.account == SYSTEM_REVENUE)
    owned = {available_account(u) for u in users} | {held_account(u) for u in users}
    assert sum(e.amount for e in entries if e.account in owned) + revenue == granted
    assert revenue == sum(r.captured for r in reservations.values())

    assert_never_negative(entries, owned)

    txns: dict[tuple[uuid.UUID, LedgerKind], set[uuid.UUID]] = defaultdict(set)
    for e in entries:
        if e.reservation_id is not None and e.account.startswith("user:"):
            txns[(e.reservation_id, LedgerKind(e.kind))].add(e.txn_id)
    for rid, reservation in reservations.items():
        reserved = len(txns[(rid, LedgerKind.reserve)])
        captured = len(txns[(rid, LedgerKind.capture)])
        released = len(txns[(rid, LedgerKind.release)] - txns[(rid, LedgerKind.capture)])
        assert (reserved, captured + released) == (1, 1), reservation
        assert reservation.status != ReservationStatus.held
        assert 0 <= reservation.captured <= reservation.amount
        assert (reservation.status == ReservationStatus.captured) == (captured == 1)

    by_key: dict[str, set[uuid.UUID]] = defaultdict(set)
    for record in records:
        if record[0] == "reserve":
            by_key[record[1]].add(record[4])
            assert record[4] in reservations
        elif record[0] == "settled":
            final = reservations[record[1]]
            assert (final.status, final.captured) == (record[2], record[3])
    assert all(len(ids) == 1 for ids in by_key.values())
    shared = [key for key in by_key if "-shared-" in key]
    assert shared, "no replayed key was accepted"


def assert_never_negative(entries: list[LedgerEntry], owned: set[str]) -> None:
    """Replays the user accounts' entries in commit order. Operations batched into one
    transaction share a timestamp, so balances are checked between timestamps."""
    balances: dict[str, int] = defaultdict(int)
    for i, entry in enumerate(entries):
        if entry.account in owned:
            balances[entry.account] += entry.amount
        last_of_batch = i + 1 == len(entries) or entries[i + 1].created_at != entry.created_at
        if last_of_batch:
            assert min(balances.values(), default=0) >= 0, entry


def test_concurrent_renders_get_exactly_the_reservations_that_fit(
    postgres_url: str, ledger: ActorHandle
) -> None:
    user = make_user(postgres_url, grant=70)
    run = uuid.uuid4().hex[:8]
    refs = [ledger.reserve.remote(user, 10, f"{run}-render-{i}") for i in range(20)]
    accepted = refused = 0
    for ref in refs:
        try:
            ray.get(ref)
            accepted += 1
        except InsufficientCredits:
            refused += 1
    assert (accepted, refused) == (7, 13)
    assert LedgerClient(ledger).balance(user).available == 0
    assert_books_balance(postgres_url, [user])


def test_a_request_replayed_concurrently_is_charged_once(
    postgres_url: str, ledger: ActorHandle
) -> None:
    user = make_user(postgres_url, grant=70)
    key = f"{uuid.uuid4().hex}-render"
    infos = ray.get([ledger.reserve.remote(user, 10, key) for _ in range(12)])
    assert len({info.id for info in infos}) == 1
    captures = ray.get([ledger.capture.remote(infos[0].id, 4) for _ in range(6)])
    assert {(c.status, c.captured) for c in captures} == {("captured", 4)}
    assert LedgerClient(ledger).balance(user).available == 66
    assert_books_balance(postgres_url, [user])


class CountingHandle:
    """The ledger's handle, counting the `apply` calls made through it."""

    def __init__(self, handle: ActorHandle) -> None:
        self.handle, self.applies = handle, 0

    @property
    def apply(self) -> Any:
        self.applies += 1
        return self.handle.apply


def test_a_shared_client_sends_concurrent_calls_together(
    postgres_url: str, ledger: ActorHandle
) -> None:
    user = make_user(postgres_url, grant=100)
    counting = CountingHandle(ledger)
    client = LedgerClient(counting)  # type: ignore[arg-type]
    run, callers = uuid.uuid4().hex[:8], 16
    start = threading.Barrier(callers)

    def reserve(i: int) -> str:
        start.wait()
        try:
            return client.reserve(user, 1000 if i == 0 else 5, f"{run}-{i}").status
        except InsufficientCredits:
            return "refused"

    with ThreadPoolExecutor(callers) as pool:
        outcomes = list(pool.map(reserve, range(callers)))
    assert outcomes == ["refused"] + ["held"] * (callers - 1)
    assert counting.applies < callers
    balance = LedgerClient(ledger).balance(user)
    assert (balance.available, balance.held) == (25, 75)
    assert_books_balance(postgres_url, [user])


class OneBatchAtATime:
    """Stands in for the ledger actor: answers one batch at a time, each after `seconds` (as a
    busy lane does), and records each batch's size."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sizes: list[int] = []
        self._lane = threading.Lock()

    @property
    def apply(self) -> OneBatchAtATime:
        return self

    def remote(self, ops: list[Any]) -> ray.ObjectRef:
        with self._lane:
            time.sleep(self.seconds)
            self.sizes.append(len(ops))
        return ray.put([None] * len(ops))


def test_callers_answered_together_call_again_together(ray_session: None) -> None:
    """Threads that call again as soon as they are answered (as bench/ledger.py's clients do)
    keep travelling in the same batch: one batch a round, instead of splitting into more and
    smaller ones (with `gather_s=0`, no wait for the answered callers, this run took 20
    batches, 11 with it)."""
    ledger = OneBatchAtATime(0.02)
    client = LedgerClient(ledger, gather_s=0.05)  # type: ignore[arg-type]
    callers, rounds = 12, 10
    start = threading.Barrier(callers)

    def caller() -> None:
        start.wait()
        for _ in range(rounds):
            client.release(uuid.uuid4())

    with ThreadPoolExecutor(callers) as pool:
        for done in [pool.submit(caller) for _ in range(callers)]:
            done.result()
    assert sum(ledger.sizes) == callers * rounds
    assert len(ledger.sizes) <= rounds + 4, ledger.sizes


def backends(url: str) -> set[int]:
    """The server processes of the connections to this database."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return {pid for (pid,) in rows}


def terminate(url: str, pids: set[int]) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return sum(
            conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0] for pid in pids
        )


def test_the_ledger_reconnects_when_the_database_drops_its_connection(postgres_url: str) -> None:
    """A lane keeps its connection between batches: once the server has dropped it, the next
    batch fails on it, and the lane runs that batch again on a new connection."""
    user = make_user(postgres_url, grant=100)
    before = backends(postgres_url)
    handle = ledger_handle(postgres_url, name=f"ledger-{uuid.uuid4().hex[:8]}")
    try:
        client = LedgerClient(handle)
        client.reserve(user, 10, f"{user}-before")
        assert terminate(postgres_url, backends(postgres_url) - before) >= 1
        info = client.reserve(user, 20, f"{user}-after")
        assert (info.status, info.amount) == (ReservationStatus.held, 20)
        assert client.balance(user) == Balance(available=70, held=30)
        assert_books_balance(postgres_url, [user])
    finally:
        ray.kill(handle)


def test_the_ledger_refuses_a_client_of_another_database(ledger_name: str, sqlite_url: str) -> None:
    with pytest.raises(Conflict):
        ledger_handle(sqlite_url, name=ledger_name)


def test_each_database_has_a_ledger_of_its_own(
    postgres_url: str, ledger: ActorHandle, sqlite_url: str
) -> None:
    on_sqlite = ledger_handle(sqlite_url)
    try:
        assert ray.get([on_sqlite.ping.remote(), ledger.ping.remote()]) == [
            database_tag(sqlite_url),
            database_tag(postgres_url),
        ]
        user = make_user(sqlite_url)
        client = LedgerClient(on_sqlite)
        client.credit(user, 50, "grant", "welcome", "test")
        client.capture(client.reserve(user, 20, f"{user}-render").id, 5)
        assert client.balance(user).available == 45
        assert_books_balance(sqlite_url, [user])
    finally:
        ray.kill(on_sqlite)
