"""Buying credits: a payment provider behind one small protocol, and the top-up that charges
the user and then credits them, both idempotent by the same key.

A top-up that crashes between the charge and the credit is finished by replaying it: the
provider returns the first charge (it is never made twice) and the credit is written once.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from enum import StrEnum
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from cluster.errors import StudioError
from db.models import LedgerKind
from pipeline.errors import Conflict
from pipeline.ledger.pricing import topup_price_cents
from pipeline.ledger.store import CreditReceipt, credit


class PaymentDeclined(StudioError):
    slug, status, title = "payment-declined", 402, "Payment declined"


class PaymentStatus(StrEnum):
    succeeded = "succeeded"
    declined = "declined"


class PaymentResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    status: PaymentStatus
    amount_cents: int


class PaymentProvider(Protocol):
    def charge(self, user_id: uuid.UUID, amount_cents: int, idempotency_key: str) -> PaymentResult:
        """Charges the user's saved payment method once per key: a replay returns the first
        result, whatever its status."""
        ...


class TestPaymentProvider:
    """A deterministic provider in memory: charge ids derive from the key, and a charge of
    DECLINED_AMOUNT_CENTS (or of any amount in `declined_amounts`) is declined."""

    __test__ = False
    DECLINED_AMOUNT_CENTS: ClassVar[int] = 402

    def __init__(self, declined_amounts: frozenset[int] = frozenset({DECLINED_AMOUNT_CENTS})):
        self.declined_amounts = declined_amounts
        self.charges: dict[str, PaymentResult] = {}
        self._lock = threading.Lock()

    def charge(self, user_id: uuid.UUID, amount_cents: int, idempotency_key: str) -> PaymentResult:
        with self._lock:
            existing = self.charges.get(idempotency_key)
            if existing is not None:
                if existing.amount_cents != amount_cents:
                    raise Conflict(f"payment key {idempotency_key!r} was used for another amount")
                return existing
            declined = amount_cents in self.declined_amounts
            result = PaymentResult(
                id="ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24],
                status=PaymentStatus.declined if declined else PaymentStatus.succeeded,
                amount_cents=amount_cents,
            )
            self.charges[idempotency_key] = result
            return result


def topup(
    database_url: str, provider: PaymentProvider, user_id: uuid.UUID, credits: int, key: str
) -> CreditReceipt:
    """Charges the price of `credits`, then credits them; raises PaymentDeclined (crediting
    nothing) if the charge fails. Replaying the same key credits once."""
    payment = provider.charge(user_id, topup_price_cents(credits), f"topup:{user_id}:{key}")
    if payment.status != PaymentStatus.succeeded:
        raise PaymentDeclined(f"payment {payment.id} was declined", payment_id=payment.id)
    return credit(
        database_url,
        user_id,
        credits,
        LedgerKind.topup,
        f"topup:{key}",
        created_by="payments",
        memo=f"payment {payment.id}",
    )
