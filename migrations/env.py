"""Alembic environment: uses the engine handed over by notifier.store.migrate, or NOTIFIER_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import text

from notifier.store.engine import make_engine
from notifier.store.tables import metadata

# Every replica runs `notifier db upgrade` on start; on PostgreSQL they take this transaction-scoped
# advisory lock first, so the second one waits and then finds the schema already at head.
MIGRATION_LOCK_KEY = 0x6E6F746966  # "notif"

engine = context.config.attributes.get("engine")
if engine is None:
    engine = make_engine(os.environ.get("NOTIFIER_DATABASE_URL", "sqlite:///notifier.db"))

with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
