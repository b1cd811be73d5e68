"""Alembic environment: uses the engine handed over by notifier.store.migrate, or NOTIFIER_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context

from notifier.store.engine import make_engine
from notifier.store.tables import metadata

engine = context.config.attributes.get("engine")
if engine is None:
    engine = make_engine(os.environ.get("NOTIFIER_DATABASE_URL", "sqlite:///notifier.db"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
