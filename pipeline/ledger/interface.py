"""`Ledger`: the one door through which credits move.

Two implementations fit it. `LedgerClient` (pipeline/ledger/actor.py) goes through the
`CreditLedger` actor, which batches the calls of the whole cluster; everything that is not the
end of a job uses it: reservations at submit, grants, top-ups, the admin's adjustments.
`DatabaseLedger` (pipeline/ledger/store.py) bound to a Session runs the same operations inside
the caller's transaction: the transaction that ends a job captures or releases its reservation
through it, so the job's final state and its credits commit together. Either way the rules of
pipeline/ledger/rules.py decide and the database's locks keep the books safe.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from db.models import LedgerKind
from pipeline.ledger.rules import DEFAULT_TTL_S, Balance, CreditReceipt, ReservationInfo


class Ledger(Protocol):
    """The operations callers need. Each is idempotent: credits and reservations by their key
    (per user), captures and releases by reservation id. Domain errors (InsufficientCredits,
    Conflict, NotFound) come back as themselves."""

    def credit(
        self,
        user_id: uuid.UUID,
        amount: int,
        kind: LedgerKind | str,
        key: str,
        created_by: str,
        memo: str | None = None,
    ) -> CreditReceipt:
        """Adds credits (a negative `adjustment` takes them away, never below zero); a replay
        of the key returns the first receipt."""
        ...

    def reserve(
        self,
        user_id: uuid.UUID,
        amount: int,
        key: str,
        job_id: uuid.UUID | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> ReservationInfo:
        """Holds `amount` of the user's available credits until captured, released or expired
        after `ttl_s`; a replay of the key returns the first reservation."""
        ...

    def capture(self, reservation_id: uuid.UUID, amount_used: int) -> ReservationInfo:
        """Takes min(amount_used, amount) as revenue and gives the rest back."""
        ...

    def release(self, reservation_id: uuid.UUID) -> ReservationInfo:
        """Gives a held reservation back; on a settled one it changes nothing."""
        ...

    def balance(self, user_id: uuid.UUID) -> Balance:
        """The user's available and held credits."""
        ...
