"""engine choice: the seeded plans allow the LTX-2 Community License

Its commercial use is free for an operator under USD 10M annual revenue (models/registry.py
LICENCES): the operator, not the user, is the licensee, so the paid plans allow it as they allow
Apache-2.0 engines; an operator above the cap removes it from the plans.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-03 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LICENCE = "ltx-2-community"
_PLANS = ("free", "creator", "studio")
_plans = sa.table("plans", sa.column("code", sa.String()), sa.column("allowed_licences", sa.JSON()))


def _change(add: bool) -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_plans.c.code, _plans.c.allowed_licences).where(_plans.c.code.in_(_PLANS))
    ).all()
    for code, allowed in rows:
        kept = [licence for licence in allowed if licence != _LICENCE]
        connection.execute(
            _plans.update()
            .where(_plans.c.code == code)
            .values(allowed_licences=[*kept, _LICENCE] if add else kept)
        )


def upgrade() -> None:
    _change(add=True)


def downgrade() -> None:
    _change(add=False)
