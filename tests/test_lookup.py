"""Customers ask, the daemon answers: order lookup end to end over HTTP through both sandboxes.

Owner gets product.md's reply exactly; anyone else gets a reply that discloses nothing; help,
non-text, STOP/START, the per-sender rate limit, Wix errors and the 24 h window (BR-11).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from structlog.testing import capture_logs

from notifier import inbound
from notifier.config import LookupSettings
from notifier.lookup import storable_text
from notifier.sandbox import whatsapp_templates as meta
from notifier.sandbox.whatsapp_server import SentMessage
from notifier.sandbox.wix_seed import seed_1023
from notifier.store.tables import inbound_messages, ledger, opt_outs
from tests.conftest import Clock
from tests.test_web import (
    NOA,
    NOA_REPLY,
    OWNER,
    SEED_GUID,
    SEED_REPLY,
    LiveDaemon,
    live_daemon,
)

STRANGER = "919811122233"
FORBIDDEN_WORDS = ("Priya", "Kurta", "1,299", "Paid", "Preparing", "Sharma", "1023")


@pytest.fixture
def daemon(engine: Engine, clock: Clock) -> Iterator[LiveDaemon]:
    with live_daemon(engine, clock) as running:
        yield running


def _texts(sent: list[SentMessage]) -> list[str | None]:
    return [m.text for m in sent]


# --- the seed order, from its owner --------------------------------------------------------------


def test_seed_guid_from_owner_gets_product_md_reply_exactly(daemon: LiveDaemon) -> None:
    """A text holding the seed order's GUID from +91 98200 00001 gets product.md's reply verbatim."""
    sent = daemon.ask(OWNER, f"Hi, what about {SEED_GUID}?", name="Priya")
    assert len(sent) == 1
    assert (sent[0].type, sent[0].text) == ("text", SEED_REPLY)


@pytest.mark.parametrize(
    "text",
    ["1023", "#1023", "order no. 1023.", "Where is my order #1023?", "  ( 1023 ) ", "१०२३"],
)
def test_seed_number_from_owner_gets_product_md_reply_exactly(
    daemon: LiveDaemon, text: str
) -> None:
    """The order number in any usual form (or Devanagari digits) gets product.md's reply verbatim."""
    sent = daemon.ask(OWNER, text, name="Priya")
    assert _texts(sent) == [SEED_REPLY]


def test_reply_quotes_the_inbound_message_and_is_free_in_the_window(daemon: LiveDaemon) -> None:
    """The reply is sent in context of the question, and its ledger row is free (service window)."""
    message_id = daemon.whatsapp.post_inbound_text(OWNER, "1023")
    daemon.settle()
    [sent] = daemon.sent_to(OWNER)
    assert sent.reply_to == message_id
    row = daemon.message(kind="text")
    assert row["dedupe_key"] == f"reply:{message_id}"
    [cost] = daemon.rows(ledger)
    assert (cost["estimated_cost"], cost["confirmed_cost"]) == (Decimal(0), Decimal(0))
    assert cost["free_reason"] == "free_customer_service"  # as Meta's delivered status said


# --- anyone else learns nothing -------------------------------------------------------------------


def test_stranger_reply_discloses_nothing_and_matches_a_missing_order(daemon: LiveDaemon) -> None:
    """GUID or number of Priya's order from another number: the same neutral text as no order."""
    replies = {
        text: _texts(daemon.ask(STRANGER, text))
        for text in (
            SEED_GUID,
            "1023",
            "order #99999",
            "ffffffff-5e6f-4a1b-8c2d-0123456789ab",
        )
    }
    assert all(reply == [inbound.NOT_FOUND_OR_NOT_YOURS] for reply in replies.values()), replies
    for word in FORBIDDEN_WORDS:
        assert word not in inbound.NOT_FOUND_OR_NOT_YOURS


def test_stranger_lookup_is_logged_as_not_owner(daemon: LiveDaemon) -> None:
    """A lookup of someone else's order logs lookup.not_owner with the sender masked."""
    with capture_logs() as logs:
        daemon.ask(STRANGER, "1023")
    [event] = [e for e in logs if e["event"] == "lookup.not_owner"]
    assert event["sender"] == "+91•••••2233"
    assert STRANGER not in str(logs)


@pytest.mark.parametrize(
    ("order_phone", "wa_id"),
    [("+55 11 98765-4321", "551187654321"), ("+54 11 2345-6789", "5491123456789")],
    ids=["brazil-without-9", "argentina-549"],
)
def test_br18_owner_recognised_across_number_forms(
    daemon: LiveDaemon, order_phone: str, wa_id: str
) -> None:
    """Brazil's 9th digit and Argentina's 549/54 forms are the same person as the order's phone."""
    order = copy.deepcopy(seed_1023())
    order["id"] = "c3d4e5f6-7081-4c3d-8e4f-2345678901cd"
    order["number"] = "20001"
    order["buyerInfo"]["contactDetails"]["phone"] = order_phone
    daemon.wix.add_orders([order])
    sent = daemon.ask(wa_id, "20001")
    assert _texts(sent) == [SEED_REPLY.replace("#1023", "#20001")]


# --- everything else gets an answer --------------------------------------------------------------


@pytest.mark.parametrize("text", ["hi", "Hello!", "thanks 🙏", "help"])
def test_greeting_gets_help_text(daemon: LiveDaemon, text: str) -> None:
    """A message naming no order gets the short help text, and Wix is not asked."""
    sent = daemon.ask(OWNER, text)
    assert _texts(sent) == [inbound.HELP_TEXT]
    assert daemon.wix.request_count == 0


def test_non_text_message_gets_non_text_reply(daemon: LiveDaemon) -> None:
    """An image gets the "please send text" reply and is stored with its type."""
    image = {
        "from": OWNER,
        "id": "wamid.IN.IMAGE.1",
        "timestamp": str(int(daemon.clock().timestamp())),
        "type": "image",
        "image": {"id": "1234", "mime_type": "image/jpeg"},
    }
    assert daemon.whatsapp.post_inbound([image]) == 200
    daemon.settle()
    assert _texts(daemon.sent_to(OWNER)) == [inbound.NON_TEXT_REPLY]
    [row] = daemon.rows(inbound_messages)
    assert (row["id"], row["type"], row["text"]) == ("wamid.IN.IMAGE.1", "image", None)


def test_missing_order_number_gets_not_found_reply(daemon: LiveDaemon) -> None:
    """An order number Wix does not have gets the neutral not-found text."""
    assert _texts(daemon.ask(OWNER, "order 4711")) == [inbound.NOT_FOUND_OR_NOT_YOURS]


# --- the per-sender rate limit ----------------------------------------------------------------


def test_eleventh_lookup_in_an_hour_is_refused_without_asking_wix(
    daemon: LiveDaemon, clock: Clock
) -> None:
    """Ten lookups are answered; the 11th within the hour gets TOO_MANY_LOOKUPS and no Wix call."""
    for attempt in range(10):
        assert _texts(daemon.ask(OWNER, "1023")) == [SEED_REPLY], attempt
        clock.advance(minutes=5)
    wix_calls = daemon.wix.request_count
    with capture_logs() as logs:
        assert _texts(daemon.ask(OWNER, "1023")) == [inbound.TOO_MANY_LOOKUPS]
    assert daemon.wix.request_count == wix_calls
    assert any(e["event"] == "lookup.rate_limited" for e in logs)
    assert _texts(daemon.ask(STRANGER, "1023")) == [inbound.NOT_FOUND_OR_NOT_YOURS]
    clock.advance(minutes=20)  # the first lookups are now more than an hour old
    assert _texts(daemon.ask(OWNER, "1023")) == [SEED_REPLY]


# --- Wix errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 429, 500, 503])
@pytest.mark.parametrize("text", ["1023", SEED_GUID], ids=["number", "guid"])
def test_wix_error_gets_lookup_unavailable_and_an_ops_event(
    daemon: LiveDaemon, status: int, text: str
) -> None:
    """A Wix error during lookup: the friendly LOOKUP_UNAVAILABLE reply and lookup.wix_error."""
    daemon.wix.fail_next(status, count=3 if status >= 500 else 1)  # a 5xx is tried 3 times
    with capture_logs() as logs:
        sent = daemon.ask(OWNER, text)
    assert _texts(sent) == [inbound.LOOKUP_UNAVAILABLE]
    errors = [e for e in logs if e["event"] == "lookup.wix_error"]
    assert len(errors) == 1
    assert errors[0]["store"] == daemon.store
    assert _texts(daemon.ask(OWNER, text)) == [SEED_REPLY]


def test_wix_permission_lost_gets_lookup_unavailable(daemon: LiveDaemon) -> None:
    """A key without read permission (every call 403) still gets a friendly answer."""
    daemon.wix.set_permission(False)
    assert _texts(daemon.ask(OWNER, "1023")) == [inbound.LOOKUP_UNAVAILABLE]


# --- STOP / START ----------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["STOP", "stop", "UNSUBSCRIBE"])
def test_stop_opts_out_once_and_proactive_sends_are_skipped(
    daemon: LiveDaemon, clock: Clock, word: str
) -> None:
    """STOP (any case) or UNSUBSCRIBE opts out, confirmed once; a template to it is skipped at 0."""
    assert _texts(daemon.ask(NOA, word)) == [inbound.OPTED_OUT_CONFIRMATION]
    assert daemon.ask(NOA, "STOP") == []
    assert [r["wa_id"] for r in daemon.rows(opt_outs)] == [NOA]
    clock.advance(minutes=1)
    message_id = daemon.queue_template(NOA, "proactive:1")
    outcome = daemon.runtime.dispatch()
    assert (outcome.sent, outcome.skipped) == (0, 1)
    assert daemon.sent_to(NOA)[-1].type == "text"
    assert daemon.message(id=message_id)["status"] == "skipped"
    [row] = [r for r in daemon.rows(ledger) if r["message_id"] == message_id]
    assert (row["estimated_cost"], row["free_reason"], row["status"]) == (
        Decimal(0),
        "opted_out",
        "skipped",
    )


def test_start_opts_back_in(daemon: LiveDaemon, clock: Clock) -> None:
    """After STOP, START is confirmed and proactive templates go out again."""
    daemon.ask(NOA, "STOP")
    assert _texts(daemon.ask(NOA, "start")) == [inbound.OPTED_IN_CONFIRMATION]
    assert daemon.rows(opt_outs) == []
    clock.advance(minutes=1)
    daemon.queue_template(NOA, "proactive:after-start")
    assert daemon.runtime.dispatch().sent == 1
    assert daemon.sent_to(NOA)[-1].template == "order_status_update"


def test_start_without_stop_gets_help_not_a_confirmation(daemon: LiveDaemon) -> None:
    """START from a number that never opted out changes nothing and gets the help text."""
    assert _texts(daemon.ask(NOA, "START")) == [inbound.HELP_TEXT]


def test_stop_inside_a_sentence_is_not_an_opt_out(daemon: LiveDaemon) -> None:
    """A sentence merely containing "stop" (don't stop my order 1023) is a lookup, not an opt-out."""
    assert _texts(daemon.ask(OWNER, "don't stop my order 1023")) == [SEED_REPLY]
    assert daemon.rows(opt_outs) == []


# --- BR-11: the 24 h window, measured from the webhook timestamp -------------------------------

BR11_SENT_AT = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)  # webhook timestamp "1735725600"
BR11_PROCESSED_AT = datetime(2025, 1, 2, 10, 5, tzinfo=UTC)


def _post_br11(daemon: LiveDaemon, clock: Clock) -> None:
    """The inbound "10126" stamped 2025-01-01T10:00Z, processed at 2025-01-02T10:05Z."""
    clock.now = BR11_PROCESSED_AT
    daemon.whatsapp.post_inbound_text(NOA, "10126", timestamp=BR11_SENT_AT, name="Noa B")
    daemon.settle()


def test_br11_late_reply_goes_out_as_the_status_template(engine: Engine, clock: Clock) -> None:
    """24 h 5 min after the message, the order_status_update template goes out instead of text."""
    with live_daemon(engine, clock) as daemon:
        _post_br11(daemon, clock)
        [sent] = daemon.sent_to(NOA)
        assert (sent.type, sent.template, sent.language) == (
            "template",
            "order_status_update",
            "en",
        )
        assert sent.body_params == ("Noa", "10126", "Paid", "Preparing for dispatch")
        [row] = daemon.rows(inbound_messages)
        assert row["sent_at"] == BR11_SENT_AT
        assert daemon.message(kind="text")["status"] in ("accepted", "sent", "delivered")


def test_br11_late_reply_dropped_when_configured(engine: Engine, clock: Clock) -> None:
    """With late_reply="drop" nothing is sent; the reply is skipped (window_closed, cost 0)."""
    with live_daemon(engine, clock, lookup=LookupSettings(late_reply="drop")) as daemon:
        with capture_logs() as logs:
            _post_br11(daemon, clock)
        assert daemon.sent_to(NOA) == []
        reply = daemon.message(kind="text")
        assert reply["status"] == "skipped"
        [row] = daemon.rows(ledger)
        assert (row["estimated_cost"], row["free_reason"]) == (Decimal(0), "window_closed")
        assert any(e["event"] == "message.skipped" for e in logs)


def test_br11_reply_inside_the_window_is_free_form_text(engine: Engine, clock: Clock) -> None:
    """23 h 59 min after the message the reply is still the free-form text."""
    with live_daemon(engine, clock) as daemon:
        clock.now = datetime(2025, 1, 2, 9, 59, tzinfo=UTC)
        daemon.whatsapp.post_inbound_text(NOA, "10126", timestamp=BR11_SENT_AT)
        daemon.settle()
        assert _texts(daemon.sent_to(NOA)) == [NOA_REPLY]


def test_window_is_not_moved_back_by_an_older_message(daemon: LiveDaemon, clock: Clock) -> None:
    """A message delivered 25 h late, after a fresh "hi", is answered in text: the window stays open."""
    daemon.ask(NOA, "hi")
    late = daemon.ask(NOA, "10126", timestamp=clock() - timedelta(hours=25))
    assert [(m.type, m.text) for m in late] == [("text", NOA_REPLY)]


# --- text no database can store ------------------------------------------------------------------


def test_text_with_lone_surrogate_and_nul_is_stored_and_answered(daemon: LiveDaemon) -> None:
    """JSON escapes \\ud83d (a half emoji) and \\u0000 in a customer's text: stored as U+FFFD,
    and the lookup is answered (before, the row failed to insert and the message was dropped)."""
    question = meta.inbound_text_message(OWNER, "wamid.IN.HALF", daemon.clock(), "1023 \ud83d\x00")
    assert daemon.post_signed({"messages": [question]}) == 200
    daemon.settle()
    assert _texts(daemon.sent_to(OWNER)) == [SEED_REPLY]
    [row] = daemon.rows(inbound_messages)
    assert row["text"] == "1023 \ufffd\ufffd"


@given(st.text())
def test_storable_text_is_always_encodable_and_keeps_clean_text(text: str) -> None:
    """Any text comes out UTF-8 encodable without NUL; text that already was is unchanged."""
    stored = storable_text(text)
    assert stored is not None
    stored.encode("utf-8")
    assert "\x00" not in stored
    clean = "\x00" not in text and not any("\ud800" <= ch <= "\udfff" for ch in text)
    assert (stored == text) == clean
