"""Create a SQLAlchemy engine tuned for notifier's short write transactions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

SQLITE_BUSY_TIMEOUT_MS = 30_000
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
PROMPT_LOCK_POLL_SECONDS = 0.0005


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` writes."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ArgumentError(
            f"unsupported database {parsed.get_backend_name()!r} in {parsed!r}: "
            "notifier runs on sqlite:/// and postgresql+psycopg://"
        )
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    # A pooled connection stays open: closing the last one checkpoints and fsyncs the WAL (~10 ms).
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **kwargs,
    )
    _tune_sqlite(engine)
    return engine


def _tune_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling delays BEGIN until the first write, which lets two
    # writers deadlock on lock upgrade; we take the write lock up front instead.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def begin_promptly(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for a writer that must not wait long: on SQLite the write lock is polled
    every half millisecond instead of through SQLite's busy handler, whose sleeps grow to 100 ms
    (a webhook's 200 waited up to 80 ms behind another writer's few-ms transaction)."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    conn = _begun_promptly(engine, time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()  # rolls back what was not committed


def _begun_promptly(engine: Engine, deadline: float) -> Connection:
    while True:
        conn = engine.connect()
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA busy_timeout=0")
        try:
            conn.begin()
        except OperationalError as exc:
            raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            conn.close()
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(PROMPT_LOCK_POLL_SECONDS)
            continue
        raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        return conn
