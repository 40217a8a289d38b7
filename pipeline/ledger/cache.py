"""A writer's cache of what its own batches committed, so that a batch on accounts and
reservations it knows can be decided without reading them from the database first."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from db.models import ReservationStatus
from db.types import utcnow
from pipeline.ledger.rules import Batch, Credit, Operation, Reserve


@dataclass
class LedgerCache:
    """What one writer last committed: the balances of the accounts its batches touched and the
    reservations they left held (the most recent `limit` of each). A batch whose operations
    find everything they need here is decided without the locking reads, and its write checks,
    in the same statement, that what it assumed still holds: the balances it started from, its
    reservations still held, the reservation keys it does not know still unused (a replayed
    key is decided from the database). The writer is not alone: the transaction that ends a
    job settles on its own session, the expiry sweep releases on its own connection, and every
    lane of the ledger actor (or of the actor that replaced it after a restart) has its own
    cache. If one of them moved a balance, settled a reservation or took a key meanwhile, the
    write changes nothing and the batch is decided again from the database. Credits always go
    to the database (their receipts are not kept)."""

    limit: int = 100_000
    accounts: dict[uuid.UUID, tuple[int, int]] = field(default_factory=dict)
    held: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, uuid.UUID] = field(default_factory=dict)

    def batch(self, operations: Sequence[Operation]) -> Batch | None:
        """The batch's state from the cache, or None if an operation needs what it lacks."""
        users: set[uuid.UUID] = set()
        rows: dict[uuid.UUID, dict[str, Any]] = {}
        unused: set[str] = set()
        for op in operations:
            if isinstance(op, Credit):
                return None
            if isinstance(op, Reserve):
                users.add(op.user_id)
                rid = self.keys.get(op.key)
                if rid is None:
                    unused.add(op.key)
            else:
                rid = op.reservation_id
                if rid not in self.held:
                    return None
            if rid is not None:
                rows[rid] = self.held[rid]
                users.add(rows[rid]["user_id"])
        if not users <= self.accounts.keys():
            return None
        reservations = {rid: dict(row) for rid, row in rows.items()}
        return Batch(
            now=utcnow(),
            accounts={user: list(self.accounts[user]) for user in users},
            reservations=reservations,
            by_key={row["idempotency_key"]: rid for rid, row in reservations.items()},
            receipts={},
            assumed_accounts={user: self.accounts[user] for user in users},
            assumed_held=list(rows),
            assumed_unused=sorted(unused),
        )

    def remember(self, batch: Batch) -> None:
        """Keeps what a committed batch left (the most recent last)."""
        for user, (available, held) in batch.accounts.items():
            self.accounts.pop(user, None)
            self.accounts[user] = (available, held)
        for rid, row in batch.reservations.items():
            self._drop(rid)
            if row["status"] == ReservationStatus.held:
                self.held[rid] = row
                self.keys[row["idempotency_key"]] = rid
        while len(self.accounts) > self.limit:
            del self.accounts[next(iter(self.accounts))]
        while len(self.held) > self.limit:
            self._drop(next(iter(self.held)))

    def forget(self, batch: Batch) -> None:
        """Drops what a batch found stale, so that it is read again."""
        for user in batch.accounts:
            self.accounts.pop(user, None)
        for rid in batch.reservations:
            self._drop(rid)

    def _drop(self, rid: uuid.UUID) -> None:
        row = self.held.pop(rid, None)
        if row is not None and self.keys.get(row["idempotency_key"]) == rid:
            del self.keys[row["idempotency_key"]]
