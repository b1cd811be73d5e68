"""Alembic, driven from code: upgrade, downgrade, and the "is this database at head?" check."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


class DatabaseNotAtHeadError(RuntimeError):
    """The schema is older (or newer) than this code expects."""


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def require_head(engine: Engine) -> None:
    """Refuse to run on a schema that is not at head, naming the command that fixes it."""
    current, heads = current_revisions(engine), head_revisions()
    if current != heads:
        shown = ", ".join(sorted(current)) or "empty"
        raise DatabaseNotAtHeadError(
            f"the database schema is at {shown}, this notifier needs {', '.join(sorted(heads))}; "
            "run `notifier db upgrade` first"
        )
