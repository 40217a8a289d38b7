"""billing: Stripe customers, applied webhook events, payments, subscriptions mirrored from Stripe

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _string(length: int) -> sa.String:
    return sa.String(length=length)


def _time() -> db.types.UTCDateTime:
    return db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_subscription_id", _string(255), nullable=True))
        batch_op.add_column(sa.Column("stripe_customer_id", _string(255), nullable=True))
        batch_op.add_column(
            sa.Column(
                "cancel_at_period_end", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.add_column(sa.Column("ends_at", _time(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "updated_at", _time(), nullable=False, server_default=sa.func.current_timestamp()
            )
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_subscriptions_stripe_subscription_id"), ["stripe_subscription_id"]
        )
        batch_op.create_index(batch_op.f("ix_subscriptions_ends_at"), ["ends_at"], unique=False)
    op.create_table(
        "billing_customers",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", _string(255), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
        sa.UniqueConstraint("customer_id"),
    )
    op.create_table(
        "billing_events",
        sa.Column("id", _string(255), nullable=False),
        sa.Column("type", _string(100), nullable=False),
        sa.Column("outcome", _string(200), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("stripe_id", _string(255), nullable=False),
        sa.Column("payment_intent", _string(255), nullable=True),
        sa.Column("plan_code", _string(32), nullable=True),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", _string(3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("period_start", _time(), nullable=True),
        sa.Column("period_end", _time(), nullable=True),
        sa.Column("refund_id", _string(255), nullable=True),
        sa.Column("refunded_credits", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_id"),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_user_created", ["user_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_user_created")
    op.drop_table("payments")
    op.drop_table("billing_events")
    op.drop_table("billing_customers")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriptions_ends_at"))
        batch_op.drop_constraint(
            batch_op.f("uq_subscriptions_stripe_subscription_id"), type_="unique"
        )
        batch_op.drop_column("updated_at")
        batch_op.drop_column("ends_at")
        batch_op.drop_column("cancel_at_period_end")
        batch_op.drop_column("stripe_customer_id")
        batch_op.drop_column("stripe_subscription_id")
