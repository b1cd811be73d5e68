"""Use case: process stored WhatsApp webhook receipts — delivery statuses and inbound messages.

The web route only verifies, stores the raw body (once) and answers 200; this module does the
rest, a batch of receipts per transaction and each item in its own savepoint, so a bad item never
spoils its batch. Statuses are deduplicated on
(wamid, status), applied monotonically, and a status for a message we have not stored yet is kept
and applied when the message is (``apply_pending_statuses``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from notifier import phones
from notifier.guard import apply_template_updates
from notifier.pricing import RateCard, confirm, estimate
from notifier.store import inbox, ledger, outbox
from notifier.store.inbox import StoredStatus
from notifier.store.outbox import OutboxMessage
from notifier.webhook_parse import InboundMessage, ParsedWebhook, StatusUpdate, parse_webhook

log = structlog.get_logger("notifier.webhooks")

InboundHandler = Callable[[InboundMessage], None]


# Statuses applied per transaction at most: a burst costs a few commits, not one per status.
STATUSES_PER_TRANSACTION = 100


class WriteTurns:
    """Turns at the database's write lock inside one process, the webhook ingest first.

    SQLite has one write lock, and a writer that finds it taken polls with growing sleeps, so a
    busy worker could keep the web route's receipt writer waiting for seconds. Here the worker
    takes a turn only while no ingest write is waiting, and ends its transaction early when one
    starts waiting (``ingest_waiting``), so a POST waits for at most one status being applied.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._ingest_waiting = 0

    def ingest_waiting(self) -> bool:
        return self._ingest_waiting > 0

    @contextlib.contextmanager
    def ingest(self) -> Iterator[None]:
        with self._cond:
            self._ingest_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy)
            finally:
                self._ingest_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._busy and not self._ingest_waiting)
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()


@dataclass(frozen=True)
class _Receipt:
    id: int
    webhook: ParsedWebhook | None
    error: str | None


def process_pending_receipts(
    engine: Engine,
    rate_cards: Mapping[str, RateCard],
    clock: Callable[[], datetime],
    on_inbound: InboundHandler | None = None,
    limit: int = 100,
    turns: WriteTurns | None = None,
) -> int:
    """Process stored receipts oldest first; returns how many were handled.

    Statuses are applied a batch of receipts per transaction, each in its own savepoint (a status
    that fails is logged and skipped), and a receipt is marked processed in the transaction that
    applied its statuses: a batch whose transaction fails (the database went away, the commit
    failed) leaves its receipts for the next pass. Inbound messages are handled
    after that, outside it (they may call Wix), and their receipts marked processed once handled.
    """
    with _turn(turns), engine.connect() as conn:  # SQLite begins even a read as a writer
        pending = inbox.unprocessed_receipts(conn, limit)
    receipts = deque(_read_receipt(receipt_id, body) for receipt_id, body in pending)
    _apply_template_changes(engine, receipts, clock, turns)
    with_inbound = [r for r in receipts if on_inbound and r.webhook and r.webhook.messages]
    answered_later = {r.id for r in with_inbound}
    while receipts:
        with _turn(turns), engine.begin() as conn:
            batch = _apply_batch(conn, receipts, rate_cards, clock, turns)
            done = {r.id: r.error for r in batch if r.id not in answered_later}
            inbox.mark_receipts_processed(conn, done, now=clock())
    if with_inbound and on_inbound:
        for receipt in with_inbound:
            _handle_inbound(receipt, on_inbound)
        with _turn(turns), engine.begin() as conn:
            inbox.mark_receipts_processed(conn, {r.id: r.error for r in with_inbound}, now=clock())
    return len(pending)


def _apply_template_changes(
    engine: Engine,
    receipts: deque[_Receipt],
    clock: Callable[[], datetime],
    turns: WriteTurns | None,
) -> None:
    """Meta's template webhooks (rare) go to the registry first, each in its own transaction,
    so a drifted template is held before the next dispatch."""
    for receipt in receipts:
        if receipt.webhook and receipt.webhook.template_updates:
            with _turn(turns):
                apply_template_updates(engine, receipt.webhook.template_updates, clock)


def _turn(turns: WriteTurns | None) -> contextlib.AbstractContextManager[None]:
    return turns.background() if turns else contextlib.nullcontext()


def _apply_batch(
    conn: Connection,
    receipts: deque[_Receipt],
    rate_cards: Mapping[str, RateCard],
    clock: Callable[[], datetime],
    turns: WriteTurns | None,
) -> list[_Receipt]:
    """Apply receipts from the left of ``receipts`` until the batch is full or ingest waits."""
    batch: list[_Receipt] = []
    statuses = 0
    while receipts and statuses < STATUSES_PER_TRANSACTION:
        if batch and turns and turns.ingest_waiting():
            break
        receipt = receipts.popleft()
        _apply_statuses(conn, receipt, rate_cards, clock)
        batch.append(receipt)
        statuses += len(receipt.webhook.statuses) if receipt.webhook else 0
    return batch


def _read_receipt(receipt_id: int, body: str) -> _Receipt:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        log.warning("webhook.unreadable", error=str(exc))
        return _Receipt(receipt_id, None, f"invalid JSON: {exc}")
    parsed = parse_webhook(payload)
    for problem in parsed.problems:
        log.warning("webhook.item_skipped", problem=problem)
    return _Receipt(receipt_id, parsed, "; ".join(parsed.problems)[:2000] or None)


def _apply_statuses(
    conn: Connection,
    receipt: _Receipt,
    rate_cards: Mapping[str, RateCard],
    clock: Callable[[], datetime],
) -> None:
    for update in receipt.webhook.statuses if receipt.webhook else ():
        try:
            with conn.begin_nested():
                apply_status_update(conn, update, rate_cards, now=clock())
        except Exception:  # isolate the item; the rest of the batch still applies
            log.exception("status.failed_to_apply", wamid=update.wamid)


def _handle_inbound(receipt: _Receipt, on_inbound: InboundHandler) -> None:
    for message in receipt.webhook.messages if receipt.webhook else ():
        try:
            on_inbound(message)
        except Exception:
            log.exception("inbound.failed", inbound_id=message.id)


def apply_status_update(
    conn: Connection, update: StatusUpdate, rate_cards: Mapping[str, RateCard], *, now: datetime
) -> None:
    """Record one status (once) and apply it to its message, if we have that message yet."""
    is_new = inbox.record_status(
        conn,
        wamid=update.wamid,
        status=update.status,
        callback_data=update.callback_data,
        payload=update.raw,
        event_at=update.timestamp,
        now=now,
    )
    if not is_new:
        log.debug("status.duplicate", wamid=update.wamid, status=update.status)
        return
    message = outbox.find(
        conn, wamid=update.wamid, message_id=_message_id(update.callback_data), lock=True
    )
    if message is None:
        log.info("status.orphan", wamid=update.wamid, status=update.status)
        return
    for stored in inbox.unapplied_statuses(conn, wamid=update.wamid):
        _apply(conn, message, stored, rate_cards, now)


def apply_pending_statuses(
    conn: Connection,
    wamid: str,
    message_id: int,
    rate_cards: Mapping[str, RateCard],
    *,
    now: datetime,
) -> None:
    """Statuses that arrived before the message was stored are applied now, in arrival order."""
    pending = inbox.unapplied_statuses(conn, wamid=wamid)
    if not pending:
        return
    message = outbox.get(conn, message_id)
    for stored in pending:
        _apply(conn, message, stored, rate_cards, now)


def settle_early_statuses(
    conn: Connection, message_id: int, rate_cards: Mapping[str, RateCard], *, now: datetime
) -> None:
    """Price the statuses a webhook applied while the send was still in flight.

    They moved the message on, but its ledger row did not exist yet, so nothing was confirmed.
    """
    message = outbox.get(conn, message_id)
    for stored in inbox.applied_statuses(conn, message_id=message_id):
        raw = stored.payload
        pricing = raw.get("pricing") if isinstance(raw.get("pricing"), dict) else None
        _confirm_cost(conn, message, stored, pricing, rate_cards, now)


def _message_id(callback_data: str | None) -> int | None:
    return int(callback_data) if callback_data and callback_data.isdigit() else None


def _apply(
    conn: Connection,
    message: OutboxMessage,
    stored: StoredStatus,
    rate_cards: Mapping[str, RateCard],
    now: datetime,
) -> None:
    raw = stored.payload
    pricing = raw.get("pricing") if isinstance(raw.get("pricing"), dict) else None
    values: dict[str, Any] = {}
    if message.wamid is None:
        values["wamid"] = stored.wamid
    if pricing is not None:
        values["pricing"] = pricing
    if stored.status == "failed":
        values.update(_first_error(raw))
    moved = outbox.advance_status(
        conn, message.id, stored.status, at=stored.event_at or now, now=now, **values
    )
    inbox.mark_status_applied(conn, stored.id, message.id)
    if not moved:
        # A late `delivered` (after `read`) may still carry the only pricing: charge it, once.
        if stored.status != "failed":
            _confirm_cost(conn, message, stored, pricing, rate_cards, now)
        return
    _ensure_ledger_row(conn, message, stored.status, rate_cards, now)
    ledger.set_ledger_status(conn, message.id, stored.status)
    _confirm_cost(conn, message, stored, pricing, rate_cards, now)
    if stored.status == "failed":
        log.error(
            "message.failed",
            wamid=stored.wamid,
            code=values.get("error_code"),
            title=values.get("error_title"),
            to=phones.mask(message.recipient or ""),
        )


def _confirm_cost(
    conn: Connection,
    message: OutboxMessage,
    stored: StoredStatus,
    pricing: Mapping[str, Any] | None,
    rate_cards: Mapping[str, RateCard],
    now: datetime,
) -> None:
    """Charged once per message, on delivery (or read without delivered); failed is free."""
    failed = stored.status == "failed"
    if not failed and (stored.status not in ("delivered", "read") or pricing is None):
        return
    price = confirm(
        rate_cards.get(message.store) or RateCard(),
        market=phones.market_of(message.recipient or ""),
        category_hint="utility" if message.kind == "template" else "service",
        on=(stored.event_at or now).date(),
        pricing=pricing,
        failed=failed,
    )
    if price is not None:
        ledger.confirm(conn, message.id, price, now=now, pricing_raw=pricing)


def _ensure_ledger_row(
    conn: Connection,
    message: OutboxMessage,
    status: str,
    rate_cards: Mapping[str, RateCard],
    now: datetime,
) -> None:
    """A message settled by a webhook after an ambiguous send has no ledger row yet: estimate it."""
    if ledger.has_row(conn, message.id):
        return
    recipient = message.recipient or ""
    price = estimate(
        rate_cards.get(message.store) or RateCard(),
        market=phones.market_of(recipient),
        category="utility" if message.kind == "template" else "service",
        on=now.date(),
        window_open=inbox.window_open(conn, phones.digits(recipient), now),
    )
    ledger.record_for_message(conn, message, price, status=status, now=now)


def _first_error(raw: Mapping[str, Any]) -> dict[str, Any]:
    errors = raw.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    details = (
        first.get("error_data", {}).get("details")
        if isinstance(first.get("error_data"), dict)
        else None
    )
    return {
        "error_code": code if isinstance(code, int) else None,
        "error_title": str(first.get("title") or first.get("message") or "") or None,
        "error_details": str(details) if details else None,
    }
