"""Shared fixtures: a migrated database per test on every configured backend, and a settable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from notifier.sandbox.harness import Sandboxes, start_sandboxes
from notifier.store.engine import make_engine
from notifier.store.migrate import upgrade

POSTGRES_URL = os.environ.get("NOTIFIER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


class Clock:
    """A clock tests move by hand; every reading is UTC-aware."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 6, 20, 12, 0, tzinfo=UTC))


def new_database_url(backend: str, tmp_path: Path) -> tuple[str, dict[str, object]]:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'notifier.db'}", {}
    assert POSTGRES_URL
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        pytest.fail(f"NOTIFIER_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {exc}")
    finally:
        admin.dispose()
    return POSTGRES_URL, {"connect_args": {"options": f"-csearch_path={schema}"}, "schema": schema}


def drop_schema(schema: str) -> None:
    assert POSTGRES_URL
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def boxes(clock: Clock) -> Iterator[Sandboxes]:
    """Both sandbox servers on loopback, on the test's clock, with no orders yet."""
    with start_sandboxes(clock) as started:
        yield started


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    url, extra = new_database_url(backend, tmp_path)
    schema = extra.pop("schema", None)
    eng = make_engine(url, **extra)
    upgrade(eng)
    yield eng
    eng.dispose()
    if schema:
        drop_schema(str(schema))
