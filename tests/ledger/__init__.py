"""Helpers for the ledger tests: users with credits, and the books' invariants."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlmodel import Session, col, select

from db.models import CreditAccount, LedgerEntry, LedgerKind, User
from db.session import session_scope
from pipeline.ledger import store
from pipeline.ledger.rules import Balance, available_account, held_account


def make_user(url: str, grant: int = 0) -> uuid.UUID:
    """A new user, granted `grant` credits if any."""
    with session_scope(url) as session:
        user = User(email=f"{uuid.uuid4().hex}@example.com")
        session.add(user)
    if grant:
        store.credit(url, user.id, grant, LedgerKind.grant, f"welcome:{user.id}", "test")
    return user.id


def user_accounts(user_ids: list[uuid.UUID]) -> list[str]:
    return [a for u in user_ids for a in (available_account(u), held_account(u))]


def derive_balance(session: Session, user_id: uuid.UUID) -> Balance:
    """The balance recomputed from the ledger entries alone."""
    accounts = [available_account(user_id), held_account(user_id)]
    rows = session.exec(
        select(LedgerEntry.account, func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(col(LedgerEntry.account).in_(accounts))
        .group_by(col(LedgerEntry.account))
    ).all()
    sums = {account: int(total) for account, total in rows}
    return Balance(
        available=sums.get(available_account(user_id), 0), held=sums.get(held_account(user_id), 0)
    )


def assert_books_balance(url: str, user_ids: list[uuid.UUID]) -> None:
    """Every transaction touching these users sums to zero, and each user's cached balance is
    the one derived from the entries, never negative."""
    with session_scope(url) as session:
        txns = select(LedgerEntry.txn_id).where(
            col(LedgerEntry.account).in_(user_accounts(user_ids))
        )
        unbalanced = session.exec(
            select(LedgerEntry.txn_id, func.sum(LedgerEntry.amount))
            .where(col(LedgerEntry.txn_id).in_(txns))
            .group_by(col(LedgerEntry.txn_id))
            .having(func.sum(LedgerEntry.amount) != 0)
        ).all()
        assert unbalanced == []
        for user_id in user_ids:
            account = session.get(CreditAccount, user_id)
            cached = Balance(available=account.available, held=account.held) if account else None
            assert derive_balance(session, user_id) == (cached or Balance(available=0, held=0))
            assert cached is None or (cached.available >= 0 and cached.held >= 0)
