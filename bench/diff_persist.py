"""2. Diff + persist: orders/s through ``sync_store``'s page processing, on SQLite and PostgreSQL.

Measured: ``sync_store`` against a ``WixClient`` whose transport replays pre-built Search pages
(``httpx.MockTransport``), so the figure is JSON decoding + order parsing + diff + rules + rendering
+ snapshot upsert + outbox insert, and not HTTP. Orders are full size (``wix_seed.generate_orders``).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine

from bench._common import (
    STORE,
    Row,
    Stopwatch,
    emit,
    header,
    migrated,
    postgres_engine,
    postgres_url,
    quiet_logs,
    sqlite_url,
    work_dir,
)
from notifier.config import Secret, StoreSettings
from notifier.sandbox.wix_seed import generate_orders
from notifier.sync import sync_store
from notifier.wix import WixClient, page_of
from notifier.wix_parse import format_datetime

START = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
TARGET = 5000.0


class PageReplay:
    """Serves pre-built Search pages; ``pages`` is swapped between runs (baseline, changed)."""

    def __init__(self) -> None:
        self.pages: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        search = json.loads(request.content)["search"]
        cursor = search.get("cursorPaging", {}).get("cursor")
        index = int(cursor[1:]) if cursor else 0
        return httpx.Response(
            200, content=self.pages[index], headers={"Content-Type": "application/json"}
        )


def build_pages(orders: list[dict[str, Any]]) -> list[bytes]:
    pages = []
    chunks = [orders[i : i + 100] for i in range(0, len(orders), 100)]
    for index, chunk in enumerate(chunks):
        more = index + 1 < len(chunks)
        cursors = {"next": f"c{index + 1}"} if more else {}
        metadata = {"count": len(chunk), "cursors": cursors, "hasNext": more}
        pages.append(json.dumps({"orders": chunk, "metadata": metadata}).encode())
    return pages


def order_sets(count: int) -> tuple[list[bytes], list[bytes]]:
    """(baseline pages, changed pages): every order goes NOT_PAID → PAID between the two."""
    orders = generate_orders(random.Random(2), now=START, count=count)
    base, changed = [], []
    for index, order in enumerate(orders):
        stamp = START + timedelta(milliseconds=index)
        order.update(status="APPROVED", fulfillmentStatus="NOT_FULFILLED")
        base.append({**order, "paymentStatus": "NOT_PAID", "updatedDate": format_datetime(stamp)})
        later = format_datetime(stamp + timedelta(hours=1))
        changed.append({**order, "paymentStatus": "PAID", "updatedDate": later})
    return build_pages(base), build_pages(changed)


def run(quick: bool) -> list[Row]:
    count = 1000 if quick else 3000
    header("diff_persist", quick, f"{count:,} full-size orders per pass")
    folder = work_dir("diff-persist")
    quiet_logs(folder)
    base_pages, changed_pages = order_sets(count)
    rows: list[Row] = []
    emit(rows, parse_only(changed_pages, count))
    rows.extend(measure("SQLite", migrated(sqlite_url(folder)), base_pages, changed_pages, count))
    url = postgres_url()
    if url is None:
        emit(rows, Row("diff_persist", "PostgreSQL", None, "orders/s", note="not reachable"))
        return rows
    with postgres_engine(url) as engine:
        rows.extend(measure("PostgreSQL", engine, base_pages, changed_pages, count))
    return rows


def parse_only(pages: list[bytes], count: int) -> Row:
    """The ceiling before any database work: JSON decode + ``parse_order`` of every order."""
    with Stopwatch() as watch:
        for page in pages:
            page_of(json.loads(page))
    return Row("diff_persist", "parse only (JSON + parse_order)", count / watch.seconds, "orders/s")


def measure(
    backend: str, engine: Engine, base: list[bytes], changed: list[bytes], count: int
) -> list[Row]:
    replay = PageReplay()
    wix = WixClient(
        base_url="https://wix.invalid",
        api_key="k",
        site_id="s",
        transport=httpx.MockTransport(replay),
    )
    store = StoreSettings(name=STORE, site_id="s", api_key=Secret("k"))
    now = [START + timedelta(hours=2)]

    def clock() -> datetime:
        return now[0]

    rates: dict[str, float] = {}
    for label, pages in (("baseline", base), ("changed", changed), ("re-read", changed)):
        replay.pages = pages
        with Stopwatch() as watch:
            result = sync_store(store, wix, engine, clock)
        if not result.ok:
            raise RuntimeError(f"{backend} {label} sync failed: {result.error}")
        rates[label] = count / watch.seconds
        now[0] += timedelta(minutes=5)
        if label == "changed" and result.counts.queued != count:
            print(f"  warning: {result.counts.queued} of {count} queued")
    engine.dispose()
    wix.close()
    rows: list[Row] = []
    emit(
        rows,
        Row(
            "diff_persist",
            f"{backend}: every order changed (diff + upsert + outbox row)",
            rates["changed"],
            "orders/s",
            f">= {TARGET:,.0f}/s",
            rates["changed"] >= TARGET,
        ),
    )
    emit(
        rows,
        Row("diff_persist", f"{backend}: baseline (first sight)", rates["baseline"], "orders/s"),
    )
    emit(
        rows,
        Row("diff_persist", f"{backend}: re-read, nothing changed", rates["re-read"], "orders/s"),
    )
    return rows
