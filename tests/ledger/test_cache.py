"""A writer's LedgerCache on PostgreSQL: batches decided from it never act on what another writer
changed meanwhile (a balance, a settlement, a key), and write nothing when they would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlmodel import col, func, select

from db.models import LedgerEntry, LedgerKind
from db.session import get_engine, session_scope
from pipeline.errors import Conflict, InsufficientCredits
from pipeline.ledger import rules, store
from pipeline.ledger.cache import LedgerCache
from pipeline.ledger.rules import Balance, ReservationInfo
from tests.ledger import assert_books_balance, make_user

pytestmark = pytest.mark.postgres


@pytest.fixture
def lane(postgres_url: str) -> Iterator[Connection]:
    """The connection of a writer that keeps a cache, as an actor's lane does."""
    with get_engine(postgres_url).connect() as conn:
        yield conn


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many operations each locking read served (a batch decided from the cache makes none),
    from when the test clears it."""
    served: list[int] = []
    locked_batch = store._locked_batch

    def counted(conn: Connection, operations: Any) -> Any:
        served.append(len(operations))
        return locked_batch(conn, operations)

    monkeypatch.setattr(store, "_locked_batch", counted)
    return served


def key() -> str:
    return uuid.uuid4().hex


def reserve(lane: Connection, cache: LedgerCache, user: uuid.UUID, amount: int) -> ReservationInfo:
    (info,) = store.apply(lane, [rules.Reserve(user, amount, key())], cache)
    assert isinstance(info, ReservationInfo)
    return info


def test_a_batch_found_in_the_cache_skips_the_locking_reads(
    postgres_url: str, lane: Connection, reads: list[int]
) -> None:
    user, cache = make_user(postgres_url, grant=100), LedgerCache()
    reads.clear()
    first = reserve(lane, cache, user, 30)
    outcomes = store.apply(
        lane, [rules.Capture(first.id, 10), rules.Reserve(user, 50, key())], cache
    )
    assert reads == [1]
    assert [getattr(o, "status", None) for o in outcomes] == ["captured", "held"]
    assert cache.accounts[user] == (40, 50)
    assert store.balance(postgres_url, user) == Balance(available=40, held=50)
    assert_books_balance(postgres_url, [user])


def test_a_balance_moved_by_another_writer_is_read_again(
    postgres_url: str, lane: Connection, reads: list[int]
) -> None:
    user, cache = make_user(postgres_url, grant=100), LedgerCache()
    reads.clear()
    reserve(lane, cache, user, 10)
    store.reserve(postgres_url, user, 85, key())  # the cache still says 90 available
    (refused,) = store.apply(lane, [rules.Reserve(user, 10, key())], cache)
    assert isinstance(refused, InsufficientCredits)
    assert refused.extra["available"] == 5
    assert reads == [1, 1, 1]  # the lane's first batch, the other writer's, the stale batch again
    assert cache.accounts[user] == (5, 95)
    assert store.balance(postgres_url, user) == Balance(available=5, held=95)
    assert_books_balance(postgres_url, [user])


def test_a_reservation_settled_by_another_writer_is_not_settled_again(
    postgres_url: str, lane: Connection
) -> None:
    """The other writer releases the reservation and holds as much again under another key, so
    the balance the cache assumed is what the database holds: only the settlement differs."""
    user, cache = make_user(postgres_url, grant=100), LedgerCache()
    held = reserve(lane, cache, user, 30)
    store.release(postgres_url, held.id)
    store.reserve(postgres_url, user, 30, key())
    assert store.balance(postgres_url, user) == Balance(*cache.accounts[user])
    (refused,) = store.apply(lane, [rules.Capture(held.id, 30)], cache)
    assert isinstance(refused, Conflict)
    assert store.balance(postgres_url, user) == Balance(available=70, held=30)
    with session_scope(postgres_url) as session:
        captures = session.exec(
            select(func.count()).where(
                LedgerEntry.reservation_id == held.id, col(LedgerEntry.kind) == LedgerKind.capture
            )
        ).one()
    assert captures == 0
    assert_books_balance(postgres_url, [user])


def test_a_key_taken_by_another_writer_is_not_reserved_twice(
    postgres_url: str, lane: Connection
) -> None:
    """Another user's reservation took the key, so this user's balance is as the cache says:
    only the key differs."""
    user, other, cache = make_user(postgres_url, 100), make_user(postgres_url, 100), LedgerCache()
    reserve(lane, cache, user, 10)
    taken = key()
    store.reserve(postgres_url, other, 10, taken)
    (refused,) = store.apply(lane, [rules.Reserve(user, 10, taken)], cache)
    assert isinstance(refused, Conflict)
    assert store.balance(postgres_url, user) == Balance(available=90, held=10)
    assert_books_balance(postgres_url, [user, other])


def test_a_replayed_key_the_cache_does_not_know_returns_its_reservation(
    postgres_url: str, lane: Connection
) -> None:
    """The reservation was settled, so the cache let go of it; the balance left cannot pay
    for it again, and the replay must still find it rather than be refused."""
    user, cache, replayed = make_user(postgres_url, grant=100), LedgerCache(), key()
    (held,) = store.apply(lane, [rules.Reserve(user, 100, replayed)], cache)
    assert isinstance(held, ReservationInfo)
    store.apply(lane, [rules.Capture(held.id, 100)], cache)
    assert replayed not in cache.keys and cache.accounts[user] == (0, 0)
    (replay,) = store.apply(lane, [rules.Reserve(user, 100, replayed)], cache)
    assert isinstance(replay, ReservationInfo)
    assert (replay.id, replay.status) == (held.id, "captured")
    assert store.balance(postgres_url, user) == Balance(available=0, held=0)


def test_a_cached_batch_waits_for_a_writer_holding_its_account(
    postgres_url: str, lane: Connection
) -> None:
    """The batch locks its accounts before its write reads what it checks: a writer that holds
    the account when the batch starts commits first, and the batch sees what it wrote."""
    user, cache = make_user(postgres_url, grant=100), LedgerCache()
    reserve(lane, cache, user, 10)
    with ThreadPoolExecutor(1) as pool:
        with session_scope(postgres_url) as session:
            store.reserve(session, user, 85, key())
            batch = pool.submit(store.apply, lane, [rules.Reserve(user, 10, key())], cache)
            time.sleep(0.5)
            assert not batch.done()
        (refused,) = batch.result(timeout=30)
    assert isinstance(refused, InsufficientCredits)
    assert store.balance(postgres_url, user) == Balance(available=5, held=95)
    assert_books_balance(postgres_url, [user])


def test_the_cache_keeps_the_most_recent_and_reads_the_rest(
    postgres_url: str, lane: Connection, reads: list[int]
) -> None:
    user, cache = make_user(postgres_url, grant=100), LedgerCache(limit=2)
    oldest, *recent = [reserve(lane, cache, user, 10) for _ in range(3)]
    assert list(cache.held) == [info.id for info in recent]
    reads.clear()
    (captured,) = store.apply(lane, [rules.Capture(oldest.id, 10)], cache)
    assert getattr(captured, "status", None) == "captured"
    assert reads == [1]
    assert store.balance(postgres_url, user) == Balance(available=70, held=20)
