"""sync_store against the Wix and WhatsApp sandboxes over loopback: baseline, watermark, diff, outbox.

The sandboxes and the daemon share the test's ``clock``, so every ``updatedDate`` Wix stamps and
every watermark the daemon stores is a value the test chose.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select
from structlog.testing import capture_logs

from notifier.bootstrap import Runtime, build
from notifier.dispatch_outcomes import DispatchResult
from notifier.domain import PollPage, Tracking
from notifier.sandbox.harness import Sandboxes, sandbox_settings
from notifier.store import ledger, orders
from notifier.store.tables import messages, poll_runs
from notifier.sync import sync_store
from notifier.wix import WixClient
from notifier.wix_parse import format_datetime
from tests.conftest import Clock

# -- helpers shared with test_dispatch.py and test_poll_once.py ------------------------------


def order_guid(number: int) -> str:
    """A stable Wix-shaped GUID for the hand-built order with this number."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"notifier-test-order/{number}"))


def india_phone(number: int) -> str:
    """A distinct valid Indian mobile per order, so recipient spacing never links two orders."""
    return f"+91 98{number:08d}"


def wix_order(
    number: int | None,
    payment: str = "NOT_PAID",
    fulfillment: str = "NOT_FULFILLED",
    *,
    created: datetime,
    updated: datetime | None = None,
    order_id: str | None = None,
    first_name: str = "Priya",
    last_name: str = "Sharma",
    phone: str | None = None,
    country: str = "IN",
    language: str = "en",
    status: str = "APPROVED",
) -> dict[str, Any]:
    """A raw order shaped like tests/data/wix/search-orders-response.json (REST names)."""
    guid = order_id or order_guid(number if number is not None else 0)
    contact = {"firstName": first_name, "lastName": last_name}
    if number is not None or phone is not None:
        contact["phone"] = phone if phone is not None else india_phone(number or 0)
    address = {"country": country, "city": "Mumbai", "addressLine": "1 Market Street"}
    raw: dict[str, Any] = {
        "id": guid,
        "createdDate": format_datetime(created),
        "updatedDate": format_datetime(updated or created),
        "status": status,
        "paymentStatus": payment,
        "fulfillmentStatus": fulfillment,
        "buyerLanguage": language,
        "currency": "INR",
        "priceSummary": {"total": {"amount": "1299.00", "formattedAmount": "₹1,299.00"}},
        "lineItems": [
            {"productName": {"original": "Classic Cotton Kurta"}, "quantity": 2},
        ],
        "billingInfo": {"address": address, "contactDetails": contact},
        "archived": False,
    }
    if number is not None:
        raw["number"] = str(number)
    return raw


def make_runtime(boxes: Sandboxes, engine: Engine, clock: Clock, **store_overrides: Any) -> Runtime:
    """The real composition root, pointed at the sandboxes, with the test's clock and DB."""
    settings = sandbox_settings(boxes, str(engine.url), **store_overrides)
    runtime = build(settings, clock=clock, engine=engine, rng=random.Random(7))
    runtime.refresh_templates()
    return runtime


def drain(runtime: Runtime) -> DispatchResult:
    """Dispatch until nothing due is left (what ``poll_once`` does), summing the counts."""
    total = DispatchResult()
    while True:
        step = runtime.dispatch()
        for name, value in vars(step).items():
            setattr(total, name, getattr(total, name) + value)
        if step.sent + step.failed + step.skipped + step.retried == 0:
            return total


def message_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every outbox row, oldest first, as plain dicts."""
    with engine.connect() as conn:
        rows = conn.execute(select(messages).order_by(messages.c.id))
        return [dict(r._mapping) for r in rows]


def searches(boxes: Sandboxes) -> list[dict[str, Any]]:
    """The ``search`` objects of every Search Orders request the Wix sandbox received."""
    return [
        body["search"]
        for method, path, body in list(boxes.wix.requests)
        if method == "POST" and path.endswith("/orders/search")
    ]


@pytest.fixture
def runtime(boxes: Sandboxes, engine: Engine, clock: Clock) -> Iterator[Runtime]:
    built = make_runtime(boxes, engine, clock)
    yield built
    built.close()


# -- BR-01 ------------------------------------------------------------------------------------

BR01_MARK = datetime(2025, 3, 10, 11, 59, tzinfo=UTC)
BR01_CHANGE_AT = datetime(2025, 3, 10, 12, 0, 5, tzinfo=UTC)


def _br01_store(boxes: Sandboxes, runtime: Runtime, clock: Clock) -> None:
    """150 NOT_PAID/NOT_FULFILLED orders 10001–10150, baselined; 10020 sits inside the overlap."""
    clock.now = datetime(2025, 3, 10, 11, 59, 30, tzinfo=UTC)
    first_created = BR01_CHANGE_AT - timedelta(days=10)
    raws = []
    for number in range(10001, 10151):
        created = first_created + timedelta(minutes=(number - 10001) * 30)
        updated = {10150: BR01_MARK, 10020: BR01_MARK - timedelta(seconds=30)}.get(number)
        raws.append(wix_order(number, created=created, updated=updated))
    boxes.wix.add_orders(raws)
    baseline = runtime.sync_all()[0]
    assert baseline.ok
    assert baseline.baseline
    assert baseline.counts.orders_seen == 150
    clock.now = BR01_CHANGE_AT


def test_br01_a_old_order_paid_is_found_by_updated_date_and_cursor_paging(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """An order created 10 days ago that becomes PAID gets exactly one message; search is by updatedDate."""
    _br01_store(boxes, runtime, clock)
    boxes.wix.set_payment(order_guid(10003), "PAID")
    assert boxes.wix.order(order_guid(10003))["updatedDate"] == "2025-03-10T12:00:05.000Z"
    before = len(searches(boxes))

    result = runtime.sync_all()[0]
    drain(runtime)

    baseline_pages = searches(boxes)[:before]
    assert len(baseline_pages) == 2  # 150 orders: the cursor was followed to the second page
    assert baseline_pages[1] == {
        "cursorPaging": {"limit": 100, "cursor": baseline_pages[1]["cursorPaging"]["cursor"]}
    }
    first = searches(boxes)[before]
    assert first["sort"] == [{"fieldName": "updatedDate", "order": "ASC"}]
    conditions = first["filter"]["$and"]
    assert {"updatedDate": {"$gte": "2025-03-10T11:57:00.000Z"}} in conditions  # mark − 2 min
    assert result.ok
    assert result.counts.events == 1
    assert result.counts.queued == 1
    sent = boxes.whatsapp.sent_messages()
    assert [(m.template, m.body_params[1]) for m in sent] == [("order_payment_received", "10003")]


def test_br01_b_failed_second_page_keeps_the_watermark_and_next_run_sends_once(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """A 504 on page 2 records a failed run, keeps the mark; the next run sends one message per order."""
    _br01_store(boxes, runtime, clock)
    changed = list(range(10001, 10102))  # 101 changes: two pages of search results
    for number in changed:
        clock.advance(milliseconds=1)
        boxes.wix.set_payment(order_guid(number), "PAID")
    store = runtime.stores[0]

    class FailsOnSecondPage:
        """The real client; the sandbox is told to answer 504 once page 1 has been read."""

        def __init__(self, client: WixClient) -> None:
            self.client = client

        def search_pages(self, since: datetime | None) -> Iterator[PollPage]:
            for index, page in enumerate(self.client.search_pages(since)):
                yield page
                if index == 0:
                    boxes.wix.fail_next(504, count=3, path_contains="search")

        def tracking_for_orders(self, order_ids: Iterable[str]) -> dict[str, tuple[Tracking, ...]]:
            return self.client.tracking_for_orders(order_ids)

    with engine.connect() as conn:
        mark_before = orders.get_store_state(conn, store.settings.name)
    failed = sync_store(store.settings, FailsOnSecondPage(store.wix), engine, clock)
    drain(runtime)

    assert not failed.ok
    assert "504" in (failed.error or "")
    with engine.connect() as conn:
        state = orders.get_store_state(conn, store.settings.name)
        last_run = conn.execute(select(poll_runs).order_by(poll_runs.c.id.desc())).first()
    assert mark_before is not None
    assert state is not None
    assert state.watermark == mark_before.watermark == BR01_MARK
    assert last_run is not None
    assert last_run.ok is False
    assert last_run.pages == 1

    clock.advance(seconds=10)
    recovered = runtime.sync_all()[0]
    drain(runtime)
    assert recovered.ok
    numbers = sorted(int(m.body_params[1]) for m in boxes.whatsapp.sent_messages())
    assert numbers == changed
    with engine.connect() as conn:
        moved = orders.get_store_state(conn, store.settings.name)
    assert moved is not None
    assert moved.watermark is not None
    assert moved.watermark > BR01_MARK


def test_br01_c_order_returned_by_the_overlap_without_change_sends_nothing(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """10020, re-read only because of the overlap, with unchanged statuses, gets no message."""
    _br01_store(boxes, runtime, clock)
    boxes.wix.set_payment(order_guid(10003), "PAID")

    result = runtime.sync_all()[0]
    drain(runtime)

    assert result.counts.orders_seen == 3  # 10020 and 10150 from the overlap, plus 10003
    assert result.counts.events == 1
    assert [row["order_number"] for row in message_rows(engine)] == ["10003"]
    assert all(m.body_params[1] != "10020" for m in boxes.whatsapp.sent_messages())


# -- BR-03 (b) ----------------------------------------------------------------------------------


def test_br03_b_flip_flopping_fulfilment_notifies_shipped_once(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """FULFILLED → NOT_FULFILLED → FULFILLED over three polls produces one "shipped" message."""
    boxes.wix.add_orders([wix_order(10077, "PAID", created=clock() - timedelta(days=1))])
    runtime.sync_all()
    for state in ("FULFILLED", "NOT_FULFILLED", "FULFILLED"):
        clock.advance(seconds=30)
        boxes.wix.set_fulfillment(order_guid(10077), state)
        assert runtime.sync_all()[0].ok
        drain(runtime)

    shipped = [m for m in boxes.whatsapp.sent_messages() if m.template == "order_shipped"]
    assert len(shipped) == 1
    assert len(boxes.whatsapp.sent_messages()) == 1


# -- BR-04 --------------------------------------------------------------------------------------


def test_br04_pending_is_never_paid_over_four_polls(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """10090 NOT_PAID, PENDING, PENDING, PAID: one payment message, on the PAID poll; 10091 none."""
    created = clock() - timedelta(days=2)
    boxes.wix.add_orders(
        [
            wix_order(10090, "NOT_PAID", created=created),
            wix_order(10091, "PENDING", created=created),
        ]
    )
    runtime.sync_all()
    script = [
        {10090: "PENDING", 10091: "NOT_PAID"},
        {10090: "PENDING"},
        {10090: "PAID"},
    ]
    sent_per_poll = []
    for changes in script:
        clock.advance(seconds=30)
        for number, payment in changes.items():
            boxes.wix.set_payment(order_guid(number), payment)
        runtime.sync_all()
        sent_per_poll.append(drain(runtime).sent)

    assert sent_per_poll == [0, 0, 1]
    sent = boxes.whatsapp.sent_messages()
    assert [(m.template, m.body_params[1]) for m in sent] == [("order_payment_received", "10090")]
    assert {row["order_number"] for row in message_rows(engine)} == {"10090"}


# -- BR-05 --------------------------------------------------------------------------------------


def _br05_orders(created: datetime) -> list[dict[str, Any]]:
    states = (
        [("PAID", "FULFILLED")] * 120
        + [("PAID", "NOT_FULFILLED")] * 80
        + [("NOT_PAID", "NOT_FULFILLED")] * 50
    )
    return [
        wix_order(10001 + index, payment, fulfilment, created=created + timedelta(minutes=index))
        for index, (payment, fulfilment) in enumerate(states)
    ]


def test_br05_first_poll_is_a_baseline(boxes: Sandboxes, engine: Engine, clock: Clock) -> None:
    """Empty DB + 250 orders: no sends, no ledger, 250 snapshots, a mark, one baseline_created event."""
    boxes.wix.add_orders(_br05_orders(clock() - timedelta(days=30)))
    runtime = make_runtime(boxes, engine, clock)
    try:
        with capture_logs() as logs:
            result = runtime.sync_all()[0]
            drain(runtime)
    finally:
        runtime.close()

    assert result.ok
    assert result.baseline
    assert boxes.whatsapp.sent_messages() == []
    with engine.connect() as conn:
        assert ledger.rows(conn) == []
        assert orders.count_snapshots(conn, "sandbox-store") == 250
        state = orders.get_store_state(conn, "sandbox-store")
    assert state is not None
    assert state.watermark is not None
    assert state.baseline_at is not None
    baselines = [e for e in logs if e["event"] == "baseline_created"]
    assert len(baselines) == 1
    assert baselines[0]["count"] == 250
    assert message_rows(engine) == []


def test_br05_after_the_baseline_one_change_sends_one_and_a_restart_does_not_rebaseline(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """10200 NOT_FULFILLED→FULFILLED sends 1; a new runtime on the same DB does not re-baseline."""
    boxes.wix.add_orders(_br05_orders(clock() - timedelta(days=30)))
    first = make_runtime(boxes, engine, clock)
    first.sync_all()
    clock.advance(minutes=1)
    boxes.wix.set_fulfillment(order_guid(10200), "FULFILLED")
    first.sync_all()
    assert drain(first).sent == 1
    first.close()
    sent = boxes.whatsapp.sent_messages()
    assert [(m.template, m.body_params[1]) for m in sent] == [("order_shipped", "10200")]

    restarted = make_runtime(boxes, engine, clock)
    try:
        clock.advance(minutes=1)
        with capture_logs() as logs:
            result = restarted.sync_all()[0]
            drain(restarted)
    finally:
        restarted.close()
    assert result.ok
    assert not result.baseline
    assert not [e for e in logs if e["event"] == "baseline_created"]
    assert len(boxes.whatsapp.sent_messages()) == 1


def test_br05_an_order_first_seen_after_the_baseline_follows_the_normal_rules(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """An order that leaves INITIALIZED (never searchable) after the baseline gets its payment message."""
    created = clock() - timedelta(days=3)
    boxes.wix.add_orders(
        [
            wix_order(10001, "PAID", "FULFILLED", created=created),
            wix_order(10251, "PAID", created=created, status="INITIALIZED"),
        ]
    )
    assert runtime.sync_all()[0].counts.orders_seen == 1
    clock.advance(minutes=1)
    boxes.wix.set_status(order_guid(10251), "APPROVED")

    result = runtime.sync_all()[0]
    drain(runtime)

    assert result.ok
    assert not result.baseline
    sent = boxes.whatsapp.sent_messages()
    assert [(m.template, m.body_params[1]) for m in sent] == [("order_payment_received", "10251")]


def test_br01_change_seen_late_by_search_is_caught_by_the_overlap(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """A change Search shows 30 s late, after a later change moved the mark, is still sent once."""
    created = clock() - timedelta(days=10)
    boxes.wix.add_orders([wix_order(n, created=created) for n in (10003, 10004)])
    runtime.sync_all()
    clock.advance(minutes=1)
    boxes.wix.freeze_visibility(30)
    boxes.wix.set_payment(order_guid(10003), "PAID")  # Search keeps the old version for 30 s
    boxes.wix.freeze_visibility(0)
    clock.advance(seconds=5)
    boxes.wix.set_payment(order_guid(10004), "PAID")
    clock.advance(seconds=5)
    runtime.sync_all()
    drain(runtime)
    assert [m.body_params[1] for m in boxes.whatsapp.sent_messages()] == ["10004"]

    clock.advance(seconds=30)
    runtime.sync_all()
    drain(runtime)
    clock.advance(seconds=30)
    runtime.sync_all()
    drain(runtime)

    assert [m.body_params[1] for m in boxes.whatsapp.sent_messages()] == ["10004", "10003"]


def test_br03_a_two_concurrent_first_polls_both_complete_without_sending(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """Two sync_store calls racing on an empty DB both finish (no duplicate-key crash) and send 0."""
    boxes.wix.add_orders([wix_order(10077, "PAID", created=clock() - timedelta(days=1))])
    store = runtime.stores[0]
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def first_poll() -> None:
        start.wait()
        try:
            outcomes.append(sync_store(store.settings, store.wix, engine, clock))
        except Exception as exc:  # reported by the main thread
            outcomes.append(exc)

    threads = [threading.Thread(target=first_poll) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    drain(runtime)

    assert [getattr(o, "ok", o) for o in outcomes] == [True, True]
    assert boxes.whatsapp.sent_messages() == []
    with engine.connect() as conn:
        assert orders.count_snapshots(conn, "sandbox-store") == 1


# -- one page, one write of each kind, one tracking call --------------------------------------


def _wix_calls_after(boxes: Sandboxes, before: int) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _ in list(boxes.wix.requests)[before:]]


def test_shipped_orders_of_a_page_share_one_tracking_request(
    boxes: Sandboxes, runtime: Runtime, clock: Clock
) -> None:
    """Two orders shipped and one paid on one page: one List-fulfilments call for the two shipped
    ids, no per-order GET, and each shipped message carries its own order's tracking number."""
    created = clock() - timedelta(days=1)
    boxes.wix.add_orders([wix_order(n, created=created) for n in (10301, 10302, 10303)])
    runtime.sync_all()
    clock.advance(seconds=30)
    for number in (10301, 10302):
        tracking = Tracking(f"TRK{number}", "DHL", None)
        boxes.wix.set_fulfillment(order_guid(number), "FULFILLED", tracking)
    boxes.wix.set_payment(order_guid(10303), "PAID")
    before = boxes.wix.request_count

    result = runtime.sync_all()[0]
    drain(runtime)

    assert result.ok
    assert result.counts.queued == 3
    assert _wix_calls_after(boxes, before) == [
        ("POST", "/ecom/v1/orders/search"),
        ("POST", "/ecom/v1/fulfillments/list-by-ids"),
    ]
    _, _, body = boxes.wix.requests[-1]
    assert sorted(body["orderIds"]) == sorted(order_guid(n) for n in (10301, 10302))
    shipped = {
        m.body_params[1]: m.button_suffix
        for m in boxes.whatsapp.sent_messages()
        if m.template == "order_shipped"
    }
    assert shipped == {"10301": "TRK10301", "10302": "TRK10302"}


def test_failed_tracking_request_still_queues_with_the_order_number_in_the_button(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """List-fulfilments answering 503 to every try does not fail the poll: the shipped message is
    queued as when an order has no tracking (button suffix = order number), tracking.unavailable
    is logged."""
    boxes.wix.add_orders([wix_order(10311, "PAID", created=clock() - timedelta(days=1))])
    runtime.sync_all()
    clock.advance(seconds=30)
    boxes.wix.set_fulfillment(order_guid(10311), "FULFILLED", Tracking("TRK9", "DHL", None))
    boxes.wix.fail_next(503, count=3, path_contains="list-by-ids")  # a 5xx is tried 3 times

    with capture_logs() as logs:
        result = runtime.sync_all()[0]
    drain(runtime)

    assert result.ok
    assert result.counts.queued == 1
    [sent] = boxes.whatsapp.sent_messages()
    assert (sent.template, sent.button_suffix) == ("order_shipped", "10311")
    unavailable = [e for e in logs if e["event"] == "tracking.unavailable"]
    assert [e["order_id"] for e in unavailable] == [order_guid(10311)]
    assert "503" in unavailable[0]["error"]


def test_skipped_rows_of_a_page_get_a_zero_ledger_estimate_once(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """One page with a sendable and an invalid phone: a queued row and a skipped row, the skipped
    one with a zero ledger estimate; the overlap's re-read of both adds no row of either kind."""
    created = clock() - timedelta(days=1)
    boxes.wix.add_orders(
        [wix_order(10321, created=created), wix_order(10322, created=created, phone="12345")]
    )
    runtime.sync_all()
    clock.advance(seconds=30)
    for number in (10321, 10322):
        boxes.wix.set_payment(order_guid(number), "PAID")

    with capture_logs() as logs:
        first = runtime.sync_all()[0]
    clock.advance(seconds=10)
    again = runtime.sync_all()[0]

    assert (first.counts.queued, again.counts.orders_seen, again.counts.queued) == (2, 2, 0)
    rows = message_rows(engine)
    assert [(r["order_number"], r["status"], r["error_title"]) for r in rows] == [
        ("10321", "queued", None),
        ("10322", "skipped", "invalid phone"),
    ]
    with engine.connect() as conn:
        [estimate] = ledger.rows(conn)
    assert (estimate.message_id, estimate.status, estimate.cost) == (
        rows[1]["id"],
        "skipped",
        Decimal(0),
    )
    assert [e["event"] for e in logs if e["event"].startswith("message.")] == [
        "message.queued",
        "message.skipped",
    ]
