"""The ledger's rules, as plain data and pure functions: which accounts exist, which operations
move credits between them, what each one returns and what it may not do.

Double entry: every operation posts one transaction (`txn_id`) of entries that sum to zero
across the accounts `user:<id>:available`, `user:<id>:held` and the system accounts
(`system:grants`, `system:topups`, `system:revenue`), and moves the user's cached balance by
the same amounts. Every operation is idempotent: credits and reservations by their key (per
user), captures and releases by reservation id. The user-side entries of each transaction
carry an operation key (`credit:<key>`, `reserve:<id>`, `capture:<id>`, `release:<id>`), which
the database keeps unique per account, so even a bug cannot write the same operation twice.

`decide` runs operations against a `Batch`: the accounts and reservations one transaction read,
and the rows its operations will write. Reading and writing them is pipeline/ledger/store.py's
part; nothing here touches the database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cluster.errors import StudioError
from db.models import LedgerKind, ReservationStatus
from pipeline.errors import Conflict, InsufficientCredits, NotFound

SYSTEM_GRANTS = "system:grants"
SYSTEM_TOPUPS = "system:topups"
SYSTEM_REVENUE = "system:revenue"
DEFAULT_TTL_S = 6 * 3600
MAX_KEY_LENGTH = 190

CREDIT_SOURCES: dict[LedgerKind, str] = {
    LedgerKind.grant: SYSTEM_GRANTS,
    LedgerKind.topup: SYSTEM_TOPUPS,
    LedgerKind.adjustment: SYSTEM_GRANTS,
    LedgerKind.refund: SYSTEM_REVENUE,
}
"""Where each kind of credit comes from; a refund gives back revenue."""


def available_account(user_id: uuid.UUID) -> str:
    return f"user:{user_id}:available"


def held_account(user_id: uuid.UUID) -> str:
    return f"user:{user_id}:held"


@dataclass(frozen=True)
class Balance:
    available: int
    held: int


@dataclass(frozen=True)
class ReservationInfo:
    """A reservation as the operation left it. The outcomes are plain dataclasses, not pydantic
    models: the ledger actor builds and pickles two per reserve+capture, and validating them
    would only check again what the rules decided."""

    id: uuid.UUID
    user_id: uuid.UUID
    job_id: uuid.UUID | None
    amount: int
    captured: int
    status: ReservationStatus
    idempotency_key: str
    expires_at: datetime
    settled_at: datetime | None

    @property
    def released(self) -> int:
        """Credits given back to the user: all of them on release, the unused rest on capture."""
        return 0 if self.status == ReservationStatus.held else self.amount - self.captured


@dataclass(frozen=True)
class CreditReceipt:
    txn_id: uuid.UUID
    user_id: uuid.UUID
    amount: int
    kind: LedgerKind
    idempotency_key: str


@dataclass(frozen=True)
class Credit:
    user_id: uuid.UUID
    amount: int
    kind: LedgerKind
    key: str
    created_by: str
    memo: str | None = None


@dataclass(frozen=True)
class Reserve:
    user_id: uuid.UUID
    amount: int
    key: str
    job_id: uuid.UUID | None = None
    ttl_s: float = DEFAULT_TTL_S
    created_by: str = "ledger"


@dataclass(frozen=True)
class Capture:
    reservation_id: uuid.UUID
    amount_used: int
    created_by: str = "ledger"


@dataclass(frozen=True)
class Release:
    reservation_id: uuid.UUID
    created_by: str = "ledger"
    memo: str | None = None


Operation = Credit | Reserve | Capture | Release
Outcome = CreditReceipt | ReservationInfo
"""What an operation returns; `decide` records the operation's error in its place instead."""


@dataclass
class Batch:
    """The state of one transaction: locked (or cached) accounts, reservations and the writes
    to make. A batch decided from a cache lists what it assumed: the balances it started from,
    the reservations it took to be held and the reservation keys it took to be unused."""

    now: datetime
    accounts: dict[uuid.UUID, list[int]]
    reservations: dict[uuid.UUID, dict[str, Any]]
    by_key: dict[str, uuid.UUID]
    receipts: dict[tuple[uuid.UUID, str], CreditReceipt]
    assumed_accounts: dict[uuid.UUID, tuple[int, int]] = field(default_factory=dict)
    assumed_held: list[uuid.UUID] = field(default_factory=list)
    assumed_unused: list[str] = field(default_factory=list)
    outcomes: list[Outcome | Exception] = field(default_factory=list)
    new_reservations: list[uuid.UUID] = field(default_factory=list)
    settled: set[uuid.UUID] = field(default_factory=set)
    entries: list[dict[str, Any]] = field(default_factory=list)
    touched: set[uuid.UUID] = field(default_factory=set)
    _random: bytes = b""
    _taken: int = 0

    def new_id(self) -> uuid.UUID:
        """A random (version 4) UUID. Their randomness is drawn 64 at a time: `uuid.uuid4()`
        makes a system call for each, letting go of the GIL, and in the ledger actor the lane's
        thread then waits for the event loop to give it back, dozens of times a batch."""
        if self._taken == len(self._random):
            self._random, self._taken = os.urandom(16 * 64), 0
        self._taken += 16
        return uuid.UUID(bytes=self._random[self._taken - 16 : self._taken], version=4)

    def post(
        self,
        kind: LedgerKind,
        created_by: str,
        legs: Sequence[tuple[str, int]],
        *,
        user_id: uuid.UUID,
        key: str,
        reservation_id: uuid.UUID | None = None,
        job_id: uuid.UUID | None = None,
        memo: str | None = None,
        kinds: dict[str, LedgerKind] | None = None,
    ) -> uuid.UUID:
        """One balanced transaction: `legs` are (account, amount) summing to zero; user
        accounts carry the operation key, system accounts none (they are shared)."""
        if sum(amount for _, amount in legs) != 0:
            raise RuntimeError(f"unbalanced ledger transaction: {legs}")
        txn_id = self.new_id()
        for account, amount in legs:
            if amount == 0:
                continue
            self.entries.append(
                {
                    "id": self.new_id(),
                    "txn_id": txn_id,
                    "account": account,
                    "user_id": user_id,
                    "kind": (kinds or {}).get(account, kind),
                    "amount": amount,
                    "job_id": job_id,
                    "reservation_id": reservation_id,
                    "idempotency_key": key if account.startswith("user:") else None,
                    "created_by": created_by,
                    "memo": memo,
                    "created_at": self.now,
                }
            )
        return txn_id

    def move(self, user_id: uuid.UUID, available: int, held: int) -> None:
        account = self.accounts[user_id]
        account[0] += available
        account[1] += held
        if account[0] < 0 or account[1] < 0:
            raise RuntimeError(f"negative balance for user {user_id}: {account}")
        self.touched.add(user_id)


def decide(batch: Batch, operations: Sequence[Operation]) -> None:
    """Decides each operation in order against the batch, adding its outcome to
    `batch.outcomes`, or the domain error it raised (an error writes nothing and does not
    affect the others)."""
    for op in operations:
        try:
            batch.outcomes.append(_decide(batch, op))
        except (StudioError, ValueError) as e:
            batch.outcomes.append(e)


def _decide(batch: Batch, op: Operation) -> Outcome:
    if isinstance(op, Credit):
        return _credit(batch, op)
    if isinstance(op, Reserve):
        return _reserve(batch, op)
    if isinstance(op, Capture):
        return _capture(batch, op)
    return _release(batch, op)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"an idempotency key has 1 to {MAX_KEY_LENGTH} characters")


def _credit(batch: Batch, op: Credit) -> CreditReceipt:
    _check_key(op.key)
    if op.kind not in CREDIT_SOURCES:
        raise ValueError(f"credit kind is one of {sorted(CREDIT_SOURCES)}, not {op.kind}")
    if op.amount == 0 or (op.amount < 0 and op.kind != LedgerKind.adjustment):
        raise ValueError("a credit is positive; only an adjustment may be negative")
    existing = batch.receipts.get((op.user_id, op.key))
    if existing is not None:
        if (existing.amount, existing.kind) != (op.amount, op.kind):
            raise Conflict(f"idempotency key {op.key!r} was used for another credit")
        return existing
    account = batch.accounts.get(op.user_id)
    if account is None:
        raise NotFound(f"user {op.user_id} not found")
    if account[0] + op.amount < 0:
        raise InsufficientCredits(
            "not enough credits to adjust", needed=-op.amount, available=account[0]
        )
    txn_id = batch.post(
        op.kind,
        op.created_by,
        [(available_account(op.user_id), op.amount), (CREDIT_SOURCES[op.kind], -op.amount)],
        user_id=op.user_id,
        key=f"credit:{op.key}",
        memo=op.memo,
    )
    batch.move(op.user_id, op.amount, 0)
    receipt = CreditReceipt(
        txn_id=txn_id, user_id=op.user_id, amount=op.amount, kind=op.kind, idempotency_key=op.key
    )
    batch.receipts[(op.user_id, op.key)] = receipt
    return receipt


def _info(row: dict[str, Any]) -> ReservationInfo:
    return ReservationInfo(
        id=row["id"],
        user_id=row["user_id"],
        job_id=row["job_id"],
        amount=row["amount"],
        captured=row["captured"],
        status=ReservationStatus(row["status"]),
        idempotency_key=row["idempotency_key"],
        expires_at=row["expires_at"],
        settled_at=row["settled_at"],
    )


def _reserve(batch: Batch, op: Reserve) -> ReservationInfo:
    _check_key(op.key)
    if op.amount <= 0:
        raise ValueError("a reservation holds a positive amount")
    existing = batch.by_key.get(op.key)
    if existing is not None:
        row = batch.reservations[existing]
        if (row["user_id"], row["amount"]) != (op.user_id, op.amount):
            raise Conflict(f"idempotency key {op.key!r} was used for another reservation")
        return _info(row)
    account = batch.accounts.get(op.user_id)
    available = account[0] if account else 0
    if account is None or available < op.amount:
        raise InsufficientCredits(
            f"{op.amount} credits needed, {available} available",
            needed=op.amount,
            available=available,
        )
    rid = batch.new_id()
    row = {
        "id": rid,
        "user_id": op.user_id,
        "job_id": op.job_id,
        "amount": op.amount,
        "captured": 0,
        "status": ReservationStatus.held,
        "idempotency_key": op.key,
        "expires_at": batch.now + timedelta(seconds=op.ttl_s),
        "created_at": batch.now,
        "settled_at": None,
    }
    batch.post(
        LedgerKind.reserve,
        op.created_by,
        [(available_account(op.user_id), -op.amount), (held_account(op.user_id), op.amount)],
        user_id=op.user_id,
        key=f"reserve:{rid}",
        reservation_id=rid,
        job_id=op.job_id,
    )
    batch.move(op.user_id, -op.amount, op.amount)
    batch.reservations[rid] = row
    batch.by_key[op.key] = rid
    batch.new_reservations.append(rid)
    return _info(row)


def _held(batch: Batch, reservation_id: uuid.UUID) -> dict[str, Any]:
    row = batch.reservations.get(reservation_id)
    if row is None:
        raise NotFound(f"reservation {reservation_id} not found")
    return row


def _settle(batch: Batch, row: dict[str, Any], status: ReservationStatus, used: int) -> None:
    row.update(status=status, captured=used, settled_at=batch.now)
    if row["id"] not in batch.new_reservations:
        batch.settled.add(row["id"])


def _capture(batch: Batch, op: Capture) -> ReservationInfo:
    if op.amount_used < 0:
        raise ValueError("amount_used is not negative")
    row = _held(batch, op.reservation_id)
    if row["status"] == ReservationStatus.captured:
        return _info(row)
    if row["status"] == ReservationStatus.released:
        raise Conflict(f"reservation {row['id']} was released before it was captured")
    user_id, amount = row["user_id"], row["amount"]
    used = min(op.amount_used, amount)
    batch.post(
        LedgerKind.capture,
        op.created_by,
        [
            (held_account(user_id), -amount),
            (SYSTEM_REVENUE, used),
            (available_account(user_id), amount - used),
        ],
        user_id=user_id,
        key=f"capture:{row['id']}",
        reservation_id=row["id"],
        job_id=row["job_id"],
        kinds={available_account(user_id): LedgerKind.release},
    )
    batch.move(user_id, amount - used, -amount)
    _settle(batch, row, ReservationStatus.captured, used)
    return _info(row)


def _release(batch: Batch, op: Release) -> ReservationInfo:
    row = _held(batch, op.reservation_id)
    if row["status"] != ReservationStatus.held:
        return _info(row)
    user_id, amount = row["user_id"], row["amount"]
    batch.post(
        LedgerKind.release,
        op.created_by,
        [(held_account(user_id), -amount), (available_account(user_id), amount)],
        user_id=user_id,
        key=f"release:{row['id']}",
        reservation_id=row["id"],
        job_id=row["job_id"],
        memo=op.memo,
    )
    batch.move(user_id, amount, -amount)
    _settle(batch, row, ReservationStatus.released, 0)
    return _info(row)
