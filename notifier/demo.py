"""`notifier demo`: the whole job against sandbox Wix and WhatsApp servers on loopback.

The daemon here is the same code `notifier run` serves (``daemon.prepare`` + ``daemon.daemon_app``);
only its settings point at the sandboxes. Its JSON log goes to a file beside the database.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from notifier import costs, logs, phones
from notifier.bootstrap import Runtime, utc_now
from notifier.daemon import daemon_app, prepare
from notifier.domain import Tracking
from notifier.sandbox.harness import Sandboxes, free_port, sandbox_settings, start_sandboxes
from notifier.sandbox.whatsapp_server import SentMessage, WhatsAppSandbox
from notifier.sandbox.wix_seed import generate_orders, seed_1023
from notifier.sandbox.wix_server import WixSandbox
from notifier.serving import serve_in_thread
from notifier.store import ledger, orders
from notifier.store.engine import make_engine
from notifier.store.migrate import upgrade
from notifier.wix_parse import parse_order

STORE = "demo-india"
OWNER_WA_ID = "919820000001"
STRANGER_WA_ID = "919811122233"
POLL_SECONDS = 2.0
STEP_SECONDS = 2.5


def run_demo(*, duration: float | None = None, database_url: str | None = None) -> int:
    deadline = None if duration is None else time.monotonic() + duration
    folder = Path(tempfile.mkdtemp(prefix="notifier-demo-"))
    url = database_url or f"sqlite:///{folder / 'notifier.db'}"
    log_path = folder / "notifier.log"
    with log_path.open("a", encoding="utf-8") as log_file:
        logs.configure(stream=log_file, json=True)
        try:
            print("notifier demo: sandbox Wix + sandbox WhatsApp, the real daemon in between")
            print(f"  database: {url}\n  daemon log: {log_path}\n")
            return _run(url, deadline)
        finally:
            logs.configure()  # never leave logging pointed at a file about to be closed


def _run(url: str, deadline: float | None) -> int:
    daemon_port = free_port()
    boxes = _start(daemon_port)
    engine = make_engine(url)
    upgrade(engine)
    settings = sandbox_settings(boxes, url, store_name=STORE, poll_interval_seconds=POLL_SECONDS)
    runtime = prepare(settings, engine=engine)
    server = serve_in_thread(daemon_app(runtime, "all"), port=daemon_port)
    printer = _Printer(boxes.whatsapp)
    try:
        _wait(lambda: _baseline_done(runtime), deadline, limit=30)
        with runtime.engine.connect() as conn:
            print(
                f"Baseline: {orders.count_snapshots(conn, STORE)} existing orders recorded, 0 messages sent\n"
            )
        for line, action in _script(boxes):
            if _past(deadline):
                break
            print(line)
            action()
            _pause(STEP_SECONDS, deadline, printer)
        _pause(8.0, deadline, printer)  # let the last sends and their status webhooks land
        _pause(max(0.0, (deadline or 0) - time.monotonic()), deadline, printer)
    finally:
        server.stop()
        printer.flush()
        boxes.stop()
    _print_summary(runtime)
    runtime.close()
    return 0


def _start(daemon_port: int) -> Sandboxes:
    boxes = start_sandboxes(
        utc_now, webhook_url=f"http://127.0.0.1:{daemon_port}/webhooks/whatsapp"
    )
    seeded = generate_orders(random.Random(1023), now=utc_now() - timedelta(minutes=5), count=40)
    boxes.wix.add_orders([*seeded, seed_1023()])
    return boxes


def _script(boxes: Sandboxes) -> Iterator[tuple[str, Callable[[], object]]]:
    """Scripted changes, each on a different customer except the two shipments of one order."""
    wix, whatsapp = boxes.wix, boxes.whatsapp
    picks = _pick_orders(wix)
    tracking = Tracking("DL123456789IN", "Delhivery", "https://track.example.com/DL123456789IN")

    def step(
        key: str, change: str, action: Callable[[str], None]
    ) -> tuple[str, Callable[[], object]]:
        order_id = picks[key]
        return f"[wix] order #{_number(wix, order_id)}: {change}", lambda: action(order_id)

    yield step("unpaid", "payment NOT_PAID -> PAID", lambda o: wix.set_payment(o, "PAID"))
    yield step(
        "partly",
        "fulfilment -> PARTIALLY_FULFILLED",
        lambda o: wix.set_fulfillment(o, "PARTIALLY_FULFILLED", tracking),
    )
    yield step(
        "ship",
        "fulfilment -> FULFILLED, tracking DL123456789IN",
        lambda o: wix.set_fulfillment(o, "FULFILLED", tracking),
    )
    yield step(
        "refund", "payment PAID -> FULLY_REFUNDED", lambda o: wix.set_payment(o, "FULLY_REFUNDED")
    )
    yield step("cancel", "order -> CANCELED (urgent)", lambda o: wix.set_status(o, "CANCELED"))
    yield step(
        "pending",
        "payment -> PENDING (not paid yet: no message)",
        lambda o: wix.set_payment(o, "PENDING"),
    )
    yield step(
        "pending", "payment PENDING -> DECLINED (urgent)", lambda o: wix.set_payment(o, "DECLINED")
    )
    yield step(
        "partly",
        "fulfilment -> FULFILLED (same customer, so ~6 s later)",
        lambda o: wix.set_fulfillment(o, "FULFILLED", tracking),
    )
    yield "[wix] nothing changes (a poll sends nothing)", lambda: None
    yield (
        "[whatsapp] Priya (+91 98200 00001, the owner) writes: 'Where is my order #1023?'",
        lambda: whatsapp.post_inbound_text(OWNER_WA_ID, "Where is my order #1023?", name="Priya"),
    )
    yield (
        "[whatsapp] a stranger (+91 98111 22233) writes: 'order no. 1023'",
        lambda: whatsapp.post_inbound_text(STRANGER_WA_ID, "order no. 1023", name="Stranger"),
    )


def _pick_orders(wix: WixSandbox) -> dict[str, str]:
    """Choose seeded orders by their state, each with a phone WhatsApp can reach."""
    reachable = []
    for order_id in wix.order_ids():
        order = parse_order(wix.order(order_id))
        phone = phones.recipient_for(order, "IN").e164 or ""
        # India first: the shipped rate card prices India; other markets would show "unknown" cost.
        if order.number != "1023" and phone.startswith("+91") and order.status == "APPROVED":
            reachable.append(order)
    wanted: dict[str, Callable[[Any], bool]] = {
        "unpaid": lambda o: o.payment_status == "NOT_PAID",
        "pending": lambda o: o.payment_status == "NOT_PAID",
        "ship": lambda o: o.payment_status == "PAID" and o.fulfillment_status == "NOT_FULFILLED",
        "partly": lambda o: o.payment_status == "PAID" and o.fulfillment_status == "NOT_FULFILLED",
        "refund": lambda o: o.payment_status == "PAID",
        "cancel": lambda o: o.payment_status == "PAID",
    }
    picks: dict[str, str] = {}
    used_phones: set[str] = set()
    for key, fits in wanted.items():
        for order in reachable:
            phone = phones.recipient_for(order, "IN").e164 or ""
            if order.id not in picks.values() and phone not in used_phones and fits(order):
                picks[key] = order.id
                used_phones.add(phone)
                break
        else:
            raise RuntimeError(f"the demo seed has no order for step {key!r}")
    return picks


def _number(wix: WixSandbox, order_id: str) -> str:
    return str(wix.order(order_id).get("number"))


class _Printer:
    """Prints each message the WhatsApp sandbox accepts, as it arrives."""

    def __init__(self, whatsapp: WhatsAppSandbox) -> None:
        self._whatsapp = whatsapp
        self._shown = 0

    def flush(self) -> None:
        messages = self._whatsapp.sent_messages()
        for message in messages[self._shown :]:
            print(_describe(message))
        self._shown = len(messages)


def _describe(message: SentMessage) -> str:
    to = phones.mask(message.to)
    if message.type == "template":
        params = ", ".join(message.body_params)
        button = f" button: {message.button_suffix}" if message.button_suffix else ""
        return f"   -> WhatsApp to {to}: template {message.template} [{message.language}] ({params}){button}"
    text = (message.text or "").replace("\n", "\n      | ")
    return f"   -> WhatsApp reply to {to}:\n      | {text}"


def _pause(seconds: float, deadline: float | None, printer: _Printer) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not _past(deadline):
        printer.flush()
        time.sleep(0.1)
    printer.flush()


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _wait(condition: Callable[[], bool], deadline: float | None, *, limit: float) -> None:
    end = time.monotonic() + limit
    while not condition():
        if _past(deadline) or time.monotonic() > end:
            return
        time.sleep(0.1)


def _baseline_done(runtime: Runtime) -> bool:
    with runtime.engine.connect() as conn:
        state = orders.get_store_state(conn, STORE)
    return state is not None and state.baseline_at is not None


def _print_summary(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        rows = ledger.rows(conn)
    print("\nCost summary (the same report as `notifier costs --group-by template`):\n")
    print(costs.to_table(costs.build_report(rows, group_by="template")))
    print(
        "\nA utility template to a +91 number outside a service window is charged at the rate card's"
        " 0.115 INR; replies inside the customer's window are free."
    )
    print(f"Read it again with: notifier costs --database-url {runtime.settings.database_url}")
