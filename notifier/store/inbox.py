"""What arrives from WhatsApp: raw webhook receipts, deduplicated statuses and inbound messages,
service windows and opt-outs."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from notifier.store.dialect import insert_for, insert_ignoring_duplicates, upsert
from notifier.store.tables import (
    inbound_messages,
    opt_outs,
    service_windows,
    status_events,
    webhook_receipts,
)

SERVICE_WINDOW = timedelta(hours=24)


def store_receipts(conn: Connection, bodies: Sequence[bytes], *, now: datetime) -> None:
    """Keep each raw body once (keyed by its sha256), in one statement for the whole batch."""
    if not bodies:
        return
    rows = [
        {"body": _storable_text(body), "body_sha256": body_sha256(body), "received_at": now}
        for body in bodies
    ]
    stmt = insert_for(conn, webhook_receipts).on_conflict_do_nothing(index_elements=["body_sha256"])
    conn.execute(stmt, rows)


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _storable_text(body: bytes) -> str:
    # PostgreSQL text cannot hold NUL, and valid JSON never has a raw one (it must be escaped):
    # such a body is junk either way, so keep it with U+FFFD instead of answering 500 forever.
    return body.decode("utf-8", errors="replace").replace("\x00", "\N{REPLACEMENT CHARACTER}")


def unprocessed_receipts(conn: Connection, limit: int = 100) -> list[tuple[int, str]]:
    rows = conn.execute(
        select(webhook_receipts.c.id, webhook_receipts.c.body)
        .where(webhook_receipts.c.processed_at.is_(None))
        .order_by(webhook_receipts.c.id)
        .limit(limit)
    )
    return [(int(r.id), str(r.body)) for r in rows]


def mark_receipts_processed(
    conn: Connection, errors: Mapping[int, str | None], *, now: datetime
) -> None:
    """Mark receipts processed, each with its error (None when every item was usable)."""
    if not errors:
        return
    conn.execute(
        update(webhook_receipts)
        .where(webhook_receipts.c.id == bindparam("receipt_id"))
        .values(processed_at=now, error=bindparam("receipt_error")),
        [{"receipt_id": rid, "receipt_error": error} for rid, error in errors.items()],
    )


@dataclass(frozen=True)
class StoredStatus:
    id: int
    wamid: str
    status: str
    callback_data: str | None
    payload: Mapping[str, Any]
    event_at: datetime | None


def record_status(
    conn: Connection,
    *,
    wamid: str,
    status: str,
    callback_data: str | None,
    payload: Mapping[str, Any],
    event_at: datetime | None,
    now: datetime,
) -> bool:
    """Keep one row per (wamid, status); False for a duplicate delivery."""
    return insert_ignoring_duplicates(
        conn,
        status_events,
        {
            "wamid": wamid,
            "status": status,
            "callback_data": callback_data,
            "payload": dict(payload),
            "event_at": event_at,
            "received_at": now,
            "applied": False,
        },
    )


def unapplied_statuses(conn: Connection, *, wamid: str | None = None) -> list[StoredStatus]:
    query = select(status_events).where(status_events.c.applied.is_(False))
    if wamid is not None:
        query = query.where(status_events.c.wamid == wamid)
    return [
        StoredStatus(r.id, r.wamid, r.status, r.callback_data, r.payload, r.event_at)
        for r in conn.execute(query.order_by(status_events.c.id))
    ]


def applied_statuses(conn: Connection, *, message_id: int) -> list[StoredStatus]:
    """The statuses already applied to a message, in arrival order."""
    query = select(status_events).where(
        status_events.c.applied.is_(True), status_events.c.message_id == message_id
    )
    return [
        StoredStatus(r.id, r.wamid, r.status, r.callback_data, r.payload, r.event_at)
        for r in conn.execute(query.order_by(status_events.c.id))
    ]


def mark_status_applied(conn: Connection, status_id: int, message_id: int) -> None:
    conn.execute(
        update(status_events)
        .where(status_events.c.id == status_id)
        .values(applied=True, message_id=message_id)
    )


def record_inbound(
    conn: Connection,
    *,
    message_id: str,
    from_wa_id: str | None,
    user_id: str | None,
    kind: str,
    text: str | None,
    sent_at: datetime | None,
    now: datetime,
) -> bool:
    """Keep an inbound message once; False when WhatsApp delivered it before."""
    return insert_ignoring_duplicates(
        conn,
        inbound_messages,
        {
            "id": message_id,
            "from_wa_id": from_wa_id,
            "user_id": user_id,
            "type": kind,
            "text": text,
            "sent_at": sent_at,
            "received_at": now,
        },
    )


def set_inbound_reply(conn: Connection, inbound_id: str, reply_message_id: int) -> None:
    conn.execute(
        update(inbound_messages)
        .where(inbound_messages.c.id == inbound_id)
        .values(reply_message_id=reply_message_id)
    )


def open_window(conn: Connection, wa_id: str, at: datetime) -> None:
    """Open or refresh a customer's service window (never moved backwards by a late webhook)."""
    current = window_opened_at(conn, wa_id)
    if current is None or at > current:
        upsert(conn, service_windows, [{"wa_id": wa_id, "last_inbound_at": at}], ["wa_id"])


def window_opened_at(conn: Connection, wa_id: str) -> datetime | None:
    value = conn.execute(
        select(service_windows.c.last_inbound_at).where(service_windows.c.wa_id == wa_id)
    ).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


def window_open(conn: Connection, wa_id: str, now: datetime) -> bool:
    opened = window_opened_at(conn, wa_id)
    return opened is not None and now - opened < SERVICE_WINDOW


def opt_out(conn: Connection, wa_id: str, now: datetime) -> bool:
    """True when the number was not opted out before (so the confirmation goes out once)."""
    return insert_ignoring_duplicates(conn, opt_outs, {"wa_id": wa_id, "opted_out_at": now})


def opt_in(conn: Connection, wa_id: str) -> bool:
    return conn.execute(delete(opt_outs).where(opt_outs.c.wa_id == wa_id)).rowcount == 1


def opted_out_among(conn: Connection, wa_ids: Collection[str]) -> set[str]:
    """Which of these numbers opted out."""
    if not wa_ids:
        return set()
    query = select(opt_outs.c.wa_id).where(opt_outs.c.wa_id.in_(wa_ids))
    return {str(wa_id) for wa_id in conn.execute(query).scalars()}


def windows_opened_at(conn: Connection, wa_ids: Collection[str]) -> dict[str, datetime]:
    """The last inbound message of each of these numbers that ever wrote to us."""
    if not wa_ids:
        return {}
    query = select(service_windows.c.wa_id, service_windows.c.last_inbound_at).where(
        service_windows.c.wa_id.in_(wa_ids)
    )
    return {str(wa_id): at for wa_id, at in conn.execute(query) if isinstance(at, datetime)}


def wamids_with_unapplied_statuses(conn: Connection, wamids: Collection[str]) -> set[str]:
    """Which of these wamids have statuses that arrived before their message was stored."""
    if not wamids:
        return set()
    query = (
        select(status_events.c.wamid)
        .distinct()
        .where(status_events.c.applied.is_(False), status_events.c.wamid.in_(wamids))
    )
    return {str(wamid) for wamid in conn.execute(query).scalars()}
