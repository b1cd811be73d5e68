"""Read-only queries behind the ops page and ``/metrics``; nothing here writes.

The message log reads the masked phone from the ledger and never selects ``messages.recipient``,
so a raw number cannot reach a page or an export by mistake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from sqlalchemy import Column, Connection, Select, func, select

from notifier.store.ledger import LedgerRow, in_period, to_ledger_row
from notifier.store.tables import ledger, messages, poll_runs, store_state

OUTBOX_WAITING = ("queued", "deferred", "claimed", "sending")

_Q = TypeVar("_Q", bound=Select[Any])


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """The ops page's filters; ``None`` means "any". Dates are UTC days, both inclusive."""

    store: str | None = None
    status: str | None = None
    template: str | None = None
    since: date | None = None
    until: date | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One message as ops see it: masked phone, cost figures and the last failure reason."""

    message_id: int
    created_at: datetime
    store: str
    order_number: str | None
    kind: str
    event: str | None
    template: str | None
    status: str
    attempts: int
    error_code: int | None
    error_title: str | None
    recipient_masked: str | None
    category: str | None
    currency: str | None
    estimated_cost: Decimal | None
    confirmed_cost: Decimal | None
    free_reason: str | None


@dataclass(frozen=True, slots=True)
class FilterChoices:
    """Distinct values the filter drop-downs offer."""

    stores: tuple[str, ...]
    statuses: tuple[str, ...]
    templates: tuple[str, ...]


# --- the ops page ------------------------------------------------------------------------------


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _filtered_messages(query: _Q, where: MessageFilter) -> _Q:
    if where.store is not None:
        query = query.where(messages.c.store == where.store)
    if where.status is not None:
        query = query.where(messages.c.status == where.status)
    if where.template is not None:
        query = query.where(messages.c.template == where.template)
    if where.since is not None:
        query = query.where(messages.c.created_at >= _day_start(where.since))
    if where.until is not None:
        query = query.where(messages.c.created_at < _day_start(where.until + timedelta(days=1)))
    return query


_LOG_COLUMNS = (
    messages.c.id,
    messages.c.created_at,
    messages.c.store,
    messages.c.order_number,
    messages.c.kind,
    messages.c.event,
    messages.c.template,
    messages.c.status,
    messages.c.attempts,
    messages.c.error_code,
    messages.c.error_title,
    ledger.c.recipient_masked,
    ledger.c.category,
    ledger.c.currency,
    ledger.c.estimated_cost,
    ledger.c.confirmed_cost,
    ledger.c.free_reason,
)


def count_messages(conn: Connection, where: MessageFilter) -> int:
    """How many messages match ``where`` (for the pager)."""
    query = _filtered_messages(select(func.count(messages.c.id)), where)
    return int(conn.execute(query).scalar_one())


def message_log(
    conn: Connection, where: MessageFilter, *, offset: int = 0, limit: int | None = None
) -> list[LogEntry]:
    """Messages matching ``where``, newest first; ``limit`` None returns every match."""
    query = (
        select(*_LOG_COLUMNS)
        .select_from(messages.outerjoin(ledger, ledger.c.message_id == messages.c.id))
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(_filtered_messages(query, where))
    # The columns are listed in LogEntry's field order.
    return [LogEntry(*cast(tuple[Any, ...], row)) for row in rows]


def ledger_rows(conn: Connection, where: MessageFilter) -> list[LedgerRow]:
    """Ledger rows matching ``where`` (dates by ``priced_on``), oldest first."""
    query = select(ledger).order_by(ledger.c.priced_on, ledger.c.message_id)
    if where.store is not None:
        query = query.where(ledger.c.store == where.store)
    if where.status is not None:
        query = query.where(ledger.c.status == where.status)
    if where.template is not None:
        query = query.where(ledger.c.template == where.template)
    if where.since is not None:
        query = query.where(ledger.c.priced_on >= where.since)
    if where.until is not None:
        query = query.where(ledger.c.priced_on <= where.until)
    return [to_ledger_row(r._mapping) for r in conn.execute(query)]


def filter_choices(conn: Connection, configured_stores: Sequence[str]) -> FilterChoices:
    """Every store (configured or seen), status and template present in the outbox, sorted."""

    def distinct(column: Column[Any]) -> set[str]:
        rows = conn.execute(select(column).distinct())
        return {str(value) for (value,) in rows if value is not None}

    return FilterChoices(
        stores=tuple(sorted(distinct(messages.c.store) | set(configured_stores))),
        statuses=tuple(sorted(distinct(messages.c.status))),
        templates=tuple(sorted(distinct(messages.c.template))),
    )


# --- /metrics ----------------------------------------------------------------------------------


def poll_counts(conn: Connection) -> list[tuple[str, bool, int, int]]:
    """Finished poll runs per (store, ok): how many, and the orders they read."""
    rows = conn.execute(
        select(
            poll_runs.c.store,
            poll_runs.c.ok,
            func.count(),
            func.coalesce(func.sum(poll_runs.c.orders_seen), 0),
        )
        .where(poll_runs.c.ok.is_not(None))
        .group_by(poll_runs.c.store, poll_runs.c.ok)
    )
    return [(str(store), bool(ok), int(runs), int(seen)) for store, ok, runs, seen in rows]


def message_counts(conn: Connection) -> list[tuple[str, str | None, int]]:
    """Messages per (status, template); a free-text reply has no template."""
    rows = conn.execute(
        select(messages.c.status, messages.c.template, func.count()).group_by(
            messages.c.status, messages.c.template
        )
    )
    return [(str(status), template, int(n)) for status, template, n in rows]


def outbox_depth(conn: Connection) -> int:
    """Messages still waiting to be handed to WhatsApp (queued or being sent)."""
    query = select(func.count()).where(messages.c.status.in_(OUTBOX_WAITING))
    return int(conn.execute(query).scalar_one())


def error_counts(conn: Connection) -> list[tuple[int, int]]:
    """Messages per last Meta error code."""
    rows = conn.execute(
        select(messages.c.error_code, func.count())
        .where(messages.c.error_code.is_not(None))
        .group_by(messages.c.error_code)
    )
    return [(int(code), int(n)) for code, n in rows]


def cost_totals(conn: Connection) -> dict[str, tuple[Decimal, Decimal]]:
    """(estimated, confirmed) per currency over the whole ledger, exact.

    Amounts are text columns (SQL SUM would go through a float on SQLite), so the database
    groups identical amounts and Python multiplies: few distinct rates means few rows.
    """
    rows = conn.execute(
        select(ledger.c.currency, ledger.c.estimated_cost, ledger.c.confirmed_cost, func.count())
        .where(ledger.c.currency.is_not(None))
        .group_by(ledger.c.currency, ledger.c.estimated_cost, ledger.c.confirmed_cost)
    )
    totals: dict[str, tuple[Decimal, Decimal]] = {}
    for currency, estimated, confirmed, n in rows:
        old_estimated, old_confirmed = totals.get(currency, (Decimal(0), Decimal(0)))
        totals[currency] = (
            old_estimated + (estimated or Decimal(0)) * n,
            old_confirmed + (confirmed or Decimal(0)) * n,
        )
    return totals


def last_successful_polls(conn: Connection) -> dict[str, datetime | None]:
    """Each known store's last successful poll (None: never)."""
    rows = conn.execute(select(store_state.c.store, store_state.c.last_poll_ok_at))
    return {str(store): at for store, at in rows}


def failure_reasons(
    conn: Connection,
    *,
    since: date | None = None,
    until: date | None = None,
    store: str | None = None,
    limit: int = 5,
) -> list[tuple[str, int]]:
    """The most frequent reasons failed messages give ("131026 Message undeliverable"), over the
    same ledger days and store as ``ledger.rows``; most frequent first."""
    query = (
        select(messages.c.error_code, messages.c.error_title, func.count())
        .join(ledger, ledger.c.message_id == messages.c.id)
        .where(ledger.c.status == "failed")
        .group_by(messages.c.error_code, messages.c.error_title)
    )
    query = in_period(query, since=since, until=until, store=store)
    counted = [
        (" ".join(str(part) for part in (code, title) if part) or "no reason recorded", int(n))
        for code, title, n in conn.execute(query)
    ]
    return sorted(counted, key=lambda pair: (-pair[1], pair[0]))[:limit]
