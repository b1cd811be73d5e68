"""One claimed outbox batch: what the pre-send checks need about its recipients, read in a few
queries up front, and the bookkeeping its concurrent lanes share."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine

from notifier import phones
from notifier.domain import Price, TemplateInfo
from notifier.store import inbox, outbox, registry
from notifier.store.outbox import OutboxMessage


@dataclass(frozen=True)
class Accepted:
    message: OutboxMessage
    wamid: str
    price: Price
    at: datetime


@dataclass
class Batch:
    """One claimed batch: what the checks need about its recipients (read in a few queries up
    front), the messages started, and accepted sends not yet written (flushed every few sends)."""

    claimed: list[OutboxMessage]
    templates: Mapping[tuple[str, str], TemplateInfo]
    opted_out: set[str]
    windows: dict[str, datetime]
    unreachable: set[str]
    last_sends: dict[str, datetime]
    started: set[int] = field(default_factory=set)
    to_mark: list[int] = field(default_factory=list)
    marked: set[int] = field(default_factory=set)
    accepted: list[Accepted] = field(default_factory=list)
    oldest_unwritten: float | None = None
    spent: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def window_open(self, recipient: str, now: datetime) -> bool:
        opened = self.windows.get(phones.digits(recipient))
        return opened is not None and now - opened < inbox.SERVICE_WINDOW


def read_batch(
    engine: Engine, claimed: list[OutboxMessage], now: datetime, *, unreachable_skip: timedelta
) -> Batch:
    """The batch's templates, opt-outs, service windows, undeliverable numbers and last sends."""
    recipients = {m.recipient for m in claimed if m.recipient}
    numbers = {phones.digits(r) for r in recipients}
    unreachable: set[str] = set()
    with engine.connect() as conn:
        if unreachable_skip > timedelta(0):
            since = now - unreachable_skip
            unreachable = outbox.undeliverable_among(conn, recipients, since=since)
        return Batch(
            claimed=claimed,
            templates=registry.load_templates(conn),
            opted_out=inbox.opted_out_among(conn, numbers),
            windows=inbox.windows_opened_at(conn, numbers),
            unreachable=unreachable,
            last_sends=outbox.last_sends_to(conn, recipients),
        )
