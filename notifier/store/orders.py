"""Per-store polling state, poll runs and order snapshots."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from notifier.domain import Snapshot
from notifier.store.dialect import insert_ignoring_duplicates, upsert
from notifier.store.tables import order_snapshots, poll_runs, store_state


@dataclass(frozen=True)
class StoreState:
    store: str
    watermark: datetime | None
    baseline_at: datetime | None
    last_poll_ok_at: datetime | None
    last_poll_error: str | None
    poll_not_before: datetime | None = None


def get_store_state(conn: Connection, store: str) -> StoreState | None:
    row = conn.execute(select(store_state).where(store_state.c.store == store)).first()
    if row is None:
        return None
    return StoreState(
        row.store,
        row.watermark,
        row.baseline_at,
        row.last_poll_ok_at,
        row.last_poll_error,
        row.poll_not_before,
    )


def ensure_store_state(conn: Connection, store: str) -> None:
    """Create the store's row once; two first polls racing must not both try to insert it."""
    insert_ignoring_duplicates(conn, store_state, {"store": store})


def finish_poll(
    conn: Connection,
    store: str,
    *,
    now: datetime,
    watermark: datetime | None,
    baseline_done: bool,
) -> None:
    """A whole run succeeded: the watermark moves (never backwards) and the baseline is sealed."""
    values: dict[str, object] = {
        "last_poll_ok_at": now,
        "last_poll_error": None,
        "poll_not_before": None,
    }
    state = get_store_state(conn, store)
    if watermark is not None and (
        state is None or state.watermark is None or watermark > state.watermark
    ):
        values["watermark"] = watermark
    if baseline_done:
        values["baseline_at"] = now
    conn.execute(update(store_state).where(store_state.c.store == store).values(**values))


def record_poll_error(
    conn: Connection, store: str, error: str, *, not_before: datetime | None = None
) -> None:
    """A run failed; with ``not_before`` (Wix's 429 Retry-After) no poll starts before then."""
    conn.execute(
        update(store_state)
        .where(store_state.c.store == store)
        .values(last_poll_error=error, poll_not_before=not_before)
    )


def start_poll_run(conn: Connection, store: str, *, now: datetime, baseline: bool) -> int:
    result = conn.execute(
        insert(poll_runs)
        .values(
            store=store,
            started_at=now,
            baseline=baseline,
            pages=0,
            orders_seen=0,
            events=0,
            queued=0,
        )
        .returning(poll_runs.c.id)
    )
    return int(result.scalar_one())


@dataclass
class RunCounts:
    """What one poll run read and did; also its canonical log line's numbers."""

    pages: int = 0
    orders_seen: int = 0
    events: int = 0
    queued: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "pages": self.pages,
            "orders_seen": self.orders_seen,
            "events": self.events,
            "queued": self.queued,
        }


def end_poll_run(
    conn: Connection,
    run_id: int,
    *,
    now: datetime,
    ok: bool,
    counts: RunCounts,
    error: str | None = None,
) -> None:
    conn.execute(
        update(poll_runs)
        .where(poll_runs.c.id == run_id)
        .values(finished_at=now, ok=ok, error=error, **counts.as_dict())
    )


def load_snapshots(conn: Connection, store: str, order_ids: Iterable[str]) -> dict[str, Snapshot]:
    ids = list(order_ids)
    if not ids:
        return {}
    rows = conn.execute(
        select(order_snapshots).where(
            order_snapshots.c.store == store, order_snapshots.c.order_id.in_(ids)
        )
    )
    return {
        row.order_id: Snapshot(
            row.order_id,
            row.number,
            row.status,
            row.payment_status,
            row.fulfillment_status,
            row.updated_date,
        )
        for row in rows
    }


def save_snapshots(
    conn: Connection, store: str, snapshots: Iterable[Snapshot], *, now: datetime
) -> None:
    """Insert or update snapshots; two pollers writing the same order never collide."""
    rows = [{"store": store, "order_id": s.order_id, **_snapshot_values(s, now)} for s in snapshots]
    upsert(conn, order_snapshots, rows, ["store", "order_id"])


def _snapshot_values(snapshot: Snapshot, now: datetime) -> dict[str, object]:
    return {
        "number": snapshot.number,
        "status": snapshot.status,
        "payment_status": snapshot.payment_status,
        "fulfillment_status": snapshot.fulfillment_status,
        "updated_date": snapshot.updated_date,
        "seen_at": now,
    }


def count_snapshots(conn: Connection, store: str) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(order_snapshots)
            .where(order_snapshots.c.store == store)
        ).scalar_one()
    )
