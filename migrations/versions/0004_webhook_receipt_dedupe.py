"""Deduplicate webhook receipts before the 200 (a unique body hash); find unprocessed ones by index.

Receipts stored before this revision keep a NULL hash (NULLs never collide), so nothing is lost.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_receipts") as batch:
        batch.add_column(sa.Column("body_sha256", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(batch.f("uq_webhook_receipts_body_sha256"), ["body_sha256"])
        batch.create_index("ix_webhook_receipts_processed_at", ["processed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_receipts") as batch:
        batch.drop_index("ix_webhook_receipts_processed_at")
        batch.drop_constraint(batch.f("uq_webhook_receipts_body_sha256"), type_="unique")
        batch.drop_column("body_sha256")
