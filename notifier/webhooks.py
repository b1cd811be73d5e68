"""Use case: process stored WhatsApp webhook receipts — delivery statuses and inbound messages.

The web route only verifies, stores the raw body and answers 200; this module does the rest,
one item at a time, so a bad item never spoils its batch. Statuses are deduplicated on
(wamid, status), applied monotonically, and a status for a message we have not stored yet is kept
and applied when the message is (``apply_pending_statuses``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
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
from notifier.webhook_parse import InboundMessage, StatusUpdate, parse_webhook

log = structlog.get_logger("notifier.webhooks")

InboundHandler = Callable[[InboundMessage], None]


def process_pending_receipts(
    engine: Engine,
    rate_cards: Mapping[str, RateCard],
    clock: Callable[[], datetime],
    on_inbound: InboundHandler | None = None,
    limit: int = 100,
) -> int:
    """Process stored receipts oldest first; returns how many were handled."""
    with engine.connect() as conn:
        pending = inbox.unprocessed_receipts(conn, limit)
    for receipt_id, body in pending:
        error = _process_receipt(engine, body, rate_cards, clock, on_inbound)
        with engine.begin() as conn:
            inbox.mark_receipt_processed(conn, receipt_id, now=clock(), error=error)
    return len(pending)


def _process_receipt(
    engine: Engine,
    body: str,
    rate_cards: Mapping[str, RateCard],
    clock: Callable[[], datetime],
    on_inbound: InboundHandler | None,
) -> str | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        log.warning("webhook.unreadable", error=str(exc))
        return f"invalid JSON: {exc}"
    parsed = parse_webhook(payload)
    for problem in parsed.problems:
        log.warning("webhook.item_skipped", problem=problem)
    for update in parsed.statuses:
        try:
            with engine.begin() as conn:
                apply_status_update(conn, update, rate_cards, now=clock())
        except Exception:  # isolate the item; the rest of the batch still applies
            log.exception("status.failed_to_apply", wamid=update.wamid)
    apply_template_updates(engine, parsed.template_updates, clock)
    for message in parsed.messages:
        if on_inbound is None:
            continue
        try:
            on_inbound(message)
        except Exception:
            log.exception("inbound.failed", inbound_id=message.id)
    return "; ".join(parsed.problems)[:2000] or None


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
