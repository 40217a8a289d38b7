"""character animation: the free plan allows FOMM's non-commercial checkpoints

First Order Motion Model's code is MIT, its published checkpoints are trained on research
datasets (VoxCeleb and others) for research use (models/registry.py LICENCES): like Wav2Lip's,
only the plan that allows non-commercial engines gets it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LICENCE = "fomm-noncommercial"
_PLANS = ("free",)
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
