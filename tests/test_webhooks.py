"""Status and lean/unknown webhooks over HTTP: BR-11 (131047), BR-13, BR-17, BR-24, orphans.

Statuses are posted by hand (the sandbox's automatic status webhooks are switched off by clearing
its ``webhook_url`` while the daemon sends), so each test controls exactly what Meta "said".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from structlog.testing import capture_logs

from notifier import inbound
from notifier.sandbox import whatsapp_templates as meta
from notifier.sandbox.harness import Sandboxes
from notifier.scheduler import drain_webhooks
from notifier.store import inbox
from notifier.store.tables import (
    inbound_messages,
    ledger,
    messages,
    status_events,
    webhook_receipts,
)
from tests.conftest import Clock
from tests.test_sync import make_runtime
from tests.test_web import (
    NOA,
    NOA_REPLY,
    OWNER,
    LiveDaemon,
    live_daemon,
    sent_status_bodies,
    wait_until,
)

FREE_CS = {
    "pricing_model": "PMP",
    "category": "utility",
    "type": "free_customer_service",
    "billable": False,
}
REGULAR = {"pricing_model": "PMP", "category": "utility", "type": "regular", "billable": True}
DE_RATE_CARD = """
[[rate]]
market = "DE"
category = "utility"
currency = "EUR"
amount = "0.0456"
effective_from = 2025-07-01
"""


@pytest.fixture
def daemon(engine: Engine, clock: Clock) -> Iterator[LiveDaemon]:
    with live_daemon(engine, clock) as running:
        yield running


@pytest.fixture
def de_daemon(engine: Engine, clock: Clock, tmp_path: Path) -> Iterator[LiveDaemon]:
    """The daemon with a store rate-card override: utility/DE = 0.0456 EUR from 2025-07-01."""
    card = tmp_path / "rates-de.toml"
    card.write_text(DE_RATE_CARD, encoding="utf-8")
    with live_daemon(engine, clock, rate_card_path=card) as running:
        yield running


def _send_templates(daemon: LiveDaemon, clock: Clock, wa_id: str, count: int) -> list[str]:
    """Queue and dispatch ``count`` templates to ``wa_id`` (7 s apart), with no automatic
    statuses; returns their wamids in order."""
    daemon.whatsapp.webhook_url = None
    wamids = []
    for index in range(count):
        daemon.queue_template(wa_id, f"test:{wa_id}:{index}")
        assert daemon.runtime.dispatch().sent == 1
        wamids.append(daemon.sent_to(wa_id)[-1].wamid)
        clock.advance(seconds=7)
    daemon.whatsapp.webhook_url = daemon.url
    return wamids


def _status(
    daemon: LiveDaemon, wamid: str, status: str, wa_id: str = NOA, **extra: Any
) -> dict[str, Any]:
    return {**meta.status_item(wamid, status, daemon.clock(), wa_id, None), **extra}


def _post_statuses(daemon: LiveDaemon, statuses: list[dict[str, Any]]) -> None:
    assert daemon.whatsapp.post_statuses(statuses) == 200
    daemon.settle()


def _ledger_by_wamid(daemon: LiveDaemon) -> dict[str, Any]:
    wamid_of = {r["id"]: r["wamid"] for r in daemon.rows(messages)}
    return {wamid_of[r["message_id"]]: r for r in daemon.rows(ledger)}


# --- BR-13: a 200 send that later fails --------------------------------------------------------


def test_br13_failed_status_after_200_is_stored_and_never_retried(
    daemon: LiveDaemon, clock: Clock
) -> None:
    """131026 nine seconds after the 200: message failed with code/title/details, cost 0, no retry."""
    [wamid] = _send_templates(daemon, clock, NOA, 1)
    clock.advance(seconds=2)  # 9 s after the send
    failed = {
        "id": wamid,
        "status": "failed",
        "recipient_id": NOA,
        "errors": [
            {
                "code": 131026,
                "title": "Message undeliverable",
                "error_data": {"details": "Message Undeliverable."},
            }
        ],
    }
    with capture_logs() as logs:
        _post_statuses(daemon, [failed])
    row = daemon.message(wamid=wamid)
    assert (row["status"], row["error_code"], row["error_title"], row["error_details"]) == (
        "failed",
        131026,
        "Message undeliverable",
        "Message Undeliverable.",
    )
    assert row["failed_at"] == clock()
    [cost] = daemon.rows(ledger)
    assert (cost["confirmed_cost"], cost["status"]) == (Decimal(0), "failed")
    [event] = [e for e in logs if e["event"] == "message.failed"]
    assert (event["wamid"], event["code"], event["to"]) == (wamid, 131026, "+49•••••6789")
    clock.advance(hours=1)
    outcome = daemon.runtime.dispatch()
    assert (outcome.sent, outcome.retried) == (0, 0)
    assert len(daemon.sent_to(NOA)) == 1
    assert daemon.message(wamid=wamid)["attempts"] == 1


def test_br13_number_that_was_undeliverable_is_skipped_for_a_while(
    daemon: LiveDaemon, clock: Clock
) -> None:
    """Within unreachable_skip_days of a 131026, a new template to that number is skipped at 0."""
    daemon.whatsapp.mark_undeliverable(NOA)
    daemon.queue_template(NOA, "first")
    daemon.runtime.dispatch()
    daemon.settle()
    assert daemon.message(dedupe_key="first")["error_code"] == 131026
    clock.advance(days=1)
    daemon.queue_template(NOA, "second")
    daemon.runtime.dispatch()
    assert len(daemon.sent_to(NOA)) == 1
    second = daemon.message(dedupe_key="second")
    assert second["status"] == "skipped"
    [cost] = [r for r in daemon.rows(ledger) if r["message_id"] == second["id"]]
    assert cost["estimated_cost"] == Decimal(0)


# --- BR-11: a free-form reply rejected later with 131047 ---------------------------------------


def test_br11_131047_status_marks_the_text_reply_failed(daemon: LiveDaemon, clock: Clock) -> None:
    """A text reply accepted with 200, then failed 131047: failed, code and title stored, cost 0."""
    daemon.whatsapp.webhook_url = None
    message = meta.inbound_text_message(NOA, "wamid.IN.BR11", clock(), "10126")
    assert daemon.post_signed({"contacts": meta.contacts_for([message]), "messages": [message]})
    daemon.settle()
    [reply] = daemon.sent_to(NOA)
    assert (reply.type, reply.text) == ("text", NOA_REPLY)
    daemon.whatsapp.webhook_url = daemon.url
    failed = {
        "id": reply.wamid,
        "status": "failed",
        "errors": [{"code": 131047, "title": "Re-engagement message"}],
    }
    _post_statuses(daemon, [failed])
    row = daemon.message(wamid=reply.wamid)
    assert (row["kind"], row["status"], row["error_code"], row["error_title"]) == (
        "text",
        "failed",
        131047,
        "Re-engagement message",
    )
    [cost] = daemon.rows(ledger)
    assert cost["confirmed_cost"] == Decimal(0)


# --- BR-17: lean and unknown payloads ------------------------------------------------------------


def test_br17_lean_and_unknown_changes_in_one_post(daemon: LiveDaemon) -> None:
    """Orphan failed status, unsupported message and a text lookup in one POST: 200, each handled."""
    daemon.whatsapp.open_window(NOA, daemon.clock())
    changes = [
        {
            "value": {
                "contacts": [{"wa_id": NOA}],
                "statuses": [
                    {
                        "id": "wamid.UNKNOWN",
                        "status": "failed",
                        "recipient_id": NOA,
                        "errors": [{"code": 131026}],
                    }
                ],
            },
            "field": "messages",
        },
        {
            "value": {
                "messages": [
                    {
                        "from": NOA,
                        "id": "wamid.IN.2",
                        "type": "unsupported",
                        "errors": [{"code": 131051}],
                    }
                ]
            },
            "field": "messages",
        },
        {
            "value": {
                "contacts": [{"wa_id": NOA}],
                "messages": [
                    {"from": NOA, "id": "wamid.IN.3", "type": "text", "text": {"body": "10126"}}
                ],
            },
            "field": "messages",
        },
    ]
    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}]}
    with capture_logs() as logs:
        assert daemon.post_signed(json.dumps(body).encode()) == 200
        daemon.settle()
    [orphan] = [r for r in daemon.rows(status_events) if r["wamid"] == "wamid.UNKNOWN"]
    assert (orphan["wamid"], orphan["status"], orphan["applied"]) == (
        "wamid.UNKNOWN",
        "failed",
        False,
    )
    assert any(e["event"] == "status.orphan" for e in logs)
    kinds = {r["id"]: r["type"] for r in daemon.rows(inbound_messages)}
    assert kinds == {"wamid.IN.2": "unsupported", "wamid.IN.3": "text"}
    received = [e for e in logs if e["event"] == "inbound.received"]
    assert {(e["inbound_id"], e["intent"]) for e in received} == {
        ("wamid.IN.2", "other"),
        ("wamid.IN.3", "lookup"),
    }
    replies = {m.reply_to: m.text for m in daemon.sent_to(NOA)}
    assert replies == {"wamid.IN.2": inbound.NON_TEXT_REPLY, "wamid.IN.3": NOA_REPLY}
    assert not any(e["log_level"] in ("error", "critical") for e in logs), logs


def test_one_bad_item_does_not_spoil_the_batch(daemon: LiveDaemon, clock: Clock) -> None:
    """Junk statuses and messages beside good ones: the good status applies, the good text is
    answered, the POST is 200 and the receipt is processed."""
    [wamid] = _send_templates(daemon, clock, OWNER, 1)
    message = meta.inbound_text_message(OWNER, "wamid.IN.GOOD", clock(), "1023")
    value = {
        "statuses": [
            42,
            {"id": wamid},
            {"status": "read"},
            {"id": wamid, "status": "delivered", "timestamp": "not-a-time", "pricing": []},
            _status(daemon, wamid, "read", OWNER),
        ],
        "messages": [None, {"id": "wamid.IN.BAD", "type": 7}, {"from": OWNER}, message],
        "contacts": "not a list",
    }
    assert daemon.post_signed(value) == 200
    daemon.settle()
    assert daemon.message(wamid=wamid)["status"] == "read"
    assert [m.reply_to for m in daemon.sent_to(OWNER) if m.type == "text"] == ["wamid.IN.GOOD"]
    assert daemon.unprocessed() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"null",
        b'{"object":"page","entry":[]}',
        b'{"entry":{"changes":7}}',
        b'{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"x","value":1}]}]}',
        b'\xff\xfe{"entry":[]}',
    ],
    ids=["empty", "text", "list", "null", "page", "wrong-types", "unknown-field", "not-utf8"],
)
def test_br17_unreadable_or_unknown_payloads_get_200_and_are_kept(
    daemon: LiveDaemon, body: bytes
) -> None:
    """Any signed body, however odd, is stored, answered 200 and processed without a crash."""
    with capture_logs() as logs:
        assert daemon.post_signed(body) == 200
        daemon.settle()
    [receipt] = daemon.rows(webhook_receipts)
    assert receipt["processed_at"] is not None
    assert not any(e["event"] == "webhook_worker.crashed" for e in logs)


# --- statuses before their message --------------------------------------------------------------


def test_statuses_before_the_message_is_stored_are_applied_when_it_is(
    daemon: LiveDaemon, clock: Clock
) -> None:
    """sent+delivered for a wamid we have not stored are kept, then applied (and priced) on send."""
    first_wamid = "wamid.SBX.1"  # the sandbox numbers its wamids from 1
    pricing = {**REGULAR}
    _post_statuses(
        daemon,
        [
            _status(daemon, first_wamid, "sent", OWNER, pricing=pricing),
            _status(daemon, first_wamid, "delivered", OWNER, pricing=pricing),
        ],
    )
    assert [(r["status"], r["applied"]) for r in daemon.rows(status_events)] == [
        ("sent", False),
        ("delivered", False),
    ]
    assert _send_templates(daemon, clock, OWNER, 1) == [first_wamid]
    row = daemon.message(wamid=first_wamid)
    assert row["status"] == "delivered"
    assert all(r["applied"] for r in daemon.rows(status_events))
    [cost] = daemon.rows(ledger)
    assert (cost["confirmed_cost"], cost["currency"]) == (Decimal("0.115"), "INR")
    assert cost["pricing_raw"] == pricing


# --- monotonic statuses -----------------------------------------------------------------------


def test_late_sent_never_downgrades_read_and_failed_is_final(
    daemon: LiveDaemon, clock: Clock
) -> None:
    """read then a late sent/delivered stays read; failed then delivered stays failed."""
    read_one, failed_one = _send_templates(daemon, clock, OWNER, 2)
    _post_statuses(daemon, [_status(daemon, read_one, "read", OWNER)])
    _post_statuses(
        daemon,
        [
            _status(daemon, read_one, "sent", OWNER, pricing=REGULAR),
            _status(daemon, read_one, "delivered", OWNER, pricing=REGULAR),
        ],
    )
    _post_statuses(
        daemon,
        [
            _status(daemon, failed_one, "failed", OWNER, errors=[{"code": 131026}]),
            _status(daemon, failed_one, "delivered", OWNER, pricing=REGULAR),
        ],
    )
    assert daemon.message(wamid=read_one)["status"] == "read"
    assert daemon.message(wamid=failed_one)["status"] == "failed"
    assert _ledger_by_wamid(daemon)[failed_one]["confirmed_cost"] == Decimal(0)


def test_br24_delivered_after_read_is_still_charged_once(daemon: LiveDaemon, clock: Clock) -> None:
    """Out of order (read, then delivered with regular pricing) costs what in order costs."""
    in_order, out_of_order = _send_templates(daemon, clock, OWNER, 2)
    _post_statuses(
        daemon,
        [
            _status(daemon, in_order, "delivered", OWNER, pricing=REGULAR),
            _status(daemon, in_order, "read", OWNER),
        ],
    )
    _post_statuses(
        daemon,
        [
            _status(daemon, out_of_order, "read", OWNER),
            _status(daemon, out_of_order, "delivered", OWNER, pricing=REGULAR),
        ],
    )
    costs = _ledger_by_wamid(daemon)
    assert costs[in_order]["confirmed_cost"] == Decimal("0.115")
    assert costs[out_of_order]["confirmed_cost"] == Decimal("0.115")


# --- BR-24: charged once per delivered message, by pricing type ---------------------------------


def test_br24_ledger_charges_once_per_delivered_message(
    de_daemon: LiveDaemon, clock: Clock
) -> None:
    """A free_customer_service = 0, B regular = 0.0456 EUR once, C failed = 0; replays change
    nothing; the raw pricing is kept on the row."""
    a, b, c = _send_templates(de_daemon, clock, NOA, 3)
    a_statuses = [
        _status(de_daemon, a, "sent", pricing=FREE_CS),
        _status(de_daemon, a, "delivered", pricing=FREE_CS),
        _status(de_daemon, a, "read"),
    ]
    b_sent = [_status(de_daemon, b, "sent", pricing=REGULAR)]
    b_delivered = [_status(de_daemon, b, "delivered", pricing=REGULAR)] * 2
    c_statuses = [
        _status(de_daemon, c, "failed", errors=[meta.status_error(131026, "Undeliverable.")])
    ]
    _post_statuses(de_daemon, a_statuses)
    _post_statuses(de_daemon, b_sent)
    assert _ledger_by_wamid(de_daemon)[b]["confirmed_cost"] is None  # not delivered yet
    _post_statuses(de_daemon, b_delivered)
    _post_statuses(de_daemon, c_statuses)
    expected = {
        a: (Decimal(0), "read", FREE_CS),
        b: (Decimal("0.0456"), "delivered", REGULAR),
        c: (Decimal(0), "failed", None),
    }

    def ledger_state() -> dict[str, tuple[Any, ...]]:
        rows = _ledger_by_wamid(de_daemon)
        return {w: (r["confirmed_cost"], r["status"], r["pricing_raw"]) for w, r in rows.items()}

    assert ledger_state() == expected
    assert _ledger_by_wamid(de_daemon)[b]["currency"] == "EUR"
    everything = a_statuses + b_sent + b_delivered + c_statuses
    _post_statuses(de_daemon, everything[::-1])
    _post_statuses(de_daemon, everything)
    for item in everything:
        _post_statuses(de_daemon, [item])
    assert ledger_state() == expected
    assert de_daemon.message(wamid=b)["pricing"] == REGULAR
    total = sum(r["confirmed_cost"] for r in de_daemon.rows(ledger))
    assert total == Decimal("0.0456")


def test_br24_rate_is_picked_by_date(de_daemon: LiveDaemon, clock: Clock) -> None:
    """A delivery dated before the override's effective_from has no rate: cost unknown, not 0.0456."""
    [wamid] = _send_templates(de_daemon, clock, NOA, 1)
    before = clock() - timedelta(days=400)  # before 2025-07-01
    old = {**meta.status_item(wamid, "delivered", before, NOA, None), "pricing": REGULAR}
    _post_statuses(de_daemon, [old])
    row = _ledger_by_wamid(de_daemon)[wamid]
    assert (row["confirmed_cost"], row["confirmed_at"]) == (None, clock())


def test_deeply_nested_body_does_not_block_later_webhooks(daemon: LiveDaemon) -> None:
    """A signed body nested 100,000 deep is stored and skipped; the next message is still answered."""
    assert daemon.post_signed(b"[" * 100_000) == 200
    daemon.whatsapp.post_inbound_text(OWNER, "1023")
    wait_until(lambda: bool(daemon.sent_to(OWNER)), timeout=5, what="the reply to 1023")
    daemon.settle()
    nested = daemon.rows(webhook_receipts)[0]
    assert nested["processed_at"] is not None
    assert str(nested["error"]).startswith("invalid JSON")


def test_a_body_repeated_in_a_batch_or_a_later_one_is_stored_once(engine: Engine) -> None:
    """store_receipts keeps each distinct body once, within one batch and across batches."""
    now = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)
    with engine.begin() as conn:
        inbox.store_receipts(conn, [b'{"a":1}', b'{"b":2}', b'{"a":1}'], now=now)
    with engine.begin() as conn:
        inbox.store_receipts(conn, [b'{"b":2}', b'{"c":3}'], now=now)
    with engine.connect() as conn:
        stored = sorted(conn.execute(select(webhook_receipts.c.body)).scalars())
    assert stored == ['{"a":1}', '{"b":2}', '{"c":3}']


def test_the_scheduler_sweep_applies_a_backlog_larger_than_one_pass(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """The scheduler's webhook sweep (``drain_webhooks``) applies all 250 stored receipts, not
    just one pass's batch of 100, so a backlog left by a busy web process is caught up at once."""
    runtime = make_runtime(boxes, engine, clock)
    bodies = sent_status_bodies(boxes.whatsapp, "wamid.BACKLOG", 250)
    try:
        with engine.begin() as conn:
            inbox.store_receipts(conn, bodies, now=clock())
        assert drain_webhooks(runtime) == 250
        with engine.connect() as conn:
            assert inbox.unprocessed_receipts(conn, 1000) == []
    finally:
        runtime.close()
