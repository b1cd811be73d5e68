"""5. Memory: peak RSS of one poll with 10k, 100k and 1M orders already in the snapshot table.

Each size gets a fresh SQLite database (snapshots bulk-inserted, baseline sealed, watermark set)
and a Wix sandbox in this process holding the 1 % of orders changed since the watermark (full
size). The poll itself runs in a fresh child process (``python -m bench.memory child``), which
reports its own peak RSS (VmHWM), so neither the sandbox nor the set-up is counted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from bench._common import (
    STORE,
    CachingWixSandbox,
    Row,
    emit,
    header,
    migrated,
    quiet_logs,
    run_child_json,
    sqlite_url,
    work_dir,
)
from notifier.config import Secret, StoreSettings
from notifier.sandbox.wix_seed import generate_orders
from notifier.serving import serve_in_thread
from notifier.store import orders
from notifier.store.engine import make_engine
from notifier.sync import sync_store
from notifier.wix import WixClient
from notifier.wix_parse import format_datetime

START = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
WATERMARK = START - timedelta(hours=1)
TARGET_MB = 200.0


def run(quick: bool) -> list[Row]:
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    header("memory", quick, ", ".join(f"{s:,}" for s in sizes) + " snapshots, 1 % changed")
    rows: list[Row] = []
    peaks: list[float] = []
    for size in sizes:
        peak, result = one_size(size)
        peaks.append(peak)
        emit(
            rows,
            Row(
                "memory",
                f"peak RSS, poll with {size:,} snapshots",
                peak,
                "MB",
                f"<= {TARGET_MB:g} MB",
                peak <= TARGET_MB,
                higher_is_better=False,
                note=(
                    f"{result['before_mb']:.0f} MB before the poll; read {result['orders_seen']:,},"
                    f" queued {result['queued']:,} in {result['seconds']:.1f} s"
                ),
            ),
        )
    growth = peaks[-1] - peaks[0]
    emit(
        rows,
        Row(
            "memory",
            f"growth {sizes[0]:,} -> {sizes[-1]:,} snapshots",
            growth,
            "MB",
            "flat (< 10 % of the smallest)",
            growth < 0.1 * peaks[0],
            higher_is_better=False,
        ),
    )
    return rows


def one_size(size: int) -> tuple[float, dict[str, Any]]:
    folder = work_dir(f"memory-{size}")
    url = sqlite_url(folder)
    engine = migrated(url)
    rng = random.Random(size)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(size)]
    started = time.monotonic()
    fill_snapshots(engine, str(folder / "notifier.db"), ids)
    engine.dispose()
    changed = changed_orders(ids[: size // 100])
    sandbox = CachingWixSandbox(clock=lambda: START)
    sandbox.add_orders(changed)
    server = serve_in_thread(sandbox.app)
    print(f"  {size:,} snapshots ready in {time.monotonic() - started:.1f} s", flush=True)
    try:
        result = run_child_json(
            "bench.memory",
            "child",
            "--db",
            url,
            "--wix",
            server.url,
            "--key",
            sandbox.api_key,
            "--site",
            sandbox.site_id,
        )
    finally:
        server.stop()
    return float(result["peak_mb"]), result


def fill_snapshots(engine: Engine, path: str, ids: list[str]) -> None:
    """Snapshots as a sealed baseline would leave them: every order approved, not paid yet.

    Raw ``sqlite3`` for speed (a million rows); dates in SQLAlchemy's SQLite storage format.
    """
    updated = _sqlite_datetime(WATERMARK - timedelta(days=1))
    seen = _sqlite_datetime(WATERMARK)
    rows = (
        (STORE, order_id, str(10_001 + i), "APPROVED", "NOT_PAID", "NOT_FULFILLED", updated, seen)
        for i, order_id in enumerate(ids)
    )
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executemany(
            "INSERT INTO order_snapshots (store, order_id, number, status, payment_status,"
            " fulfillment_status, updated_date, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.commit()
    with engine.begin() as conn:
        orders.ensure_store_state(conn, STORE)
        orders.finish_poll(conn, STORE, now=WATERMARK, watermark=WATERMARK, baseline_done=True)


def _sqlite_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def changed_orders(ids: list[str]) -> list[dict[str, Any]]:
    """Full-size orders for the first ids, now paid, updated after the watermark."""
    generated = generate_orders(random.Random(5), now=START, count=len(ids))
    for index, (order, order_id) in enumerate(zip(generated, ids, strict=True)):
        stamp = WATERMARK + timedelta(seconds=1, milliseconds=index)
        order.update(
            id=order_id,
            number=str(10_001 + index),
            status="APPROVED",
            paymentStatus="PAID",
            fulfillmentStatus="NOT_FULFILLED",
            updatedDate=format_datetime(stamp),
        )
    return generated


# -- the child: one poll, then its own peak RSS ------------------------------------------------


def child(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    for name in ("--db", "--wix", "--key", "--site"):
        parser.add_argument(name, required=True)
    args = parser.parse_args(argv)
    quiet_logs(work_dir("memory-child"))
    engine = make_engine(args.db)
    store = StoreSettings(
        name=STORE, site_id=args.site, api_key=Secret(args.key), wix_base_url=args.wix
    )
    wix = WixClient(base_url=args.wix, api_key=args.key, site_id=args.site, timeout=120)
    before = _peak_mb()
    started = time.monotonic()
    result = sync_store(store, wix, engine, lambda: START)
    report = {
        "ok": result.ok,
        "error": result.error,
        "orders_seen": result.counts.orders_seen,
        "queued": result.counts.queued,
        "seconds": time.monotonic() - started,
        "before_mb": before,
        "peak_mb": _peak_mb(),
    }
    print(json.dumps(report))


def _peak_mb() -> float:
    """This process's own peak RSS (VmHWM).

    ``ru_maxrss`` is not used: on Linux a child started by fork/vfork + exec inherits the parent's
    peak at exec time, so it would report the parent's sandbox, not the poll.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2:])
