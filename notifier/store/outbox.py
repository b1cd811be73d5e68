"""The outbox: one row per message we mean to send, claimed, sent and tracked to its final status.

Status lifecycle (``RANK`` orders the forward moves; ``failed`` and ``skipped`` are final):

    queued ─claim─▶ sending ─200─▶ accepted ─webhook─▶ sent ▶ delivered ▶ read
      ▲                │  └─timeout after send─▶ ambiguous (resolved by webhook, or resent once)
      └──retryable─────┘  └─final error─▶ failed          queued/skipped by policy ─▶ skipped
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, case, func, insert, or_, select, update

from notifier.domain import RenderedTemplate, TemplateParam
from notifier.store.dialect import insert_for
from notifier.store.tables import messages

RANK = {
    "queued": 0,
    "claimed": 1,
    "sending": 1,
    "ambiguous": 1,
    "accepted": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
}
FINAL = frozenset({"failed", "skipped"})
CLAIMABLE = ("queued", "deferred")
UNDELIVERABLE = 131026


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    store: str
    order_id: str | None
    order_number: str | None
    dedupe_key: str
    kind: str
    event: str | None
    urgency: str
    recipient: str | None
    status: str
    attempts: int
    payload: Mapping[str, Any]
    wamid: str | None
    created_at: datetime

    @property
    def template(self) -> RenderedTemplate:
        return rendered_from_payload(self.payload)


def rendered_from_payload(payload: Mapping[str, Any]) -> RenderedTemplate:
    """The inverse of ``template_payload``."""
    body = tuple(TemplateParam(text, name) for name, text in payload.get("body", []))
    return RenderedTemplate(payload["name"], payload["language"], body, payload.get("button"))


def template_payload(rendered: RenderedTemplate) -> dict[str, Any]:
    return {
        "name": rendered.name,
        "language": rendered.language,
        "body": [[p.name, p.text] for p in rendered.body],
        "button": rendered.button_url_suffix,
    }


@dataclass(frozen=True)
class NewMessage:
    """One outbox row to queue: everything but the id, attempts and timestamps."""

    store: str
    dedupe_key: str
    kind: str
    payload: Mapping[str, Any]
    recipient: str | None
    order_id: str | None = None
    order_number: str | None = None
    event: str | None = None
    urgency: str = "normal"
    status: str = "queued"
    next_attempt_at: datetime | None = None
    error_title: str | None = None


def enqueue(
    conn: Connection,
    *,
    store: str,
    dedupe_key: str,
    kind: str,
    payload: Mapping[str, Any],
    now: datetime,
    recipient: str | None,
    order_id: str | None = None,
    order_number: str | None = None,
    event: str | None = None,
    urgency: str = "normal",
    status: str = "queued",
    next_attempt_at: datetime | None = None,
    error_title: str | None = None,
) -> int | None:
    """Queue a message; None when its dedupe key is already taken (nothing is written)."""
    message = NewMessage(
        store=store,
        dedupe_key=dedupe_key,
        kind=kind,
        payload=payload,
        recipient=recipient,
        order_id=order_id,
        order_number=order_number,
        event=event,
        urgency=urgency,
        status=status,
        next_attempt_at=next_attempt_at,
        error_title=error_title,
    )
    return enqueue_many(conn, [message], now=now).get(dedupe_key)


def enqueue_many(conn: Connection, new: Sequence[NewMessage], *, now: datetime) -> dict[str, int]:
    """Queue messages in one executemany statement; returns dedupe key → id for each row that was
    written. A key already taken (before, or earlier in ``new``) writes nothing and is left out."""
    if not new:
        return {}
    stmt = (
        insert_for(conn, messages)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(messages.c.id, messages.c.dedupe_key)
    )
    written = conn.execute(stmt, [_row_of(message, now) for message in new])
    return {str(key): int(message_id) for message_id, key in written}


def _row_of(message: NewMessage, now: datetime) -> dict[str, Any]:
    return {
        "store": message.store,
        "order_id": message.order_id,
        "order_number": message.order_number,
        "dedupe_key": message.dedupe_key,
        "kind": message.kind,
        "event": message.event,
        "urgency": message.urgency,
        "template": message.payload.get("name"),
        "language": message.payload.get("language"),
        "payload": dict(message.payload),
        "recipient": message.recipient,
        "status": message.status,
        "attempts": 0,
        "next_attempt_at": message.next_attempt_at,
        "error_title": message.error_title,
        "created_at": now,
        "updated_at": now,
    }


def claim_due(conn: Connection, *, now: datetime, limit: int) -> list[OutboxMessage]:
    """Atomically move up to ``limit`` due rows from queued to claimed (urgent first, then oldest).

    One ``UPDATE … RETURNING``; on PostgreSQL the chosen rows are locked with ``SKIP LOCKED``, so
    concurrent dispatchers claim disjoint batches.
    """
    due = (
        select(messages.c.id)
        .where(
            messages.c.status.in_(CLAIMABLE),
            or_(messages.c.next_attempt_at.is_(None), messages.c.next_attempt_at <= now),
        )
        .order_by((messages.c.urgency == "urgent").desc(), messages.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (
        update(messages)
        .where(messages.c.id.in_(due.scalar_subquery()), messages.c.status.in_(CLAIMABLE))
        .values(status="claimed", attempts=messages.c.attempts + 1, updated_at=now)
        .returning(*messages.c)
    )
    claimed = [_to_message(row._mapping) for row in conn.execute(claim)]
    return sorted(claimed, key=lambda m: (m.urgency != "urgent", m.id))


def get(conn: Connection, message_id: int) -> OutboxMessage:
    row = conn.execute(select(messages).where(messages.c.id == message_id)).one()
    return _to_message(row._mapping)


def find(
    conn: Connection, *, wamid: str | None, message_id: int | None, lock: bool = False
) -> OutboxMessage | None:
    """The message with this id or wamid; ``lock`` holds its row until the transaction ends."""
    conditions = []
    if message_id is not None:
        conditions.append(messages.c.id == message_id)
    if wamid is not None:
        conditions.append(messages.c.wamid == wamid)
    if not conditions:
        return None
    query = select(messages).where(or_(*conditions)).limit(1)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else _to_message(row._mapping)


def _to_message(row: RowMapping) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        store=row["store"],
        order_id=row["order_id"],
        order_number=row["order_number"],
        dedupe_key=row["dedupe_key"],
        kind=row["kind"],
        event=row["event"],
        urgency=row["urgency"],
        recipient=row["recipient"],
        status=row["status"],
        attempts=row["attempts"],
        payload=row["payload"],
        wamid=row["wamid"],
        created_at=row["created_at"],
    )


def set_status(
    conn: Connection, message_id: int, status: str, *, now: datetime, **values: Any
) -> None:
    """Unconditional move, for the dispatcher that holds the claim on this row."""
    stamp = {"accepted": "sent_at", "failed": "failed_at"}.get(status)
    if stamp:
        values.setdefault(stamp, now)
    conn.execute(
        update(messages)
        .where(messages.c.id == message_id)
        .values(status=status, updated_at=now, **values)
    )


def mark_ambiguous(conn: Connection, message_id: int, *, now: datetime, error_title: str) -> bool:
    """A send timed out after the request left: ``ambiguous``, unless a status webhook already
    moved the row past "sending" (it can arrive before the timeout). True when now ambiguous."""
    result = conn.execute(
        update(messages)
        .where(messages.c.id == message_id, messages.c.status == "sending")
        .values(status="ambiguous", updated_at=now, error_title=error_title)
    )
    return result.rowcount == 1


def mark_accepted(conn: Connection, sends: list[AcceptedSend]) -> dict[int, str]:
    """Record accepted sends; a status webhook may already have moved a row past "sending" (it can
    arrive before the HTTP answer), and that status is kept. Returns each row's status now."""
    if not sends:
        return {}
    conn.execute(
        update(messages)
        .where(messages.c.id == bindparam("message_id"))
        .values(
            status=case((messages.c.status == "sending", "accepted"), else_=messages.c.status),
            wamid=bindparam("new_wamid"),
            sent_at=bindparam("at"),
            updated_at=bindparam("at"),
        ),
        [{"message_id": s.message_id, "new_wamid": s.wamid, "at": s.at} for s in sends],
    )
    ids = [s.message_id for s in sends]
    rows = conn.execute(select(messages.c.id, messages.c.status).where(messages.c.id.in_(ids)))
    return {int(message_id): str(status) for message_id, status in rows}


@dataclass(frozen=True)
class AcceptedSend:
    message_id: int
    wamid: str
    at: datetime


def advance_status(
    conn: Connection, message_id: int, status: str, *, at: datetime, now: datetime, **values: Any
) -> bool:
    """Apply a delivery status monotonically: never backwards, nothing after a final state."""
    current = conn.execute(
        select(messages.c.status).where(messages.c.id == message_id)
    ).scalar_one()
    if current in FINAL:
        return False
    if status == "failed":
        if current in ("delivered", "read"):
            return False
    elif RANK.get(status, -1) <= RANK.get(current, -1):
        return False
    stamp = {
        "delivered": "delivered_at",
        "read": "read_at",
        "failed": "failed_at",
        "sent": "sent_at",
    }
    if status in stamp and status != "sent":
        values.setdefault(stamp[status], at)
    conn.execute(
        update(messages)
        .where(messages.c.id == message_id)
        .values(status=status, updated_at=now, **values)
    )
    return True


def last_sends_to(conn: Connection, recipients: Collection[str]) -> dict[str, datetime]:
    """When we last handed a message for each recipient to WhatsApp (spacing between sends)."""
    if not recipients:
        return {}
    rows = conn.execute(
        select(messages.c.recipient, func.max(messages.c.sent_at))
        .where(messages.c.recipient.in_(recipients), messages.c.sent_at.is_not(None))
        .group_by(messages.c.recipient)
    )
    return {str(to): at for to, at in rows if isinstance(at, datetime)}


def count_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status))
    return {status: int(n) for status, n in rows}


def mark_sending(conn: Connection, message_ids: Collection[int], *, now: datetime) -> set[int]:
    """Written just before the HTTP calls: from here on a crash leaves the outcome unknown.

    Only ``claimed`` rows move, so of two dispatchers holding the same row (another replica
    requeued a claim it took for stale, then claimed it again) exactly one may send; the ids
    returned are the ones that are ours to send.
    """
    rows = conn.execute(_MARK_SENDING, {"ids": list(message_ids), "now": now})
    return {int(row.id) for row in rows}


# Built once: one of these runs per send, and rebuilding the statement costs more than running it.
_MARK_SENDING = (
    update(messages)
    .where(messages.c.id.in_(bindparam("ids", expanding=True)), messages.c.status == "claimed")
    .values(status="sending", updated_at=bindparam("now"))
    .returning(messages.c.id)
)


def release_claims(conn: Connection, message_ids: Collection[int], *, now: datetime) -> None:
    """Claimed rows this dispatcher will not send after all: queued again, the attempt not counted."""
    if not message_ids:
        return
    conn.execute(
        update(messages)
        .where(messages.c.id.in_(message_ids), messages.c.status == "claimed")
        .values(status="queued", attempts=messages.c.attempts - 1, updated_at=now)
    )


def recover_stale_claims(conn: Connection, *, older_than: datetime, now: datetime) -> int:
    """Rows claimed by a process that died before their HTTP call: certainly unsent, queue again."""
    result = conn.execute(
        update(messages)
        .where(messages.c.status == "claimed", messages.c.updated_at <= older_than)
        .values(status="queued", attempts=messages.c.attempts - 1, updated_at=now)
    )
    return int(result.rowcount)


def recover_stale_sending(conn: Connection, *, older_than: datetime, now: datetime) -> int:
    """Rows left ``sending`` by a process that died mid-call: the request may or may not have left."""
    result = conn.execute(
        update(messages)
        .where(messages.c.status == "sending", messages.c.updated_at <= older_than)
        .values(
            status="ambiguous",
            updated_at=now,
            error_title="outcome unknown: the sender stopped mid-send",
        )
    )
    return int(result.rowcount)


def resend_stale_ambiguous(conn: Connection, *, older_than: datetime, now: datetime) -> list[int]:
    """Ambiguous rows with no status webhook after the grace are queued again, once only."""
    ids = list(
        conn.execute(
            select(messages.c.id).where(
                messages.c.status == "ambiguous",
                messages.c.updated_at <= older_than,
                messages.c.resent_after_ambiguity.is_(False),
            )
        ).scalars()
    )
    for message_id in ids:
        conn.execute(
            update(messages)
            .where(messages.c.id == message_id, messages.c.status == "ambiguous")
            .values(
                status="queued", resent_after_ambiguity=True, next_attempt_at=None, updated_at=now
            )
        )
    return ids


def undeliverable_among(
    conn: Connection, recipients: Collection[str], *, since: datetime
) -> set[str]:
    """The recipients WhatsApp called undeliverable (131026) since ``since``."""
    if not recipients:
        return set()
    rows = conn.execute(
        select(messages.c.recipient)
        .distinct()
        .where(
            messages.c.recipient.in_(recipients),
            messages.c.error_code == UNDELIVERABLE,
            messages.c.failed_at >= since,
        )
    )
    return {str(to) for (to,) in rows}


def insert_message_row(conn: Connection, **values: Any) -> int:
    """Raw insert, for tests and tools that need a message row with exact values."""
    return int(
        conn.execute(insert(messages).values(**values).returning(messages.c.id)).scalar_one()
    )
