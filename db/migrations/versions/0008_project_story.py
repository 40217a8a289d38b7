"""projects.story and projects.plan_style: the text a project is planned from, and how

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("story", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("plan_style", db.types.JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("plan_style")
        batch_op.drop_column("story")
