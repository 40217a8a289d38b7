"""ledger safety: one entry per operation and account, non-negative balances, expiry index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ux_ledger_entries_key_account", ["idempotency_key", "account"], unique=True
        )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index("ix_reservations_status_expires", ["status", "expires_at"])
    with op.batch_alter_table("credit_accounts", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "ck_credit_accounts_non_negative", "available >= 0 AND held >= 0"
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_accounts", schema=None) as batch_op:
        batch_op.drop_constraint("ck_credit_accounts_non_negative", type_="check")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_status_expires")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ux_ledger_entries_key_account")
