"""The ledger's database transactions, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.models import LedgerEntry, LedgerKind, Reservation, ReservationStatus
from db.session import get_engine, session_scope
from db.types import utcnow
from pipeline.errors import Conflict, InsufficientCredits, NotFound
from pipeline.ledger import rules, store
from pipeline.ledger.rules import SYSTEM_GRANTS, SYSTEM_REVENUE, Balance
from tests.ledger import assert_books_balance, make_user

Key = Callable[[str], str]


@pytest.fixture
def key() -> Key:
    """Reservation keys are unique across users, and PostgreSQL is shared by the session."""
    run = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{run}"


def rows_for(url: str, user_id: uuid.UUID) -> tuple[int, int]:
    """How many ledger entries and reservations the user has."""
    with session_scope(url) as session:
        entries = session.exec(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.user_id == user_id)
        ).one()
        reservations = session.exec(
            select(func.count()).select_from(Reservation).where(Reservation.user_id == user_id)
        ).one()
    return entries, reservations


def entries_of(url: str, txn_id: uuid.UUID) -> dict[str, int]:
    with session_scope(url) as session:
        rows = session.exec(select(LedgerEntry).where(LedgerEntry.txn_id == txn_id)).all()
    return {row.account: row.amount for row in rows}


def test_a_grant_is_one_balanced_transaction(database_url: str) -> None:
    user = make_user(database_url)
    receipt = store.credit(database_url, user, 100, "grant", "g", "test", "welcome")
    assert entries_of(database_url, receipt.txn_id) == {
        rules.available_account(user): 100,
        SYSTEM_GRANTS: -100,
    }
    assert store.balance(database_url, user) == Balance(available=100, held=0)
    assert_books_balance(database_url, [user])


def test_a_replayed_credit_credits_once(database_url: str) -> None:
    user = make_user(database_url)
    first = store.credit(database_url, user, 50, "topup", "pay-1", "test")
    again = store.credit(database_url, user, 50, "topup", "pay-1", "test")
    assert again == first
    assert store.balance(database_url, user).available == 50


def test_a_credit_key_reused_for_another_amount_conflicts(database_url: str) -> None:
    user = make_user(database_url)
    store.credit(database_url, user, 50, "grant", "k", "test")
    with pytest.raises(Conflict):
        store.credit(database_url, user, 60, "grant", "k", "test")
    assert store.balance(database_url, user).available == 50


def test_credit_keys_belong_to_one_user(database_url: str) -> None:
    alice, bob = make_user(database_url), make_user(database_url)
    store.credit(database_url, alice, 10, "grant", "grant:2026-11", "test")
    store.credit(database_url, bob, 10, "grant", "grant:2026-11", "test")
    assert store.balance(database_url, bob).available == 10


def test_a_negative_adjustment_cannot_overdraw(database_url: str) -> None:
    user = make_user(database_url, grant=30)
    with pytest.raises(InsufficientCredits):
        store.credit(database_url, user, -31, "adjustment", "fix", "admin")
    store.credit(database_url, user, -30, "adjustment", "fix", "admin")
    assert store.balance(database_url, user).available == 0
    assert_books_balance(database_url, [user])


def test_only_an_adjustment_may_be_negative(database_url: str) -> None:
    user = make_user(database_url, grant=30)
    with pytest.raises(ValueError):
        store.credit(database_url, user, -5, "grant", "g2", "test")


def test_crediting_an_unknown_user_is_not_found(database_url: str) -> None:
    with pytest.raises(NotFound):
        store.credit(database_url, uuid.uuid4(), 5, "grant", "g", "test")


def test_a_reservation_moves_credits_from_available_to_held(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    job = uuid.uuid4()
    info = store.reserve(database_url, user, 40, key("r"), job_id=job)
    assert (info.status, info.amount, info.job_id) == (ReservationStatus.held, 40, job)
    assert store.balance(database_url, user) == Balance(available=60, held=40)
    assert_books_balance(database_url, [user])


def test_an_insufficient_reservation_raises_and_writes_nothing(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    before = rows_for(database_url, user)
    with pytest.raises(InsufficientCredits) as raised:
        store.reserve(database_url, user, 101, key("too-much"))
    assert raised.value.extra == {"needed": 101, "available": 100}
    assert rows_for(database_url, user) == before
    assert store.balance(database_url, user) == Balance(available=100, held=0)


def test_a_user_without_an_account_cannot_reserve(database_url: str, key: Key) -> None:
    with pytest.raises(InsufficientCredits):
        store.reserve(database_url, make_user(database_url), 1, key("r"))


def test_a_replayed_reservation_returns_it_and_charges_once(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    first = store.reserve(database_url, user, 30, key("render-1"))
    assert store.reserve(database_url, user, 30, key("render-1")) == first
    assert store.balance(database_url, user) == Balance(available=70, held=30)


def test_a_replayed_reservation_keeps_its_first_job(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    first = store.reserve(database_url, user, 30, key("submit"), job_id=uuid.uuid4())
    again = store.reserve(database_url, user, 30, key("submit"), job_id=uuid.uuid4())
    assert again == first


def test_a_reservation_key_reused_for_another_amount_conflicts(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    store.reserve(database_url, user, 30, key("render-1"))
    with pytest.raises(Conflict):
        store.reserve(database_url, user, 31, key("render-1"))


def test_a_reservation_key_of_another_user_conflicts(database_url: str, key: Key) -> None:
    alice, bob = make_user(database_url, grant=100), make_user(database_url, grant=100)
    store.reserve(database_url, alice, 30, key("shared"))
    with pytest.raises(Conflict):
        store.reserve(database_url, bob, 30, key("shared"))
    assert store.balance(database_url, bob) == Balance(available=100, held=0)


def test_capture_takes_what_was_used_and_releases_the_rest(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    reserved = store.reserve(database_url, user, 40, key("r"))
    captured = store.capture(database_url, reserved.id, 25)
    assert (captured.status, captured.captured, captured.released) == ("captured", 25, 15)
    assert store.balance(database_url, user) == Balance(available=75, held=0)
    assert_books_balance(database_url, [user])


def test_capture_takes_at_most_what_was_reserved(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    reserved = store.reserve(database_url, user, 40, key("r"))
    assert store.capture(database_url, reserved.id, 1000).captured == 40
    assert store.balance(database_url, user) == Balance(available=60, held=0)


def test_a_second_capture_changes_nothing(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    reserved = store.reserve(database_url, user, 40, key("r"))
    first = store.capture(database_url, reserved.id, 10)
    before = rows_for(database_url, user)
    assert store.capture(database_url, reserved.id, 30) == first
    assert rows_for(database_url, user) == before
    assert store.balance(database_url, user) == Balance(available=90, held=0)


def test_release_gives_everything_back_once(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    reserved = store.reserve(database_url, user, 40, key("r"))
    released = store.release(database_url, reserved.id)
    assert (released.status, released.released) == ("released", 40)
    before = rows_for(database_url, user)
    assert store.release(database_url, reserved.id) == released
    assert rows_for(database_url, user) == before
    assert store.balance(database_url, user) == Balance(available=100, held=0)


def test_capturing_a_released_reservation_conflicts(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    reserved = store.reserve(database_url, user, 40, key("r"))
    store.release(database_url, reserved.id)
    with pytest.raises(Conflict):
        store.capture(database_url, reserved.id, 10)
    assert store.balance(database_url, user) == Balance(available=100, held=0)


def test_releasing_a_captured_reservation_changes_nothing(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    reserved = store.reserve(database_url, user, 40, key("r"))
    captured = store.capture(database_url, reserved.id, 40)
    assert store.release(database_url, reserved.id) == captured
    assert store.balance(database_url, user) == Balance(available=60, held=0)


def test_settling_an_unknown_reservation_is_not_found(database_url: str) -> None:
    with pytest.raises(NotFound):
        store.capture(database_url, uuid.uuid4(), 1)
    with pytest.raises(NotFound):
        store.release(database_url, uuid.uuid4())


def test_expiry_releases_only_reservations_past_their_time(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    stale = store.reserve(database_url, user, 10, key("stale"), ttl_s=60)
    fresh = store.reserve(database_url, user, 20, key("fresh"), ttl_s=3600)
    later = utcnow() + timedelta(seconds=120)
    assert store.expire_reservations(database_url, later) >= 1
    with session_scope(database_url) as session:
        assert session.get(Reservation, stale.id).status == ReservationStatus.released
        assert session.get(Reservation, fresh.id).status == ReservationStatus.held
    assert store.balance(database_url, user) == Balance(available=80, held=20)
    assert_books_balance(database_url, [user])


def test_revenue_is_what_was_captured(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=100)
    reserved = store.reserve(database_url, user, 40, key("r"))
    captured = store.capture(database_url, reserved.id, 15)
    with session_scope(database_url) as session:
        revenue = session.exec(
            select(LedgerEntry.amount).where(
                LedgerEntry.reservation_id == captured.id, LedgerEntry.account == SYSTEM_REVENUE
            )
        ).all()
    assert revenue == [15]


def test_a_batch_isolates_a_failing_operation(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=50)
    outcomes = store.apply(
        database_url,
        [
            rules.Reserve(user, 30, key("a")),
            rules.Reserve(user, 30, key("b")),
            rules.Reserve(user, 20, key("c")),
            rules.Reserve(user, 30, key("a")),
        ],
    )
    assert isinstance(outcomes[1], InsufficientCredits)
    a, c, replay = outcomes[0], outcomes[2], outcomes[3]
    assert isinstance(a, rules.ReservationInfo) and isinstance(c, rules.ReservationInfo)
    assert replay == a
    assert store.balance(database_url, user) == Balance(available=0, held=50)
    assert_books_balance(database_url, [user])


def test_a_batch_can_reserve_and_settle_together(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=50)
    (held,) = store.apply(database_url, [rules.Reserve(user, 30, key("a"))])
    assert isinstance(held, rules.ReservationInfo)
    outcomes = store.apply(
        database_url,
        [
            rules.Capture(held.id, 10),
            rules.Reserve(user, 40, key("b")),
            rules.Release(held.id),
        ],
    )
    assert [getattr(o, "status", None) for o in outcomes] == ["captured", "held", "captured"]
    assert store.balance(database_url, user) == Balance(available=0, held=40)
    assert_books_balance(database_url, [user])


def test_operations_in_a_session_roll_back_with_it(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=50)
    with Session(get_engine(database_url)) as session:
        store.reserve(session, user, 30, key("in-session"))
        assert store.balance(session, user) == Balance(available=20, held=30)
        session.rollback()
    assert store.balance(database_url, user) == Balance(available=50, held=0)


def test_the_database_refuses_a_negative_balance(database_url: str) -> None:
    user = make_user(database_url, grant=5)
    with pytest.raises(IntegrityError), session_scope(database_url) as session:
        session.connection().execute(
            text("UPDATE credit_accounts SET available = available - 6 WHERE user_id = :u"),
            {"u": user.hex if database_url.startswith("sqlite") else user},
        )


def test_the_database_refuses_an_operation_written_twice(database_url: str) -> None:
    user = make_user(database_url, grant=5)
    with session_scope(database_url) as session:
        entry = session.exec(
            select(LedgerEntry).where(LedgerEntry.account == rules.available_account(user))
        ).one()
        copy = LedgerEntry(
            txn_id=uuid.uuid4(),
            account=entry.account,
            user_id=user,
            kind=entry.kind,
            amount=entry.amount,
            idempotency_key=entry.idempotency_key,
            created_by="test",
        )
    with pytest.raises(IntegrityError), session_scope(database_url) as session:
        session.add(copy)


def test_concurrent_reservations_accept_exactly_what_fits(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=50)

    def attempt(i: int) -> bool:
        try:
            store.reserve(database_url, user, 10, key(f"render-{i}"))
            return True
        except InsufficientCredits:
            return False

    with ThreadPoolExecutor(8) as pool:
        accepted = list(pool.map(attempt, range(16)))
    assert sum(accepted) == 5
    assert store.balance(database_url, user) == Balance(available=0, held=50)
    assert_books_balance(database_url, [user])


def test_a_key_replayed_concurrently_reserves_once(database_url: str, key: Key) -> None:
    user = make_user(database_url, grant=50)
    with ThreadPoolExecutor(8) as pool:
        infos = list(
            pool.map(lambda _: store.reserve(database_url, user, 10, key("once")), range(8))
        )
    assert len({info.id for info in infos}) == 1
    assert store.balance(database_url, user) == Balance(available=40, held=10)
    with session_scope(database_url) as session:
        reserves = session.exec(
            select(func.count(func.distinct(LedgerEntry.txn_id))).where(
                LedgerEntry.user_id == user, col(LedgerEntry.kind) == LedgerKind.reserve
            )
        ).one()
    assert reserves == 1


@pytest.mark.postgres
def test_a_key_raced_in_by_another_users_transaction_is_a_conflict(
    postgres_url: str, key: Key
) -> None:
    """Two users' reservations lock different accounts, so neither sees the other's key until
    the unique index does: the one that commits second is refused, having written nothing."""
    first, second = make_user(postgres_url, grant=50), make_user(postgres_url, grant=50)
    with ThreadPoolExecutor(1) as pool:
        with session_scope(postgres_url) as session:
            store.reserve(session, first, 10, key("raced"))
            racing = pool.submit(store.reserve, postgres_url, second, 10, key("raced"))
            time.sleep(0.5)  # its insert now waits for this transaction's key
            assert not racing.done()
        with pytest.raises(Conflict):
            racing.result(timeout=30)
    assert store.balance(postgres_url, first) == Balance(available=40, held=10)
    assert store.balance(postgres_url, second) == Balance(available=50, held=0)
    assert_books_balance(postgres_url, [first, second])
