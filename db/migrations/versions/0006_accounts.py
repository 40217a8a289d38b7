"""email_tokens: single-use, hashed email verification and password reset tokens

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-03 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_tokens",
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("expires_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("email_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_tokens_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index("ix_email_tokens_user_purpose", ["user_id", "purpose"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_email_tokens_user_purpose")
        batch_op.drop_index(batch_op.f("ix_email_tokens_expires_at"))
    op.drop_table("email_tokens")
