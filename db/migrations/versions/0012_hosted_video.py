"""hosted video: the seeded plans allow Runway's and Luma's terms

Both providers' terms give the customer its outputs with commercial use on their paid plans
(models/registry.py LICENCES), like the hosted voices' terms that the plans already allow.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LICENCES = ("runway-terms", "luma-terms")
_PLANS = ("free", "creator", "studio")
_plans = sa.table("plans", sa.column("code", sa.String()), sa.column("allowed_licences", sa.JSON()))


def _change(add: bool) -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_plans.c.code, _plans.c.allowed_licences).where(_plans.c.code.in_(_PLANS))
    ).all()
    for code, allowed in rows:
        kept = [licence for licence in allowed if licence not in _LICENCES]
        connection.execute(
            _plans.update()
            .where(_plans.c.code == code)
            .values(allowed_licences=[*kept, *_LICENCES] if add else kept)
        )


def upgrade() -> None:
    _change(add=True)


def downgrade() -> None:
    _change(add=False)
