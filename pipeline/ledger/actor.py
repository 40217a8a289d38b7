"""The `CreditLedger` actor and `LedgerClient`, its client: the `Ledger` of a cluster, for
every caller but the transaction that ends a job (which settles through a `DatabaseLedger` on
its own session).

Every call becomes an operation of pipeline/ledger/rules.py and the database decides. What the
actor adds is throughput: calls wait in a lane, and the lane's own thread runs everything
waiting in it as one database transaction on the lane's connection while the next calls
gather, hands the outcomes to the event loop and goes straight on with what gathered. The lane
keeps a `LedgerCache` of what its batches committed, so a batch of operations on accounts and
reservations it knows costs one round trip (its write checks that what it assumed still holds;
a batch that finds it stale is decided again from the database). A user's operations always
go to the same lane and run in arrival order; different users share batches. One lane is the
default; more lanes suit a database with cores to spare. Captures and releases are routed by
reservation id, as their owner is not known before the database is read: the account locks
order them. Those locks and checks, not the actor, are what make overspending impossible, so
the actor's lanes, its expiry sweep and the transactions that end jobs can all write at once.
On the calling side, `LedgerClient` (one per process: `ledger_client`) sends the concurrent
calls of a process's threads to the actor together, one Ray call per batch.

It is detached, restarts forever and retries calls that were in flight when it died: that is
safe because every operation is idempotent (credits and reservations by key, captures and
releases by reservation id), so a retried call that had already committed returns what the
first one did. A periodic sweep releases reservations held past their expiry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from queue import SimpleQueue
from typing import Any, TypeVar, cast

import ray
from ray.actor import ActorHandle
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from cluster import metrics
from db.models import LedgerKind
from db.session import database_tag, get_engine
from pipeline.errors import Conflict
from pipeline.ledger import store
from pipeline.ledger.cache import LedgerCache
from pipeline.ledger.rules import (
    DEFAULT_TTL_S,
    Balance,
    Capture,
    Credit,
    CreditReceipt,
    Operation,
    Outcome,
    Release,
    ReservationInfo,
    Reserve,
)

LEDGER_NAME = "credit_ledger"
LEDGER_NAMESPACE = "studio"

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Lane:
    """Operations waiting for the lane's thread, which runs them in batches on its own database
    connection."""

    waiting: SimpleQueue[tuple[Operation, asyncio.Future[Any]]] = field(default_factory=SimpleQueue)
    connection: Connection | None = None
    cache: LedgerCache = field(default_factory=LedgerCache)


@ray.remote(  # type: ignore[call-overload]
    num_cpus=0.1, max_restarts=-1, max_task_retries=-1, max_concurrency=1000
)
class CreditLedger:
    """Async actor over pipeline/ledger/store.py; the methods mirror its functions."""

    def __init__(
        self,
        database_url: str,
        *,
        lanes: int = 1,
        max_batch: int = 256,
        sweep_interval_s: float = 30.0,
    ) -> None:
        self._url = database_url
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(thread_name_prefix="ledger")  # reads, the sweep
        self._lanes = [_Lane() for _ in range(lanes)]
        loop = asyncio.get_running_loop()
        for i, lane in enumerate(self._lanes):
            name = f"ledger-lane-{i}"
            threading.Thread(target=self._drain, args=(lane, loop), name=name, daemon=True).start()
        self._sweeper = asyncio.create_task(self._sweep(sweep_interval_s))

    async def ping(self) -> str:
        """The tag of the database this ledger serves (a client checks it found the right
        ledger without the URL, and its password, crossing the wire)."""
        return database_tag(self._url)

    async def credit(
        self,
        user_id: uuid.UUID,
        amount: int,
        kind: LedgerKind | str,
        key: str,
        created_by: str,
        memo: str | None = None,
    ) -> CreditReceipt:
        op = Credit(user_id, amount, LedgerKind(kind), key, created_by, memo)
        return cast(CreditReceipt, await self._submit(op))

    async def reserve(
        self,
        user_id: uuid.UUID,
        amount: int,
        key: str,
        job_id: uuid.UUID | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> ReservationInfo:
        op = Reserve(user_id, amount, key, job_id, ttl_s)
        return cast(ReservationInfo, await self._submit(op))

    async def capture(self, reservation_id: uuid.UUID, amount_used: int) -> ReservationInfo:
        op = Capture(reservation_id, amount_used)
        return cast(ReservationInfo, await self._submit(op))

    async def release(self, reservation_id: uuid.UUID) -> ReservationInfo:
        op = Release(reservation_id)
        return cast(ReservationInfo, await self._submit(op))

    async def balance(self, user_id: uuid.UUID) -> Balance:
        return await self._in_thread(store.balance, self._url, user_id)

    async def expire_reservations(self, now: datetime | None = None) -> int:
        return await self._in_thread(store.expire_reservations, self._url, now)

    async def apply(self, operations: list[Operation]) -> list[Outcome | Exception]:
        """Many operations in one call (what `LedgerClient` sends): each joins its lane as if
        called alone, and the outcomes come back in order, a domain error in place of its own."""
        return list(await asyncio.gather(*map(self._enqueue, operations)))

    async def _submit(self, op: Operation) -> Outcome:
        outcome = await self._enqueue(op)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _enqueue(self, op: Operation) -> asyncio.Future[Outcome | Exception]:
        route = op.user_id if isinstance(op, Credit | Reserve) else op.reservation_id
        future = asyncio.get_running_loop().create_future()
        self._lanes[route.int % len(self._lanes)].waiting.put((op, future))
        return future

    def _drain(self, lane: _Lane, loop: asyncio.AbstractEventLoop) -> None:
        """The lane's thread: runs everything waiting (up to `max_batch`) as one batch, hands
        the outcomes to the event loop and goes on with what gathered meanwhile."""
        while True:
            batch = [lane.waiting.get()]
            while len(batch) < self._max_batch and not lane.waiting.empty():
                batch.append(lane.waiting.get())
            try:
                outcomes = self._apply(lane, [op for op, _ in batch])
            except Exception as e:
                log.exception("ledger batch failed")
                metrics.ledger_error()
                outcomes = [e] * len(batch)
            loop.call_soon_threadsafe(_settle, batch, outcomes)

    def _apply(self, lane: _Lane, ops: list[Operation]) -> list[Outcome | Exception]:
        """Runs a batch on the lane's connection, opening a new one if it was lost and running
        the batch again (safe even if the loss hid a commit: every operation is idempotent)."""
        retried = False
        while True:
            if lane.connection is None:
                lane.connection = get_engine(self._url).connect()
            try:
                return store.apply(lane.connection, ops, lane.cache)
            except DBAPIError as e:
                lane.connection.close()
                lane.connection = None
                if retried or not e.connection_invalidated:
                    raise
                retried = True

    async def _sweep(self, interval_s: float) -> None:
        while True:
            try:
                released = await self.expire_reservations()
                if released:
                    log.info("released %d expired reservations", released)
            except Exception:
                log.exception("reservation sweep failed")
            await asyncio.sleep(interval_s)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _settle(
    batch: list[tuple[Operation, asyncio.Future[Any]]],
    outcomes: list[Outcome | Exception],
) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if not future.done():
            future.set_result(outcome)


def ledger_handle(database_url: str, *, name: str | None = None, **options: Any) -> ActorHandle:
    """The ledger actor of this database, created on first use: one per database in a cluster,
    named `credit_ledger-<database tag>` unless `name` is given. `options` go to the actor's
    constructor (lanes, max_batch, sweep_interval_s) and only count when it is created. Raises
    Conflict if the actor found serves another database."""
    name = name or f"{LEDGER_NAME}-{database_tag(database_url)}"
    handle = CreditLedger.options(  # type: ignore[attr-defined]
        name=name, namespace=LEDGER_NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(database_url, **options)
    if ray.get(handle.ping.remote()) != database_tag(database_url):
        raise Conflict(f"the ledger actor {name!r} serves another database")
    return handle


def ledger_client(database_url: str) -> LedgerClient:
    """This process's client of the database's ledger actor, made on first use: one per process
    (and Ray connection), so that the calls of all its threads travel together."""
    key = (database_url, ray.get_runtime_context().get_worker_id())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = LedgerClient(ledger_handle(database_url))
        return client


_clients: dict[tuple[str, str], LedgerClient] = {}
_clients_lock = threading.Lock()


class LedgerClient:
    """The `Ledger` through the ledger actor, blocking, for code that is not async (Ray tasks,
    the API's routes, the CLI); share one per process. Concurrent calls travel together: a call
    that finds fewer than `max_in_flight` batches on their way (one by default) sends
    everything waiting (its own operation included) as one `apply` call, and the others wait
    for a later batch, so a busy process pays one Ray round trip per batch instead of one per
    operation (the actor then runs what reaches it as one database transaction). A batch first
    waits up to `gather_s` for as many operations as the last batch to come back brought
    answers: the threads it answered usually call again at once, and without the wait the
    batch would leave with the first of them to wake up. A domain error comes back as itself.
    One batch on its way is the default: the actor then runs one transaction for all the
    callers instead of two for half of them each, and there are fewer Ray calls."""

    def __init__(
        self, handle: ActorHandle, max_in_flight: int = 1, gather_s: float = 0.002
    ) -> None:
        self._handle = handle
        self._max_in_flight = max_in_flight
        self._gather_s = gather_s
        lock = threading.Lock()
        self._turn = threading.Condition(lock)
        self._arrival = threading.Condition(lock)
        self._waiting: list[tuple[Operation, Future[Any]]] = []
        self._in_flight = 0
        self._answered = 0

    def credit(
        self,
        user_id: uuid.UUID,
        amount: int,
        kind: LedgerKind | str,
        key: str,
        created_by: str,
        memo: str | None = None,
    ) -> CreditReceipt:
        op = Credit(user_id, amount, LedgerKind(kind), key, created_by, memo)
        return cast(CreditReceipt, self._call(op))

    def reserve(
        self,
        user_id: uuid.UUID,
        amount: int,
        key: str,
        job_id: uuid.UUID | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> ReservationInfo:
        op = Reserve(user_id, amount, key, job_id, ttl_s)
        return cast(ReservationInfo, self._call(op))

    def capture(self, reservation_id: uuid.UUID, amount_used: int) -> ReservationInfo:
        return cast(ReservationInfo, self._call(Capture(reservation_id, amount_used)))

    def release(self, reservation_id: uuid.UUID) -> ReservationInfo:
        return cast(ReservationInfo, self._call(Release(reservation_id)))

    def balance(self, user_id: uuid.UUID) -> Balance:
        return cast(Balance, ray.get(self._handle.balance.remote(user_id)))

    def expire_reservations(self, now: datetime | None = None) -> int:
        return cast(int, ray.get(self._handle.expire_reservations.remote(now)))

    def _call(self, op: Operation) -> Outcome:
        mine: Future[Any] = Future()
        with self._turn:
            self._waiting.append((op, mine))
            self._arrival.notify()
            while not mine.done() and self._in_flight >= self._max_in_flight:
                self._turn.wait()
            batch = [] if mine.done() else self._gather()
        if batch:
            self._send(batch)
        outcome = mine.result()
        if isinstance(outcome, Exception):
            raise outcome
        return cast(Outcome, outcome)

    def _gather(self) -> list[tuple[Operation, Future[Any]]]:
        """Takes a free place on the way and what is waiting for it (call with the lock held);
        nothing if a batch that left meanwhile took it all."""
        self._in_flight += 1
        self._arrival.wait_for(lambda: len(self._waiting) >= self._answered, self._gather_s)
        batch, self._waiting = self._waiting, []
        if not batch:
            self._in_flight -= 1
            self._turn.notify_all()
        return batch

    def _send(self, batch: list[tuple[Operation, Future[Any]]]) -> None:
        outcomes: list[Any] = [RuntimeError("the ledger call was interrupted")] * len(batch)
        try:
            outcomes = ray.get(self._handle.apply.remote([op for op, _ in batch]))
        except Exception as e:
            outcomes = [e] * len(batch)
        finally:
            with self._turn:
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    future.set_result(outcome)
                self._answered = len(batch)
                self._in_flight -= 1
                self._turn.notify_all()
