"""1. Wix calls per poll cycle: a large sandbox store, a baseline, then 1 % changed.

Our poll (``sync_store``) against a naive poller that re-reads every order page by page in Wix's
default ``createdDate`` order, both counted by the sandbox (``WixSandbox.request_count``), same run.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine

from bench._common import (
    STORE,
    CachingWixSandbox,
    Row,
    Stopwatch,
    emit,
    header,
    migrated,
    quiet_logs,
    sqlite_url,
    work_dir,
)
from notifier.config import Secret, StoreSettings
from notifier.domain import Snapshot, Tracking
from notifier.serving import serve_in_thread
from notifier.store import orders
from notifier.sync import sync_store
from notifier.wix import LIST_FULFILLMENTS_PATH, SEARCH_PATH, WixClient
from notifier.wix_parse import format_datetime, parse_datetime

START = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def light_order(rng: random.Random, number: int, now: datetime) -> dict[str, Any]:
    """A small but valid order (the count of calls does not depend on an order's size)."""
    age = rng.randint(3600, 30 * 86400)
    created = now - timedelta(seconds=age)
    updated = created + timedelta(seconds=rng.randint(0, min(86400, age - 3600)))
    contact = {"firstName": "Priya", "lastName": "Sharma", "phone": f"+9198{number:08d}"}
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "number": str(number),
        "createdDate": format_datetime(created),
        "updatedDate": format_datetime(updated),
        "status": "APPROVED",
        "paymentStatus": "NOT_PAID",
        "fulfillmentStatus": "NOT_FULFILLED",
        "currency": "INR",
        "buyerLanguage": "en",
        "priceSummary": {"total": {"amount": "1299.00", "formattedAmount": "₹1,299.00"}},
        "billingInfo": {"address": {"country": "IN"}, "contactDetails": contact},
    }


def run(quick: bool) -> list[Row]:
    size = 10_000 if quick else 100_000
    changed = size // 100
    header("wix_calls", quick, f"{size:,} orders, {changed:,} changed (1 %)")
    folder = work_dir("wix-calls")
    quiet_logs(folder)
    clock = Clock(START)
    sandbox = CachingWixSandbox(clock=clock)
    rng = random.Random(1)
    raws = [light_order(rng, 10_001 + i, START) for i in range(size)]
    sandbox.add_orders(raws)
    server = serve_in_thread(sandbox.app)
    engine = migrated(sqlite_url(folder))
    store = StoreSettings(
        name=STORE,
        site_id=sandbox.site_id,
        api_key=Secret(sandbox.api_key),
        wix_base_url=server.url,
    )
    rows: list[Row] = []
    try:
        # A generous timeout: the sandbox filters 100,000 orders in Python, slowly on a busy machine.
        wix = WixClient(
            base_url=server.url, api_key=sandbox.api_key, site_id=sandbox.site_id, timeout=120
        )
        before = sandbox.request_count
        with Stopwatch() as baseline:
            pages = sum(1 for _ in wix.search_pages(None))
        baseline_calls = sandbox.request_count - before
        seed_baseline(engine, raws)
        print(
            f"  baseline: {baseline_calls} calls ({pages} pages) to read {size:,} orders in "
            f"{baseline.seconds:.1f} s; snapshots and watermark then written in bulk"
        )
        clock.now = START + timedelta(minutes=1)
        _change_one_percent(sandbox, rng, changed)
        clock.now = START + timedelta(minutes=2)
        before = sandbox.request_count
        with Stopwatch() as ours:
            result = sync_store(store, wix, engine, clock)
        calls = sandbox.requests[before:]
        search_calls = sum(1 for _, path, _ in calls if path == SEARCH_PATH)
        tracking_calls = len(calls) - search_calls
        shipped = sum(
            len(body["orderIds"]) for _, path, body in calls if path == LIST_FULFILLMENTS_PATH
        )
        before = sandbox.request_count
        with Stopwatch() as naive_watch:
            naive_orders = naive_poll(server.url, sandbox.api_key, sandbox.site_id)
        naive = sandbox.request_count - before
        wix.close()
    finally:
        server.stop()
    if not result.ok:
        print(f"  warning: our poll failed ({result.error}); its call counts are not comparable")
    allowed = math.ceil(changed / 100) + 1
    pages = math.ceil(result.counts.orders_seen / 100)
    print(
        f"  our poll read {result.counts.orders_seen:,} orders in {ours.seconds:.1f} s, "
        f"queued {result.counts.queued:,}; naive read {naive_orders:,} in {naive_watch.seconds:.1f} s"
    )
    emit(
        rows,
        Row(
            "wix_calls",
            f"search calls, {changed:,} of {size:,} changed",
            search_calls,
            "calls",
            f"<= ceil(changed/100)+1 = {allowed}",
            search_calls <= allowed,
            naive,
            "naive poller (re-reads all)",
            higher_is_better=False,
        ),
    )
    emit(
        rows,
        Row(
            "wix_calls",
            "all Wix calls incl. tracking lookups",
            len(calls),
            "calls",
            f"<= {allowed}",
            len(calls) <= allowed,
            naive + shipped,
            "naive + one GET fulfilments per shipped order",
            higher_is_better=False,
            note=(
                f"{tracking_calls} List-fulfilments calls (at most one per page of {pages})"
                f" for {shipped} shipped orders; within ceil(changed/100)+1 only if tracking"
                " left the poll cycle"
            ),
        ),
    )
    return rows


def seed_baseline(engine: Engine, raws: list[dict[str, Any]]) -> None:
    """What a baseline poll leaves behind: a snapshot per order, a watermark, the baseline sealed.

    Written in bulk: ``diff_persist`` measures how fast sync itself writes them.
    """
    snapshots = [
        Snapshot(
            raw["id"],
            raw["number"],
            raw["status"],
            raw["paymentStatus"],
            raw["fulfillmentStatus"],
            parse_datetime(raw["updatedDate"]),
        )
        for raw in raws
    ]
    watermark = max(s.updated_date for s in snapshots if s.updated_date is not None)
    with engine.begin() as conn:
        for start in range(0, len(snapshots), 10_000):
            orders.save_snapshots(conn, STORE, snapshots[start : start + 10_000], now=START)
        orders.ensure_store_state(conn, STORE)
        orders.finish_poll(conn, STORE, now=START, watermark=watermark, baseline_done=True)


def _change_one_percent(sandbox: CachingWixSandbox, rng: random.Random, count: int) -> None:
    """Half get paid, half get shipped with tracking (a shipped order needs its tracking link)."""
    ids = rng.sample(sandbox.order_ids(), count)
    tracking = Tracking("DL123456789IN", "Delhivery", "https://track.example.com/DL123456789IN")
    for index, order_id in enumerate(ids):
        if index % 2:
            sandbox.set_fulfillment(order_id, "FULFILLED", tracking)
        else:
            sandbox.set_payment(order_id, "PAID")


def naive_poll(base_url: str, api_key: str, site_id: str) -> int:
    """Every order, page by page, Wix's default sort (createdDate DESC): what a poller without a
    watermark does each cycle."""
    headers = {"Authorization": api_key, "wix-site-id": site_id}
    search: dict[str, Any] = {"cursorPaging": {"limit": 100}}
    seen = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        while True:
            response = client.post(SEARCH_PATH, json={"search": search})
            response.raise_for_status()
            body = response.json()
            seen += len(body["orders"])
            cursor = body["metadata"]["cursors"].get("next")
            if not body["metadata"].get("hasNext") or not cursor:
                return seen
            search = {"cursorPaging": {"limit": 100, "cursor": cursor}}
