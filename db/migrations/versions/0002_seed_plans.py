"""seed the three plans

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:40:00
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMERCIAL = [
    "MIT",
    "BSD-3-Clause",
    "GPL-3.0-or-later",
    "apache-2.0",
    "mpl-2.0",
    "creativeml-openrail-m",
    "openai-usage-policy",
    "elevenlabs-terms",
]
_NONCOMMERCIAL = [
    "wav2lip-noncommercial",
    "cpml",
    "ltxv-open-weights",
    "cogvideox-license",
    "stability-community",
]

PLANS = [
    # code, name, monthly credits, price cents, max resolution, concurrent renders, req/min,
    # upload MB, priority, licences
    ("free", "Free", 300, 0, 720, 1, 60, 25, 0, _COMMERCIAL + _NONCOMMERCIAL),
    ("creator", "Creator", 3000, 1900, 1080, 2, 300, 200, 10, _COMMERCIAL),
    ("studio", "Studio", 15000, 7900, 1080, 6, 1200, 1000, 20, _COMMERCIAL),
]


def upgrade() -> None:
    plans = sa.table(
        "plans",
        sa.column("id", sa.Uuid()),
        sa.column("code", sa.String()),
        sa.column("name", sa.String()),
        sa.column("monthly_credits", sa.Integer()),
        sa.column("price_cents", sa.Integer()),
        sa.column("max_resolution", sa.Integer()),
        sa.column("max_concurrent_renders", sa.Integer()),
        sa.column("rate_limit_per_minute", sa.Integer()),
        sa.column("upload_limit_mb", sa.Integer()),
        sa.column("priority", sa.Integer()),
        sa.column("allowed_licences", sa.JSON()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    fields = (
        "code",
        "name",
        "monthly_credits",
        "price_cents",
        "max_resolution",
        "max_concurrent_renders",
        "rate_limit_per_minute",
        "upload_limit_mb",
        "priority",
        "allowed_licences",
    )
    rows = [dict(zip(fields, plan, strict=True)) for plan in PLANS]
    for row in rows:
        row["id"] = uuid.uuid5(uuid.NAMESPACE_URL, f"studio-plan:{row['code']}")
        row["created_at"] = now
    op.bulk_insert(plans, rows)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM plans WHERE code IN ('free', 'creator', 'studio')"))
