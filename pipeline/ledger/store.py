"""The ledger's store: applying batches of operations (pipeline/ledger/rules.py) to the
database, and `DatabaseLedger`, the `Ledger` bound to one database.

A batch writes the ledger entries its operations posted and updates the cached `CreditAccount`
balances in the same database transaction, so the cache can always be recomputed from the
entries. Safety comes from the database, not from the caller: on PostgreSQL every transaction
locks the accounts it touches (`SELECT ... FOR UPDATE`, in user-id order, so batches cannot
deadlock) and re-reads reservations and idempotency keys under that lock; on SQLite it opens
with `BEGIN IMMEDIATE` (one writer). The operation keys of the user-side entries sit under a
unique index on (idempotency_key, account), so even a bug cannot write an operation twice.

`apply` runs many operations in one transaction (one lock round and one commit for a batch):
the `CreditLedger` actor batches through it; the single-operation functions use it too. On
PostgreSQL a batch costs two round trips: its reads go to psycopg directly, in pipeline mode,
with the BEGIN; its writes are one statement, sent with the COMMIT. A writer with a
`LedgerCache` (the actor's lanes) saves the first: the batch is decided from what the writer's
last batches committed, and the account locks, the write (which checks that what the batch
assumed still holds) and the COMMIT travel together.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
import psycopg
from psycopg.rows import dict_row
from sqlalchemy import (
    JSON,
    Connection,
    Table,
    Text,
    any_,
    bindparam,
    column,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, SQLModel

from cluster.errors import StudioError
from db.models import (
    CreditAccount,
    LedgerEntry,
    LedgerKind,
    Reservation,
    ReservationStatus,
    User,
)
from db.session import get_engine
from db.types import utcnow
from pipeline.errors import Conflict
from pipeline.ledger.cache import LedgerCache
from pipeline.ledger.rules import (
    DEFAULT_TTL_S,
    Balance,
    Batch,
    Capture,
    Credit,
    CreditReceipt,
    Operation,
    Outcome,
    Release,
    ReservationInfo,
    Reserve,
    available_account,
    decide,
)

Database = str | Connection | Session
"""Where an operation runs. A URL: each call is its own transaction on a pooled connection. A
Connection outside any transaction: the same on that connection (the actor's lanes keep one
each, skipping the pool's checkout and ping). A Session: inside the caller's transaction, which
the caller commits."""

_accounts: Table = SQLModel.metadata.tables[CreditAccount.__tablename__]
_entries: Table = SQLModel.metadata.tables[LedgerEntry.__tablename__]
_reservations: Table = SQLModel.metadata.tables[Reservation.__tablename__]
_users: Table = SQLModel.metadata.tables[User.__tablename__]


def _many(name: str) -> Any:
    return bindparam(name, expanding=True)


_BALANCE = select(_accounts.c.available, _accounts.c.held).where(
    _accounts.c.user_id == bindparam("user_id")
)
_EXPIRED = (
    select(_reservations.c.id)
    .where(
        _reservations.c.status == ReservationStatus.held,
        _reservations.c.expires_at <= bindparam("now", type_=_reservations.c.expires_at.type),
    )
    .order_by(_reservations.c.expires_at)
    .limit(bindparam("page"))
)


def _lock_statements(among: Callable[[Any, str], Any]) -> tuple[Any, Any]:
    """The two reads that start a batch, with `among(column, name)` testing a column against
    the list parameter `name`. The first locks the batch's accounts, in user-id order so that
    concurrent batches cannot deadlock. The second reads (and locks) its reservations once the
    account locks are held: a statement's snapshot is taken when it starts, so reading them in
    the first could miss a settlement committed while it waited for a lock."""
    accounts = (
        select(_accounts.c.user_id, _accounts.c.available, _accounts.c.held)
        .where(
            or_(
                among(_accounts.c.user_id, "users"),
                _accounts.c.user_id.in_(
                    select(_reservations.c.user_id).where(among(_reservations.c.id, "rids"))
                ),
            )
        )
        .order_by(_accounts.c.user_id)
        .with_for_update(of=_accounts)
    )
    reservations = (
        select(_reservations)
        .where(
            or_(among(_reservations.c.id, "rids"), among(_reservations.c.idempotency_key, "keys"))
        )
        .with_for_update()
    )
    return accounts, reservations


_PG_DIALECT = postgresql_psycopg.dialect()


def _driver_sql(statement: Any) -> str:
    """A statement as psycopg's SQL, for the statements that go to the driver directly."""
    return str(statement.compile(dialect=_PG_DIALECT))


_LOCK_ACCOUNTS, _LOCK_RESERVATIONS = _lock_statements(lambda c, name: c.in_(_many(name)))
_PG_LOCK_ACCOUNTS, _PG_LOCK_RESERVATIONS = map(
    _driver_sql,
    _lock_statements(lambda c, name: c == any_(bindparam(name, type_=ARRAY(c.type)))),
)
"""On PostgreSQL the lists travel as arrays: the SQL is the same whatever the batch, so psycopg
prepares it once per connection."""
_CREDIT_RECEIPTS = select(
    _entries.c.txn_id,
    _entries.c.user_id,
    _entries.c.amount,
    _entries.c.kind,
    _entries.c.idempotency_key,
).where(_entries.c.idempotency_key.in_(_many("keys")), _entries.c.account.in_(_many("accounts")))


def credit(
    db: Database,
    user_id: uuid.UUID,
    amount: int,
    kind: LedgerKind | str,
    key: str,
    created_by: str,
    memo: str | None = None,
) -> CreditReceipt:
    """Adds credits (a negative `adjustment` takes them away, never below zero). The key is
    per user: a replay returns the first receipt; the same key with other terms is a Conflict."""
    return cast(
        CreditReceipt, _one(db, Credit(user_id, amount, LedgerKind(kind), key, created_by, memo))
    )


def reserve(
    db: Database,
    user_id: uuid.UUID,
    amount: int,
    key: str,
    job_id: uuid.UUID | None = None,
    ttl_s: float = DEFAULT_TTL_S,
    created_by: str = "ledger",
) -> ReservationInfo:
    """Holds `amount` of the user's available credits, or raises InsufficientCredits having
    written nothing. The same key returns the first reservation (with its job) and never
    charges twice; the same key for another user or amount is a Conflict."""
    return cast(ReservationInfo, _one(db, Reserve(user_id, amount, key, job_id, ttl_s, created_by)))


def capture(
    db: Database, reservation_id: uuid.UUID, amount_used: int, created_by: str = "ledger"
) -> ReservationInfo:
    """Takes min(amount_used, amount) as revenue and gives the rest back. A second capture
    changes nothing; capturing a released reservation is a Conflict."""
    return cast(ReservationInfo, _one(db, Capture(reservation_id, amount_used, created_by)))


def release(
    db: Database, reservation_id: uuid.UUID, created_by: str = "ledger", memo: str | None = None
) -> ReservationInfo:
    """Gives a held reservation back; on a settled one it changes nothing."""
    return cast(ReservationInfo, _one(db, Release(reservation_id, created_by, memo)))


def balance(db: Database, user_id: uuid.UUID) -> Balance:
    """The cached balance (zero for a user who never had credits)."""
    with _read(db) as conn:
        row = conn.execute(_BALANCE, {"user_id": user_id}).first()
    return Balance(available=row.available, held=row.held) if row else Balance(available=0, held=0)


def expire_reservations(db: Database, now: datetime | None = None, page: int = 500) -> int:
    """Releases every reservation still held past its `expires_at`; returns how many. With a
    URL each page of `page` reservations is its own transaction."""
    params = {"now": now or utcnow(), "page": page}
    released = 0
    while True:
        with _transaction(db) as conn:
            ids = list(conn.execute(_EXPIRED, params).scalars())
            expired = [Release(rid, created_by="expiry", memo="expired") for rid in ids]
            batch = _apply(conn, expired, commit=not isinstance(db, Session))
        released += len(batch.settled)
        if len(ids) < page or isinstance(db, Session):
            return released


@dataclass(frozen=True)
class DatabaseLedger:
    """The `Ledger` straight on a database, without the actor. Bound to a Session, every
    operation joins the caller's transaction: the transaction that ends a job settles its
    reservation through it, so the job's final state and its credits commit together. Bound to
    a URL (or a Connection), each operation is a transaction of its own."""

    db: Database

    def credit(
        self,
        user_id: uuid.UUID,
        amount: int,
        kind: LedgerKind | str,
        key: str,
        created_by: str,
        memo: str | None = None,
    ) -> CreditReceipt:
        return credit(self.db, user_id, amount, kind, key, created_by, memo)

    def reserve(
        self,
        user_id: uuid.UUID,
        amount: int,
        key: str,
        job_id: uuid.UUID | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> ReservationInfo:
        return reserve(self.db, user_id, amount, key, job_id, ttl_s)

    def capture(self, reservation_id: uuid.UUID, amount_used: int) -> ReservationInfo:
        return capture(self.db, reservation_id, amount_used)

    def release(self, reservation_id: uuid.UUID) -> ReservationInfo:
        return release(self.db, reservation_id)

    def balance(self, user_id: uuid.UUID) -> Balance:
        return balance(self.db, user_id)


def apply(
    db: Database, operations: Sequence[Operation], cache: LedgerCache | None = None
) -> list[Outcome | Exception]:
    """Runs the operations in order in one transaction and returns each one's outcome, or the
    domain error it raised (an error writes nothing and does not affect the others). If the
    transaction itself fails (a key raced in by another process, a deadlock), each operation
    is retried alone, so one bad operation cannot fail its neighbours; a lost connection is
    raised (everything is idempotent, so the caller may run the batch again). A writer that
    runs batch after batch on one PostgreSQL Connection (an actor's lane) passes its `cache`."""
    if not operations:
        return []
    credit_users = sorted({op.user_id for op in operations if isinstance(op, Credit)})
    if credit_users and not isinstance(db, Session):
        with _transaction(db) as conn:
            _ensure_accounts(conn, credit_users)
    try:
        with _transaction(db) as conn:
            if credit_users and isinstance(db, Session):
                _ensure_accounts(conn, credit_users)
            commit = not isinstance(db, Session)
            return _apply(conn, operations, commit=commit, cache=cache).outcomes
    except DBAPIError as e:
        if len(operations) == 1 or isinstance(db, Session) or e.connection_invalidated:
            raise
    outcomes: list[Outcome | Exception] = []
    for op in operations:
        try:
            outcomes.append(_one(db, op))
        except DBAPIError as e:
            if e.connection_invalidated:
                raise
            outcomes.append(e)
        except (StudioError, ValueError) as e:
            outcomes.append(e)
    return outcomes


def _one(db: Database, op: Operation) -> Outcome:
    try:
        (outcome,) = apply(db, [op])
    except IntegrityError as e:
        what = (
            f"idempotency key {op.key!r}"
            if isinstance(op, Credit | Reserve)
            else f"reservation {op.reservation_id}"
        )
        raise Conflict(f"{what}: a concurrent operation got there first") from e
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@contextmanager
def _transaction(db: Database) -> Iterator[Connection]:
    if isinstance(db, Session):
        yield db.connection()
    elif isinstance(db, Connection):
        with _begin(db):
            yield db
    else:
        with get_engine(db).connect() as conn, _begin(conn):
            yield conn


@contextmanager
def _read(db: Database) -> Iterator[Connection]:
    if isinstance(db, Session):
        yield db.connection()
    elif isinstance(db, Connection):
        try:
            yield db
        finally:
            db.rollback()
    else:
        with get_engine(db).connect() as conn:
            yield conn


@contextmanager
def _begin(conn: Connection) -> Iterator[None]:
    """A transaction on `conn`: on SQLite `BEGIN IMMEDIATE` (one writer at a time); elsewhere
    begun explicitly, as statements may go to the driver without SQLAlchemy seeing them, so that
    the rollback reaches the driver. The commit changes nothing if the write committed."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
    try:
        yield
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _insert(conn: Connection, table: Table) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _ensure_accounts(conn: Connection, user_ids: Sequence[uuid.UUID]) -> None:
    """Opens a zero account for each existing user that has none. With a URL this commits on its
    own before the operations run, so that their transaction locks only existing rows, in
    order."""
    rows = select(
        _users.c.id,
        literal(0),
        literal(0),
        literal(utcnow(), type_=_accounts.c.updated_at.type),
    ).where(_users.c.id.in_(user_ids))
    conn.execute(
        _insert(conn, _accounts)
        .from_select(["user_id", "available", "held", "updated_at"], rows)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )


def _apply(
    conn: Connection,
    operations: Sequence[Operation],
    *,
    commit: bool,
    cache: LedgerCache | None = None,
) -> Batch:
    """Runs the operations in the transaction open on `conn`. With `commit` (the transaction is
    not a caller's Session) PostgreSQL's COMMIT travels with the batch's write, and a `cache`
    may stand in for the locking reads. A write that finds its assumptions stale wrote nothing:
    the batch is decided again from what the database holds now."""
    if not commit or conn.dialect.name != "postgresql":
        cache = None
    while True:
        batch = cache.batch(operations) if cache is not None else None
        if batch is None:
            batch = _locked_batch(conn, operations)
        decide(batch, operations)
        written = _write(conn, batch, commit=commit)
        if cache is not None:
            (cache.remember if written else cache.forget)(batch)
        if written:
            return batch


def _locked_batch(conn: Connection, operations: Sequence[Operation]) -> Batch:
    """A batch decided from the database: its accounts and reservations locked and read, and
    the receipts of its credits' keys."""
    rids = list({op.reservation_id for op in operations if isinstance(op, Capture | Release)})
    user_ids = list({op.user_id for op in operations if isinstance(op, Credit | Reserve)})
    keys = list({op.key for op in operations if isinstance(op, Reserve)})
    credits_ = [op for op in operations if isinstance(op, Credit)]
    accounts, reservations = _lock(conn, user_ids, rids, keys)
    receipts: dict[tuple[uuid.UUID, str], CreditReceipt] = {}
    if credits_:
        found = conn.execute(
            _CREDIT_RECEIPTS,
            {
                "keys": list({f"credit:{op.key}" for op in credits_}),
                "accounts": list({available_account(op.user_id) for op in credits_}),
            },
        )
        for row in found:
            key = row.idempotency_key.removeprefix("credit:")
            receipts[(row.user_id, key)] = CreditReceipt(
                txn_id=row.txn_id,
                user_id=row.user_id,
                amount=row.amount,
                kind=LedgerKind(row.kind),
                idempotency_key=key,
            )
    return Batch(
        now=utcnow(),
        accounts=accounts,
        reservations=reservations,
        by_key={r["idempotency_key"]: rid for rid, r in reservations.items()},
        receipts=receipts,
    )


def _lock(
    conn: Connection, user_ids: list[uuid.UUID], rids: list[uuid.UUID], keys: list[str]
) -> tuple[dict[uuid.UUID, list[int]], dict[uuid.UUID, dict[str, Any]]]:
    """Locks and reads the batch's accounts ([available, held] by user) and reservations (rows
    by id). On PostgreSQL both reads go to the driver in one round trip (pipeline mode), with
    the BEGIN that psycopg would otherwise send alone before them."""
    params = {"users": user_ids, "rids": rids, "keys": keys}
    if conn.dialect.name != "postgresql":
        locked = conn.execute(_LOCK_ACCOUNTS, params).all()
        found = conn.execute(_LOCK_RESERVATIONS, params).mappings().all() if rids or keys else []
        return {r.user_id: [r.available, r.held] for r in locked}, {r["id"]: dict(r) for r in found}
    with _driver(conn) as pg, pg.pipeline():
        accounts = pg.execute(_PG_LOCK_ACCOUNTS, params)
        reservations: Iterable[dict[str, Any]] = (
            pg.cursor(row_factory=dict_row).execute(_PG_LOCK_RESERVATIONS, params)
            if rids or keys
            else []
        )
        return (
            {user_id: [available, held] for user_id, available, held in accounts},
            {row["id"]: _as_sqlalchemy_reads(row) for row in reservations},
        )


_RESERVATION_RESULTS = {
    c.name: process
    for c in _reservations.columns
    if (process := c.type.result_processor(_PG_DIALECT, None)) is not None
}
"""SQLAlchemy's processing of the reservation columns that it changes on the way out (the
times, which `UTCDateTime` gives in UTC where psycopg gives the session's time zone)."""


def _as_sqlalchemy_reads(row: dict[str, Any]) -> dict[str, Any]:
    """A reservation read by the driver, with the values SQLAlchemy would have given."""
    for name, process in _RESERVATION_RESULTS.items():
        row[name] = process(row[name])
    return row


@contextmanager
def _driver(conn: Connection) -> Iterator[psycopg.Connection[Any]]:
    """The psycopg connection under `conn`, in the transaction that `conn` began, its errors
    raised as SQLAlchemy raises them (an IntegrityError for a key that raced in, a DBAPIError
    with `connection_invalidated` for a lost connection, which is invalidated)."""
    proxied = conn.connection
    try:
        yield cast(psycopg.Connection[Any], proxied.driver_connection)
    except psycopg.Error as e:
        lost = conn.dialect.is_disconnect(cast(Any, e), proxied, None)
        if lost:
            conn.invalidate()
        raise DBAPIError.instance(
            None, None, e, psycopg.Error, connection_invalidated=lost, dialect=conn.dialect
        ) from e


def _write(conn: Connection, batch: Batch, *, commit: bool) -> bool:
    """Writes the batch; False if it wrote nothing because what it assumed no longer holds. A
    batch decided from a cache locks its accounts in the same round trip as its write."""
    new = [batch.reservations[rid] for rid in batch.new_reservations]
    settled = [
        {name: batch.reservations[rid][name] for name in _SETTLED_COLUMNS}
        for rid in sorted(batch.settled)
    ]
    accounts = _account_rows(
        (user_id, batch.accounts[user_id]) for user_id in sorted(batch.touched)
    )
    if not (new or settled or batch.entries or accounts or batch.assumed_accounts):
        return True
    if conn.dialect.name == "postgresql":
        tables = {
            "r": new,
            "s": settled,
            "e": batch.entries,
            "a": accounts,
            "x": _account_rows(batch.assumed_accounts.items()),
            "h": [{"id": rid} for rid in batch.assumed_held],
            "k": [{"idempotency_key": key} for key in batch.assumed_unused],
        }
        params = {name: orjson.dumps(rows).decode() for name, rows in tables.items()}
        with _driver(conn) as pg, pg.pipeline():
            if batch.assumed_accounts:
                lock = {"users": sorted(batch.assumed_accounts), "rids": [], "keys": []}
                pg.execute(_PG_LOCK_ACCOUNTS, lock)
            written = pg.execute(_PG_WRITE_ALL, {"now": batch.now, **params})
            if commit:
                pg.commit()
        return cast(bool, written.fetchone()[0])  # type: ignore[index]
    if new:
        conn.execute(_reservations.insert(), new)
    if settled:
        conn.execute(_SETTLE, [{**row, "now": batch.now} for row in _prefixed(settled)])
    if batch.entries:
        conn.execute(_entries.insert(), batch.entries)
    if accounts:
        conn.execute(_SET_BALANCES, [{**row, "now": batch.now} for row in _prefixed(accounts)])
    return True


def _account_rows(balances: Iterable[tuple[uuid.UUID, Sequence[int]]]) -> list[dict[str, Any]]:
    return [
        {"user_id": user_id, "available": available, "held": held}
        for user_id, (available, held) in balances
    ]


def _prefixed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{f"b_{name}": value for name, value in row.items()} for row in rows]


_RESERVATION_COLUMNS = [c.name for c in _reservations.columns]
_SETTLED_COLUMNS = ["id", "status", "captured"]
_ENTRY_COLUMNS = [c.name for c in _entries.columns]
_ACCOUNT_COLUMNS = ["user_id", "available", "held"]
_NOW = bindparam("now", type_=_accounts.c.updated_at.type)
_SETTLE = (
    _reservations.update()
    .where(_reservations.c.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), captured=bindparam("b_captured"), settled_at=_NOW)
)
_SET_BALANCES = (
    _accounts.update()
    .where(_accounts.c.user_id == bindparam("b_user_id"))
    .values(available=bindparam("b_available"), held=bindparam("b_held"), updated_at=_NOW)
)


def _write_all_statement() -> Any:
    """PostgreSQL: every write of a batch in one statement, data-modifying CTEs over the rows of
    each table sent as one JSON array (`json_to_recordset`), so a batch's writes cost one round
    trip, the statement is the same whatever the batch (compiled once, prepared by psycopg),
    and the parameters are strings that orjson makes in C, UUIDs and datetimes included (a
    parameter per column, as arrays, cost psycopg a Python call per value); an empty array
    writes nothing. The writes happen only if a cached batch's assumptions hold (`x`: the
    balances it started from, `h`: the reservations it took to be held, `k`: the reservation
    keys it took to be unused), which the statement returns; the lookups are scalar
    subqueries, one index probe per row whatever the planner guesses of a JSON array's size.
    The statement's snapshot is taken once the batch holds its accounts' locks (in the
    statement before), so no other writer can change what the check read before the writes
    land: reservations, too, change only under their owner's account lock."""

    def rows(name: str, table: Table, columns: list[str]) -> Any:
        typed = [column(c, table.c[c].type) for c in columns]
        records = func.json_to_recordset(bindparam(name, type_=Text).cast(JSON))
        return records.table_valued(*typed).render_derived(name, with_types=True)

    new = rows("r", _reservations, _RESERVATION_COLUMNS)
    settled = rows("s", _reservations, _SETTLED_COLUMNS)
    entries = rows("e", _entries, _ENTRY_COLUMNS)
    accounts = rows("a", _accounts, _ACCOUNT_COLUMNS)
    assumed = rows("x", _accounts, _ACCOUNT_COLUMNS)
    held = rows("h", _reservations, ["id"])
    unused = rows("k", _reservations, ["idempotency_key"])

    def found(column: Any, where: Any) -> Any:
        return select(column).where(where).scalar_subquery()

    moved = found(
        _accounts.c.user_id,
        (_accounts.c.user_id == assumed.c.user_id)
        & (_accounts.c.available == assumed.c.available)
        & (_accounts.c.held == assumed.c.held),
    ).is_(None)
    settled_meanwhile = found(
        _reservations.c.status, _reservations.c.id == held.c.id
    ).is_distinct_from(literal_column(f"'{ReservationStatus.held.value}'"))
    key_taken = found(
        _reservations.c.id, _reservations.c.idempotency_key == unused.c.idempotency_key
    ).is_not(None)
    check = select(
        ~(
            exists().select_from(assumed).where(moved)
            | exists().select_from(held).where(settled_meanwhile)
            | exists().select_from(unused).where(key_taken)
        ).label("current")
    ).cte("check")
    current = select(check.c.current).scalar_subquery()
    writes = [
        insert(_reservations).from_select(_RESERVATION_COLUMNS, select(*new.c).where(current)),
        update(_reservations)
        .where(_reservations.c.id == settled.c.id, current)
        .values(status=settled.c.status, captured=settled.c.captured, settled_at=_NOW),
        insert(_entries).from_select(_ENTRY_COLUMNS, select(*entries.c).where(current)),
        update(_accounts)
        .where(_accounts.c.user_id == accounts.c.user_id, current)
        .values(available=accounts.c.available, held=accounts.c.held, updated_at=_NOW),
    ]
    return select(check.c.current).add_cte(*[w.cte(f"write_{i}") for i, w in enumerate(writes)])


_PG_WRITE_ALL = _driver_sql(_write_all_statement())
