"""Dispatcher against the WhatsApp sandbox over loopback: one send per transition, failures classified.

Orders come from the Wix sandbox through the real sync; the dispatcher sends through the real
WhatsApp client; status webhooks reach a real ``daemon_app`` served on loopback.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from structlog.testing import capture_logs

from notifier.bootstrap import Runtime
from notifier.daemon import daemon_app
from notifier.dispatch_outcomes import DispatchResult
from notifier.domain import Field, RenderedTemplate, Rule, SendResult, Tracking
from notifier.rules import DEFAULT_RULES
from notifier.sandbox.harness import Sandboxes
from notifier.serving import RunningServer, serve_in_thread
from notifier.store import inbox, ledger, registry
from notifier.sync import SyncResult, sync_store
from tests.conftest import Clock
from tests.test_sync import drain, make_runtime, message_rows, order_guid, wix_order

SHIPPED_3_PARAMS = {
    "name": "order_shipped",
    "language": "en",
    "status": "APPROVED",
    "category": "UTILITY",
    "parameter_format": "POSITIONAL",
    "components": [
        {"type": "BODY", "text": "Hi {{1}}, order {{2}} is on its way with {{3}}."},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "URL", "text": "Track", "url": "https://shop.example.com/track/{{1}}"}
            ],
        },
    ],
}


@pytest.fixture
def runtime(boxes: Sandboxes, engine: Engine, clock: Clock) -> Iterator[Runtime]:
    built = make_runtime(boxes, engine, clock)
    yield built
    built.close()


def baseline(boxes: Sandboxes, runtime: Runtime, clock: Clock, *raws: dict[str, Any]) -> None:
    """Put ``raws`` in the Wix sandbox and take the store's baseline (no messages)."""
    boxes.wix.add_orders(raws)
    assert runtime.sync_all()[0].baseline
    clock.advance(seconds=30)


def created(clock: Clock) -> datetime:
    return clock() - timedelta(days=2)


def ledger_rows(engine: Engine) -> list[ledger.LedgerRow]:
    with engine.connect() as conn:
        return ledger.rows(conn)


def template_alerts(engine: Engine) -> list[registry.Alert]:
    with engine.connect() as conn:
        return [a for a in registry.open_alerts(conn) if a.kind == "template"]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture
def webhooks(boxes: Sandboxes, runtime: Runtime) -> Iterator[RunningServer]:
    """The daemon's web app (role "web") on loopback; the sandbox posts its status webhooks there."""
    server = serve_in_thread(daemon_app(runtime, "web"))
    boxes.whatsapp.webhook_url = f"{server.url}/webhooks/whatsapp"
    yield server
    boxes.whatsapp.webhook_url = None
    server.stop()


# -- BR-03 (a) ----------------------------------------------------------------------------------


def test_br03_a_two_concurrent_passes_send_once(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """Two sync+dispatch passes racing on one DB for NOT_PAID→PAID: one send, one ledger row.

    The passes call ``sync_store`` directly: the poll lease (BR-20) would otherwise let only one
    of them poll, and this pins the backstop behind it, the outbox's dedupe key and claim.
    """
    baseline(boxes, runtime, clock, wix_order(10077, created=created(clock)))
    boxes.wix.set_payment(order_guid(10077), "PAID")
    second = make_runtime(boxes, engine, clock)
    errors: list[BaseException] = []
    results: list[SyncResult] = []
    start = threading.Barrier(2)

    def one_pass(rt: Runtime) -> None:
        try:
            start.wait()
            results.append(sync_store(rt.stores[0].settings, rt.stores[0].wix, engine, clock))
            drain(rt)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    before = boxes.wix.request_count
    boxes.wix.hang_next(2)  # both searches wait, so both passes read the change at once
    threads = [threading.Thread(target=one_pass, args=(rt,)) for rt in (runtime, second)]
    for thread in threads:
        thread.start()
    wait_for(lambda: boxes.wix.request_count >= before + 2)
    boxes.wix.release()
    for thread in threads:
        thread.join(30)
    second.close()

    assert errors == []
    assert [r.ok for r in results] == [True, True]
    assert sum(r.counts.queued for r in results) == 1
    assert len(boxes.whatsapp.sent_messages()) == 1
    assert len(ledger_rows(engine)) == 1
    assert len(message_rows(engine)) == 1


# -- BR-06 --------------------------------------------------------------------------------------


def test_br06_tracking_goes_in_the_url_button_not_the_body(
    boxes: Sandboxes, runtime: Runtime, clock: Clock
) -> None:
    """order_shipped is sent with body [name, "10126"] and the URL button suffix "TRK123"."""
    baseline(boxes, runtime, clock, wix_order(10126, "PAID", created=created(clock)))
    boxes.wix.set_fulfillment(order_guid(10126), "FULFILLED", Tracking("TRK123", "DHL", None))

    runtime.sync_all()
    drain(runtime)

    [sent] = boxes.whatsapp.sent_messages()
    assert (sent.template, sent.language) == ("order_shipped", "en")
    assert sent.body_params == ("Priya", "10126")
    assert sent.button_suffix == "TRK123"


def test_br06_api_132000_fails_each_message_and_alerts_once_per_template(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """Template changed after the refresh: 132000 → failed, code stored, cost 0, one alert for 3 orders."""
    numbers = (10126, 10127, 10128)
    baseline(
        boxes, runtime, clock, *(wix_order(n, "PAID", created=created(clock)) for n in numbers)
    )
    boxes.whatsapp.add_template(SHIPPED_3_PARAMS)
    for number in numbers:
        boxes.wix.set_fulfillment(order_guid(number), "FULFILLED", Tracking("TRK123", "DHL", None))

    runtime.sync_all()
    result = drain(runtime)

    assert result.failed == 3
    assert result.retried == 0
    assert boxes.whatsapp.sent_messages() == []
    rows = message_rows(engine)
    assert [(r["status"], r["error_code"], r["attempts"]) for r in rows] == [
        ("failed", 132000, 1)
    ] * 3
    assert [row.cost for row in ledger_rows(engine)] == [Decimal(0)] * 3
    assert [a.key for a in template_alerts(engine)] == ["template:order_shipped:en"]


def test_br06_refreshed_definition_rejects_the_count_mismatch_locally(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """After a registry refresh the pre-send check fails the message without any HTTP call."""
    baseline(boxes, runtime, clock, wix_order(10126, "PAID", created=created(clock)))
    boxes.whatsapp.add_template(SHIPPED_3_PARAMS)
    runtime.refresh_templates()
    boxes.wix.set_fulfillment(order_guid(10126), "FULFILLED", Tracking("TRK123", "DHL", None))
    runtime.sync_all()
    calls_before = runtime.whatsapp.request_count

    result = drain(runtime)

    assert result.failed == 1
    assert runtime.whatsapp.request_count == calls_before
    [row] = message_rows(engine)
    assert row["status"] == "failed"
    assert "expects 3 body parameters, got 2" in row["error_title"]
    assert [r.cost for r in ledger_rows(engine)] == [Decimal(0)]
    assert len(template_alerts(engine)) == 1


# -- BR-07 --------------------------------------------------------------------------------------


def test_br07_empty_first_name_falls_back_to_the_last_name(
    boxes: Sandboxes, runtime: Runtime, clock: Clock
) -> None:
    """10131 with firstName "" and lastName "Ferreira" is sent with customer_name "Ferreira"."""
    order = wix_order(
        10131,
        created=created(clock),
        first_name="",
        last_name="Ferreira",
        phone="+49 151 23456789",
        country="DE",
    )
    baseline(boxes, runtime, clock, order)
    boxes.wix.set_payment(order_guid(10131), "PAID")

    runtime.sync_all()
    assert drain(runtime).sent == 1

    [sent] = boxes.whatsapp.sent_messages()
    assert sent.to == "+4915123456789"
    assert sent.body_params[:2] == ("Ferreira", "10131")
    assert all(param.strip() for param in sent.body_params)


def test_br07_missing_order_number_is_skipped_and_logged(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """An order without a number is not sent: the message is skipped and the reason is logged."""
    order = wix_order(None, created=created(clock), order_id=order_guid(1), phone="+919820010131")
    baseline(boxes, runtime, clock, order)
    boxes.wix.set_payment(order_guid(1), "PAID")

    with capture_logs() as logs:
        runtime.sync_all()
        drain(runtime)

    assert boxes.whatsapp.sent_messages() == []
    [row] = message_rows(engine)
    assert row["status"] == "skipped"
    assert "order_number" in row["error_title"]
    skipped = [e for e in logs if e["event"] == "message.skipped"]
    assert len(skipped) == 1
    assert "order_number" in skipped[0]["reason"]
    assert [r.cost for r in ledger_rows(engine)] == [Decimal(0)]


# -- BR-10 --------------------------------------------------------------------------------------


def test_br10_runtime_132001_fails_without_retry_and_alerts_once(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """A 132001 from the API: failed, never retried, cost 0, one alert for the template."""
    numbers = (10140, 10141)
    baseline(boxes, runtime, clock, *(wix_order(n, created=created(clock)) for n in numbers))
    boxes.whatsapp.fail_next(132001, count=2)
    for number in numbers:
        boxes.wix.set_payment(order_guid(number), "PAID")

    runtime.sync_all()
    assert drain(runtime).failed == 2
    clock.advance(hours=1)
    assert drain(runtime).sent == 0

    rows = message_rows(engine)
    assert [(r["status"], r["error_code"], r["attempts"]) for r in rows] == [
        ("failed", 132001, 1)
    ] * 2
    assert boxes.whatsapp.sent_messages() == []
    assert [r.cost for r in ledger_rows(engine)] == [Decimal(0)] * 2
    assert [a.key for a in template_alerts(engine)] == ["template:order_payment_received:en"]


def _arabic_first(default_language: str) -> tuple[Rule, ...]:
    paid = Rule(
        Field.PAYMENT,
        "PAID",
        "order_payment_received",
        languages=("ar", default_language),
        params=("customer_name", "order_number", "total"),
    )
    return (paid, *(r for r in DEFAULT_RULES if r.template != "order_payment_received"))


def test_br10_buyer_language_ar_falls_back_to_the_existing_en_pair(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """buyerLanguage "ar" with rule languages ("ar", "en") and no ar template is sent in "en"."""
    runtime = make_runtime(boxes, engine, clock, rules=_arabic_first("en"))
    try:
        baseline(boxes, runtime, clock, wix_order(10150, created=created(clock), language="ar"))
        boxes.wix.set_payment(order_guid(10150), "PAID")
        runtime.sync_all()
        assert drain(runtime).sent == 1
    finally:
        runtime.close()

    [sent] = boxes.whatsapp.sent_messages()
    assert (sent.template, sent.language) == ("order_payment_received", "en")


def test_br10_no_fallback_when_the_default_pair_does_not_exist(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """With default "fr" (absent too), an "ar" order fails locally: no send, cost 0."""
    runtime = make_runtime(boxes, engine, clock, rules=_arabic_first("fr"), default_language="fr")
    try:
        baseline(boxes, runtime, clock, wix_order(10150, created=created(clock), language="ar"))
        boxes.wix.set_payment(order_guid(10150), "PAID")
        runtime.sync_all()
        assert drain(runtime).failed == 1
    finally:
        runtime.close()

    assert boxes.whatsapp.sent_messages() == []
    [row] = message_rows(engine)
    assert row["status"] == "failed"
    assert "not found" in row["error_title"]
    assert [r.cost for r in ledger_rows(engine)] == [Decimal(0)]


# -- BR-18 --------------------------------------------------------------------------------------


def test_br18_national_phone_is_sent_in_e164_with_the_billing_country(
    boxes: Sandboxes, runtime: Runtime, clock: Clock
) -> None:
    """Phone "0151 2345 6789" with billing country DE is sent to +4915123456789."""
    order = wix_order(10160, created=created(clock), phone="0151 2345 6789", country="DE")
    baseline(boxes, runtime, clock, order)
    boxes.wix.set_payment(order_guid(10160), "PAID")

    runtime.sync_all()
    drain(runtime)

    assert [m.to for m in boxes.whatsapp.sent_messages()] == ["+4915123456789"]


def test_br18_invalid_phone_is_skipped_with_a_warning_and_no_cost(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """Phone "12345" (DE) is not sent: status skipped, ledger cost 0, a warning naming the order."""
    order = wix_order(10161, created=created(clock), phone="12345", country="DE")
    baseline(boxes, runtime, clock, order)
    boxes.wix.set_payment(order_guid(10161), "PAID")

    with capture_logs() as logs:
        runtime.sync_all()
        drain(runtime)

    assert boxes.whatsapp.sent_messages() == []
    [row] = message_rows(engine)
    assert row["status"] == "skipped"
    assert row["error_title"] == "invalid phone"
    assert [r.cost for r in ledger_rows(engine)] == [Decimal(0)]
    warnings = [e for e in logs if e["log_level"] == "warning" and e.get("order_number") == "10161"]
    assert [e["event"] for e in warnings] == ["message.skipped"]


# -- retries, status webhooks, pricing ------------------------------------------------------------


def test_br12b_130429_once_then_success_sends_one_message_on_attempt_two(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """130429 once, then 200: the row is retried after its backoff and sent once, attempts 2."""
    baseline(boxes, runtime, clock, wix_order(10170, created=created(clock)))
    boxes.whatsapp.fail_next(130429)
    boxes.wix.set_payment(order_guid(10170), "PAID")
    runtime.sync_all()

    with capture_logs() as logs:
        first = drain(runtime)
    [queued] = message_rows(engine)
    assert (first.retried, first.sent) == (1, 0)
    assert queued["status"] == "queued"
    assert queued["error_code"] == 130429
    assert queued["next_attempt_at"] > clock()
    clock.now = queued["next_attempt_at"]
    second = drain(runtime)

    assert second.sent == 1
    [row] = message_rows(engine)
    assert row["status"] == "accepted"
    assert row["attempts"] == 2
    assert len(boxes.whatsapp.sent_messages()) == 1
    assert len(ledger_rows(engine)) == 1
    [retry] = [e for e in logs if e["event"] == "message.retry"]
    assert (retry["code"], retry["attempts"]) == (130429, 1)


def test_br13_undeliverable_status_webhook_fails_the_message_at_zero_cost(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock, webhooks: RunningServer
) -> None:
    """A 200 send later reported failed 131026: code, title and details stored, cost 0, no retry."""
    baseline(boxes, runtime, clock, wix_order(10180, created=created(clock)))
    boxes.whatsapp.mark_undeliverable("+919800010180")
    boxes.wix.set_payment(order_guid(10180), "PAID")
    runtime.sync_all()
    assert drain(runtime).sent == 1

    wait_for(lambda: message_rows(engine)[0]["status"] == "failed")
    [row] = message_rows(engine)
    assert row["error_code"] == 131026
    assert row["error_title"] == "Message undeliverable"
    assert row["error_details"] == "Message Undeliverable."
    [cost] = ledger_rows(engine)
    assert cost.confirmed_cost == Decimal(0)
    assert cost.status == "failed"
    clock.advance(hours=1)
    assert drain(runtime).sent == 0
    assert len(boxes.whatsapp.sent_messages()) == 1


def test_br24_cost_is_confirmed_once_on_delivery_despite_duplicate_webhooks(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock, webhooks: RunningServer
) -> None:
    """sent and delivered, each posted twice with regular pricing: one row charged 0.115 INR once."""
    boxes.whatsapp.duplicate_statuses = True
    baseline(boxes, runtime, clock, wix_order(10190, created=created(clock)))
    boxes.wix.set_payment(order_guid(10190), "PAID")
    runtime.sync_all()
    drain(runtime)

    wait_for(lambda: message_rows(engine)[0]["status"] == "delivered")
    assert boxes.whatsapp.wait_for_webhooks()
    wait_for(lambda: ledger_rows(engine)[0].confirmed_cost is not None)
    [row] = ledger_rows(engine)
    assert (row.confirmed_cost, row.currency, row.market) == (Decimal("0.115"), "INR", "IN")
    assert row.status == "delivered"
    posted = [a for a in boxes.whatsapp.webhook_log if a.status == 200]
    assert len(posted) == 4  # sent ×2, delivered ×2


class WebhooksBeforeResponse:
    """The real WhatsApp client, but its answer reaches the dispatcher only after Meta's status
    webhooks for that message were received and processed (a slow response, a fast webhook)."""

    def __init__(self, runtime: Runtime, boxes: Sandboxes) -> None:
        self.client = runtime.whatsapp
        self.boxes = boxes
        self.engine = runtime.engine

    def send_template(
        self, to: str, template: RenderedTemplate, *, callback_data: str
    ) -> SendResult:
        result = self.client.send_template(to, template, callback_data=callback_data)
        assert self.boxes.whatsapp.wait_for_webhooks()  # posted, so stored by the daemon
        wait_for(self._receipts_processed)
        return result

    def send_text(self, to: str, body: str, *, reply_to: str | None = None) -> SendResult:
        return self.client.send_text(to, body, reply_to=reply_to)

    def _receipts_processed(self) -> bool:
        with self.engine.connect() as conn:
            return inbox.unprocessed_receipts(conn) == []


@pytest.mark.parametrize("undeliverable", [False, True], ids=["delivered", "failed"])
def test_br13_status_webhook_processed_before_the_send_returns_is_not_lost(
    boxes: Sandboxes,
    runtime: Runtime,
    engine: Engine,
    clock: Clock,
    webhooks: RunningServer,
    undeliverable: bool,
) -> None:
    """Statuses applied while the send is still in flight survive it: final status and cost kept."""
    boxes.whatsapp.status_delay = 0
    baseline(boxes, runtime, clock, wix_order(10185, created=created(clock)))
    if undeliverable:
        boxes.whatsapp.mark_undeliverable("+919800010185")
    boxes.wix.set_payment(order_guid(10185), "PAID")
    runtime.sync_all()
    slow = dataclasses.replace(runtime.dispatcher, sender=WebhooksBeforeResponse(runtime, boxes))

    assert slow.dispatch_due().sent == 1

    [row] = message_rows(engine)
    [cost] = ledger_rows(engine)
    if undeliverable:
        assert (row["status"], row["error_code"]) == ("failed", 131026)
        assert (cost.status, cost.confirmed_cost) == ("failed", Decimal(0))
    else:
        assert row["status"] == "delivered"
        assert row["wamid"] is not None
        assert (cost.status, cost.confirmed_cost) == ("delivered", Decimal("0.115"))


# -- BR-12: throttling, pair rate, and the pacing of one recipient --------------------------------


def test_br12a_429_with_retry_after_2_twice_then_sent_once_with_one_ledger_row(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """Two 429s with Retry-After 2, then 200: each retry waits >= 2 s, the final state is sent,
    one message reaches WhatsApp, one ledger row, and every attempt is logged."""
    baseline(boxes, runtime, clock, wix_order(10111, created=created(clock)))
    boxes.whatsapp.fail_next(130429, count=2, http_status=429, retry_after=2)
    boxes.wix.set_payment(order_guid(10111), "PAID")
    runtime.sync_all()

    with capture_logs() as logs:
        for _ in range(2):
            assert drain(runtime).retried == 1
            [row] = message_rows(engine)
            assert row["status"] == "queued"
            assert row["next_attempt_at"] - clock() >= timedelta(seconds=2)
            clock.now = row["next_attempt_at"]
        assert drain(runtime).sent == 1

    [row] = message_rows(engine)
    assert (row["status"], row["attempts"]) == ("accepted", 3)
    assert len(boxes.whatsapp.sent_messages()) == 1
    assert len(ledger_rows(engine)) == 1
    retries = [e["attempts"] for e in logs if e["event"] == "message.retry"]
    [sent] = [e for e in logs if e["event"] == "message.sent"]
    assert (retries, sent["attempts"]) == ([1, 2], 3)


def test_br12c_paid_and_fulfilled_in_one_poll_go_in_order_6_s_apart(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """10111 turns PAID and FULFILLED in one poll, both for +4915123456789, and the sandbox refuses
    (131056) two sends to one number < 6 s apart: the first goes, the second waits 6 s, then goes;
    never refused, never reordered, even with several senders in flight."""
    assert runtime.dispatcher.concurrent_sends > 1
    phone = "+49 1512 3456789"
    boxes.whatsapp.pair_rate_limit()
    baseline(boxes, runtime, clock, wix_order(10111, created=created(clock), phone=phone))
    boxes.wix.set_payment(order_guid(10111), "PAID")
    boxes.wix.set_fulfillment(order_guid(10111), "FULFILLED", Tracking("TRK123", "DHL", None))
    runtime.sync_all()

    first = drain(runtime)
    clock.advance(seconds=6)
    second = drain(runtime)

    assert (first.sent, first.deferred, first.retried) == (1, 1, 0)
    assert (second.sent, second.retried) == (1, 0)
    sent = boxes.whatsapp.sent_messages()
    assert [m.to for m in sent] == ["+4915123456789"] * 2
    assert [m.template for m in sent] == ["order_payment_received", "order_shipped"]
    assert sent[1].at - sent[0].at >= timedelta(seconds=6)


def test_br12c_131056_is_retried_after_a_delay(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """A 131056 (another sender reached the number first) is transient: queued with a delay, then
    sent once."""
    baseline(boxes, runtime, clock, wix_order(10112, created=created(clock)))
    boxes.whatsapp.fail_next(131056)
    boxes.wix.set_payment(order_guid(10112), "PAID")
    runtime.sync_all()

    assert drain(runtime).retried == 1
    [row] = message_rows(engine)
    assert (row["status"], row["error_code"]) == ("queued", 131056)
    assert row["next_attempt_at"] > clock()
    clock.now = row["next_attempt_at"]
    assert drain(runtime).sent == 1
    assert len(boxes.whatsapp.sent_messages()) == 1


@pytest.mark.parametrize("senders", [1, 4])
def test_br12_stop_code_pauses_every_sender_and_requeues_the_rest(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock, senders: int
) -> None:
    """131048 (spam limit) on the first send: no retry, no failure; every row not already in flight
    is queued again with its attempt uncounted, one alert, and dispatch stays paused."""
    numbers = range(10150, 10158)
    baseline(boxes, runtime, clock, *(wix_order(n, created=created(clock)) for n in numbers))
    boxes.whatsapp.fail_next(131048)
    for number in numbers:
        boxes.wix.set_payment(order_guid(number), "PAID")
    runtime.sync_all()
    dispatcher = dataclasses.replace(runtime.dispatcher, concurrent_sends=senders)

    result = dispatcher.dispatch_due()

    in_flight = len(boxes.whatsapp.sent_messages())
    assert in_flight <= senders - 1
    assert (result.sent, result.retried, result.failed) == (in_flight, 0, 0)
    rows = message_rows(engine)
    queued = [r for r in rows if r["status"] == "queued"]
    assert len(queued) == len(rows) - in_flight
    assert {r["attempts"] for r in queued} == {0}
    with engine.connect() as conn:
        assert [a.kind for a in registry.open_alerts(conn)] == ["dispatch_paused"]
    assert dispatcher.dispatch_due() == DispatchResult()
