"""Remember until when Wix asked us (429 Retry-After) not to poll a store.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from notifier.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("store_state") as batch:
        batch.add_column(sa.Column("poll_not_before", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("store_state") as batch:
        batch.drop_column("poll_not_before")
