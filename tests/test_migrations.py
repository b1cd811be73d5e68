"""Alembic migrations on every backend: upgrade from empty, downgrade to base, no drift, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, MetaData, String, inspect

from notifier.cli import EXIT_DATABASE, main
from notifier.store.engine import make_engine
from notifier.store.migrate import (
    current_revisions,
    downgrade,
    head_revisions,
    require_head,
    upgrade,
)
from notifier.store.tables import metadata
from tests.conftest import drop_schema, new_database_url

NOTIFIER_TABLES = set(metadata.tables)
SECRETS_ENV = {
    "NOTIFIER_WIX_API_KEY": "wix-key",
    "NOTIFIER_WHATSAPP_ACCESS_TOKEN": "token",
    "NOTIFIER_WHATSAPP_APP_SECRET": "secret",
    "NOTIFIER_WHATSAPP_VERIFY_TOKEN": "verify",
}
# Port 9 (discard) on loopback: nothing answers, so any network call would fail loudly.
UNREACHABLE_CONFIG = """
[whatsapp]
base_url = "http://127.0.0.1:9"
phone_number_id = "123456789012345"
waba_id = "987654321098765"

[[stores]]
name = "shop"
site_id = "site-1"
wix_base_url = "http://127.0.0.1:9"
default_country = "IN"
timezone = "Asia/Kolkata"
"""


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, object]]]:
    """An empty database (SQLite file or PostgreSQL schema), no migrations applied."""
    url, extra = new_database_url(backend, tmp_path)
    schema = extra.pop("schema", None)
    yield url, extra
    if schema:
        drop_schema(str(schema))


@pytest.fixture
def empty_engine(database: tuple[str, dict[str, object]]) -> Iterator[Engine]:
    """An engine on an empty database, no migrations applied."""
    url, extra = database
    engine = make_engine(url, **extra)
    yield engine
    engine.dispose()


def _url_for_cli(database: tuple[str, dict[str, object]]) -> str:
    """The database as one URL, with PostgreSQL's per-test search_path in its query string."""
    url, extra = database
    connect_args = extra.get("connect_args")
    if not isinstance(connect_args, dict):
        return url
    return f"{url}?options={connect_args['options'].replace('=', '%3D')}"


def _table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _drift(engine: Engine, target: MetaData) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, target))


def test_upgrade_from_empty_creates_every_table_at_head(empty_engine: Engine) -> None:
    """An empty database upgraded to head has every table of tables.py and the head revision."""
    assert current_revisions(empty_engine) == set()
    upgrade(empty_engine)
    assert _table_names(empty_engine) == NOTIFIER_TABLES | {"alembic_version"}
    assert current_revisions(empty_engine) == head_revisions()
    require_head(empty_engine)


def test_upgrade_twice_is_a_no_op(empty_engine: Engine) -> None:
    """A second upgrade on a database already at head changes nothing and does not fail."""
    upgrade(empty_engine)
    upgrade(empty_engine)
    assert current_revisions(empty_engine) == head_revisions()


def test_downgrade_to_base_leaves_no_notifier_tables(empty_engine: Engine) -> None:
    """Downgrading to base drops every notifier table (and, on PostgreSQL, every sequence)."""
    upgrade(empty_engine)
    downgrade(empty_engine, "base")
    assert _table_names(empty_engine) <= {"alembic_version"}
    assert current_revisions(empty_engine) == set()
    if empty_engine.dialect.name == "postgresql":
        assert inspect(empty_engine).get_sequence_names() == []


def test_upgrade_after_downgrade_to_base_works(empty_engine: Engine) -> None:
    """A full round trip (head, base, head) ends at head with every table back."""
    upgrade(empty_engine)
    downgrade(empty_engine, "base")
    upgrade(empty_engine)
    assert _table_names(empty_engine) == NOTIFIER_TABLES | {"alembic_version"}
    assert current_revisions(empty_engine) == head_revisions()


def test_migrations_match_the_tables_with_no_drift(empty_engine: Engine) -> None:
    """`alembic check`: the migrated schema equals tables.metadata (types, nullability, indexes)."""
    upgrade(empty_engine)
    assert _drift(empty_engine, metadata) == []


def test_drift_check_notices_a_column_missing_from_the_migrations(empty_engine: Engine) -> None:
    """The drift check has teeth: a column only in the metadata shows up as a difference."""
    upgrade(empty_engine)
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["alerts"].append_column(Column("extra", String(10)))
    drift = _drift(empty_engine, changed)
    assert len(drift) == 1
    assert "extra" in repr(drift[0])


def test_concurrent_upgrades_from_empty_all_succeed(
    backend: str, database: tuple[str, dict[str, object]]
) -> None:
    """Three replicas starting at once each run `notifier db upgrade`; on PostgreSQL none fails."""
    if backend != "postgresql":
        pytest.skip("replicas share a database only on PostgreSQL")
    env = {**os.environ, "NOTIFIER_DATABASE_URL": _url_for_cli(database)}
    command = [sys.executable, "-m", "notifier.cli", "db", "upgrade"]
    replicas = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [replica.communicate(timeout=120) for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], outputs
    url, extra = database
    engine = make_engine(url, **extra)
    try:
        assert current_revisions(engine) == head_revisions()
    finally:
        engine.dispose()


def test_cli_db_upgrade_migrates_an_empty_database(
    database: tuple[str, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    """`notifier db upgrade` with NOTIFIER_DATABASE_URL exits 0 and leaves the schema at head."""
    environ = {"NOTIFIER_DATABASE_URL": _url_for_cli(database)}
    assert main(["db", "upgrade"], environ=environ) == 0
    heads = ", ".join(sorted(head_revisions()))
    assert f"database at {heads}; head is {heads}" in capsys.readouterr().out
    assert main(["db", "current"], environ=environ) == 0


def test_cli_db_current_on_an_empty_database_exits_with_the_database_code(
    database: tuple[str, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    """`notifier db current` on a never-migrated database reports `empty` and exits 3."""
    environ = {"NOTIFIER_DATABASE_URL": _url_for_cli(database)}
    assert main(["db", "current"], environ=environ) == EXIT_DATABASE
    assert "database at empty" in capsys.readouterr().out


def test_poll_once_refuses_a_database_that_was_never_upgraded(
    database: tuple[str, dict[str, object]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`notifier poll --once` on an empty schema exits 3, names `notifier db upgrade`, creates nothing."""
    config = tmp_path / "notifier.toml"
    config.write_text(UNREACHABLE_CONFIG, encoding="utf-8")
    environ = {**SECRETS_ENV, "NOTIFIER_DATABASE_URL": _url_for_cli(database)}
    assert main(["--config", str(config), "poll", "--once"], environ=environ) == EXIT_DATABASE
    assert "notifier db upgrade" in capsys.readouterr().err
    url, extra = database
    engine = make_engine(url, **extra)
    try:
        assert _table_names(engine) == set()
    finally:
        engine.dispose()
