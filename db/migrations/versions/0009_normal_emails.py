"""users.email in its normal form (db.addresses), which registration and login
now compare: a stored address that is not (full-width letters, a zero-width space, a Unicode
or dotted domain) would otherwise no longer log in. An address whose normal form another
account already has, or that has none, is left as it is and logged: merging accounts is for
an operator to decide.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:40:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cluster.errors import StudioError
from db.addresses import normalise

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
users = sa.table("users", sa.column("id"), sa.column("email"))


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.email)).all()
    taken = {email for _, email in rows}
    for user_id, email in rows:
        try:
            normal = normalise(email)
        except StudioError as error:
            log.warning("user %s: address left as it is: %s", user_id, error.detail)
            continue
        if normal == email:
            continue
        if normal in taken:
            log.warning("user %s: address left as it is: its normal form is taken", user_id)
            continue
        conn.execute(users.update().where(users.c.id == user_id).values(email=normal))
        taken.add(normal)


def downgrade() -> None:
    """Normal forms stay: they are addresses of the same mailboxes."""
