"""The cost ledger: one row per message, estimated at send time, confirmed once from a status webhook."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Connection, RowMapping, Select, bindparam, insert, select, update

from notifier import phones
from notifier.domain import Price
from notifier.store.outbox import OutboxMessage
from notifier.store.tables import ledger


@dataclass(frozen=True)
class LedgerRow:
    message_id: int
    store: str
    order_number: str | None
    template: str | None
    category: str
    market: str | None
    recipient_masked: str | None
    rate: Decimal | None
    currency: str | None
    estimated_cost: Decimal | None
    confirmed_cost: Decimal | None
    free_reason: str | None
    status: str
    priced_on: date
    created_at: datetime

    @property
    def cost(self) -> Decimal | None:
        """The best figure we have: confirmed once Meta told us, else the estimate."""
        return self.confirmed_cost if self.confirmed_cost is not None else self.estimated_cost


def record_estimate(
    conn: Connection,
    *,
    message_id: int,
    store: str,
    order_id: str | None,
    order_number: str | None,
    template: str | None,
    price: Price,
    status: str,
    recipient_masked: str | None,
    priced_on: date,
    now: datetime,
) -> None:
    """Write the message's ledger row (once; a resend keeps the first estimate)."""
    if has_row(conn, message_id):
        set_ledger_status(conn, message_id, status)
        return
    conn.execute(
        insert(ledger).values(
            message_id=message_id,
            store=store,
            order_id=order_id,
            order_number=order_number,
            template=template,
            category=price.category,
            market=price.market,
            recipient_masked=recipient_masked,
            rate=price.rate,
            currency=price.currency,
            estimated_cost=price.amount,
            free_reason=price.free_reason,
            status=status,
            priced_on=priced_on,
            created_at=now,
        )
    )


@dataclass(frozen=True)
class Estimate:
    """The first ledger row of a message that has none yet."""

    message_id: int
    store: str
    order_id: str | None
    order_number: str | None
    template: str | None
    price: Price
    status: str
    recipient_masked: str | None
    priced_on: date


def record_new_estimates(conn: Connection, estimates: Sequence[Estimate], *, now: datetime) -> None:
    """Write the ledger rows of messages just queued, in one executemany statement (a message
    written in the same transaction cannot have a row yet, so nothing is looked up first)."""
    if not estimates:
        return
    conn.execute(
        insert(ledger),
        [
            {
                "message_id": e.message_id,
                "store": e.store,
                "order_id": e.order_id,
                "order_number": e.order_number,
                "template": e.template,
                "category": e.price.category,
                "market": e.price.market,
                "recipient_masked": e.recipient_masked,
                "rate": e.price.rate,
                "currency": e.price.currency,
                "estimated_cost": e.price.amount,
                "free_reason": e.price.free_reason,
                "status": e.status,
                "priced_on": e.priced_on,
                "created_at": now,
            }
            for e in estimates
        ],
    )


def record_for_message(
    conn: Connection, message: OutboxMessage, price: Price, *, status: str, now: datetime
) -> None:
    """The ledger row of one outbox message (written once; later calls only update its status)."""
    record_estimate(
        conn,
        message_id=message.id,
        store=message.store,
        order_id=message.order_id,
        order_number=message.order_number,
        template=message.payload.get("name"),
        price=price,
        status=status,
        recipient_masked=phones.mask(message.recipient) if message.recipient else None,
        priced_on=now.date(),
        now=now,
    )


def record_for_messages(
    conn: Connection, entries: Sequence[tuple[OutboxMessage, Price, str, datetime]]
) -> None:
    """``record_for_message`` for many (message, price, status, now) at once."""
    if not entries:
        return
    ids = [message.id for message, _, _, _ in entries]
    existing = set(
        conn.execute(select(ledger.c.message_id).where(ledger.c.message_id.in_(ids))).scalars()
    )
    updates = [
        {"key": m.id, "new_status": status} for m, _, status, _ in entries if m.id in existing
    ]
    if updates:
        conn.execute(
            update(ledger)
            .where(ledger.c.message_id == bindparam("key"))
            .values(status=bindparam("new_status")),
            updates,
        )
    rows = [_estimate_row(*entry) for entry in entries if entry[0].id not in existing]
    if rows:
        conn.execute(insert(ledger), rows)


def _estimate_row(
    message: OutboxMessage, price: Price, status: str, now: datetime
) -> dict[str, Any]:
    return {
        "message_id": message.id,
        "store": message.store,
        "order_id": message.order_id,
        "order_number": message.order_number,
        "template": message.payload.get("name"),
        "category": price.category,
        "market": price.market,
        "recipient_masked": phones.mask(message.recipient) if message.recipient else None,
        "rate": price.rate,
        "currency": price.currency,
        "estimated_cost": price.amount,
        "free_reason": price.free_reason,
        "status": status,
        "priced_on": now.date(),
        "created_at": now,
    }


def has_row(conn: Connection, message_id: int) -> bool:
    return (
        conn.execute(select(ledger.c.message_id).where(ledger.c.message_id == message_id)).first()
        is not None
    )


def set_ledger_status(conn: Connection, message_id: int, status: str) -> None:
    conn.execute(update(ledger).where(ledger.c.message_id == message_id).values(status=status))


def confirm(
    conn: Connection,
    message_id: int,
    price: Price,
    *,
    now: datetime,
    pricing_raw: Mapping[str, Any] | None,
) -> bool:
    """Fill the confirmed cost once; later or repeated statuses never charge again."""
    result = conn.execute(
        update(ledger)
        .where(ledger.c.message_id == message_id, ledger.c.confirmed_cost.is_(None))
        .values(
            confirmed_cost=price.amount,
            rate=price.rate if price.rate is not None else ledger.c.rate,
            currency=price.currency if price.currency is not None else ledger.c.currency,
            free_reason=price.free_reason,
            confirmed_at=now,
            pricing_raw=dict(pricing_raw) if pricing_raw else None,
        )
    )
    return result.rowcount == 1


def rows(
    conn: Connection,
    *,
    since: date | None = None,
    until: date | None = None,
    store: str | None = None,
) -> list[LedgerRow]:
    """Ledger rows priced in [since, until] (both inclusive), oldest first."""
    query = select(ledger).order_by(ledger.c.priced_on, ledger.c.message_id)
    query = in_period(query, since=since, until=until, store=store)
    return [to_ledger_row(r._mapping) for r in conn.execute(query)]


Query = TypeVar("Query", bound=Select[Any])


def in_period(query: Query, *, since: date | None, until: date | None, store: str | None) -> Query:
    """``query`` narrowed to ledger rows priced in [since, until] for ``store`` (None: any)."""
    if since is not None:
        query = query.where(ledger.c.priced_on >= since)
    if until is not None:
        query = query.where(ledger.c.priced_on <= until)
    if store is not None:
        query = query.where(ledger.c.store == store)
    return query


def to_ledger_row(r: RowMapping) -> LedgerRow:
    """One ``ledger`` table row as a value."""
    return LedgerRow(
        r["message_id"],
        r["store"],
        r["order_number"],
        r["template"],
        r["category"],
        r["market"],
        r["recipient_masked"],
        r["rate"],
        r["currency"],
        r["estimated_cost"],
        r["confirmed_cost"],
        r["free_reason"],
        r["status"],
        r["priced_on"],
        r["created_at"],
    )
