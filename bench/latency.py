"""6. Latency: from a status change in the Wix sandbox to the message at the WhatsApp sandbox.

The real daemon (``daemon_app(runtime, "all")``: scheduler, poller, dispatcher, webhooks) on
loopback, once with the default intervals (poll 60 s, dispatch 5 s), with changes spread over
one poll interval, and once with the shortest sensible ones (poll 1 s, dispatch 0.5 s).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine

from bench._common import (
    Row,
    emit,
    header,
    migrated,
    quiet_logs,
    sqlite_url,
    utc_now,
    work_dir,
)
from notifier import phones
from notifier.config import DispatchSettings
from notifier.daemon import daemon_app, prepare
from notifier.sandbox.harness import Sandboxes, free_port, sandbox_settings, start_sandboxes
from notifier.sandbox.wix_seed import generate_orders
from notifier.serving import serve_in_thread
from notifier.store import orders
from notifier.wix_parse import parse_order

STORE = "latency-store"
PROCESSING_SLACK = 0.5  # seconds for the poll, the send and the bookkeeping themselves


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    poll: float
    dispatch: float
    offsets: tuple[float, ...]  # seconds after the baseline poll at which an order changes

    @property
    def bound(self) -> float:
        """Worst case: a change just after a poll waits a poll and a dispatch interval, plus work."""
        return self.poll + self.dispatch + PROCESSING_SLACK


def run(quick: bool) -> list[Row]:
    short = Case("short intervals", 1.0, 0.5, (1.0, 3.3, 5.6, 7.9, 10.2))
    default = Case("default intervals", 60.0, 5.0, (5.0, 20.0, 35.0, 50.0))
    cases = [short] if quick else [short, default]
    header(
        "latency",
        quick,
        " and ".join(f"poll {c.poll:g} s/dispatch {c.dispatch:g} s" for c in cases),
    )
    rows: list[Row] = []
    for case in cases:
        samples = measure(case)
        got = [s for s in samples if s is not None]
        worst = max(got) if got else None
        emit(
            rows,
            Row(
                "latency",
                f"change -> message, {case.name} (poll {case.poll:g} s, dispatch {case.dispatch:g} s)",
                statistics.mean(got) if got else None,
                "s mean",
                f"max <= poll + dispatch + {PROCESSING_SLACK:g} s = {case.bound:g} s",
                worst is not None and len(got) == len(samples) and worst <= case.bound,
                higher_is_better=False,
                note=f"{len(got)}/{len(samples)} arrived; samples "
                + ", ".join(f"{s:.2f}" if s is not None else "lost" for s in samples),
            ),
        )
    if quick:
        print("  default intervals (poll 60 s) skipped in --quick")
    return rows


def measure(case: Case) -> list[float | None]:
    folder = work_dir("latency")
    quiet_logs(folder)
    port = free_port()
    boxes = start_sandboxes(utc_now, webhook_url=f"http://127.0.0.1:{port}/webhooks/whatsapp")
    picks = seed(boxes, len(case.offsets))
    url = sqlite_url(folder)
    settings = sandbox_settings(
        boxes, url, store_name=STORE, poll_interval_seconds=case.poll, web_port=port
    )
    settings = dataclasses.replace(
        settings, dispatch=DispatchSettings(interval_seconds=case.dispatch)
    )
    runtime = prepare(settings, engine=migrated(url))
    server = serve_in_thread(daemon_app(runtime, "all"), port=port)
    try:
        # the first poll comes at a random point of the first interval (replicas spread out)
        baseline_at = wait_for_baseline(runtime.engine, timeout=case.poll + 60)
        changed: dict[str, datetime] = {}
        for offset, (order_id, number) in zip(case.offsets, picks, strict=True):
            time.sleep(max(0.0, baseline_at + offset - time.monotonic()))
            boxes.wix.set_payment(order_id, "PAID")
            changed[number] = utc_now()
        return arrivals(boxes, changed, timeout=case.bound + 15)
    finally:
        server.stop()
        runtime.close()
        boxes.stop()


def seed(boxes: Sandboxes, count: int) -> list[tuple[str, str]]:
    """Orders (id, number) that are approved, not paid, each with its own reachable +91 phone."""
    raws = generate_orders(random.Random(6), now=utc_now() - timedelta(minutes=5), count=300)
    boxes.wix.add_orders(raws)
    picks: list[tuple[str, str]] = []
    used: set[str] = set()
    for raw in raws:
        order = parse_order(raw)
        phone = phones.recipient_for(order, "IN").e164 or ""
        fits = order.status == "APPROVED" and order.payment_status == "NOT_PAID"
        if fits and phone.startswith("+91") and phone not in used and order.number:
            picks.append((order.id, order.number))
            used.add(phone)
        if len(picks) == count:
            return picks
    raise RuntimeError("the latency seed has too few suitable orders")


def wait_for_baseline(engine: Engine, *, timeout: float) -> float:
    """The monotonic time at which the first (baseline) poll was sealed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            state = orders.get_store_state(conn, STORE)
        if state is not None and state.baseline_at is not None:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError("the baseline poll did not finish")


def arrivals(
    boxes: Sandboxes, changed: dict[str, datetime], *, timeout: float
) -> list[float | None]:
    """Seconds from each change to its message at the WhatsApp sandbox (None: never arrived)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while time.monotonic() < deadline and len(seen) < len(changed):
        for message in boxes.whatsapp.sent_messages():
            number = next((p for p in message.body_params if p in changed), None)
            if number is not None and number not in seen:
                seen[number] = (message.at - changed[number]).total_seconds()
        time.sleep(0.05)
    return [seen.get(number) for number in changed]
