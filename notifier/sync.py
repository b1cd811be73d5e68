"""Use case: sync one store — poll Wix, diff against snapshots, queue notifications in the same transaction.

The watermark moves only when a whole run succeeded; a run that fails half-way has committed its
pages (snapshots and outbox rows together), so the next run re-reads them harmlessly: the diff finds
nothing new and the dedupe keys refuse a second outbox row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import structlog
from sqlalchemy import Connection, Engine

from notifier import phones, rules
from notifier.config import StoreSettings
from notifier.diff import diff
from notifier.domain import Notification, Order, PollPage, Price, Snapshot, Tracking
from notifier.errors import NotifierError, WixTransientError
from notifier.labels import Labels
from notifier.render import MissingParameter, render_template
from notifier.store import ledger, orders
from notifier.store.orders import RunCounts
from notifier.store.outbox import NewMessage, enqueue_many, template_payload

log = structlog.get_logger("notifier.sync")

TRACKING_PARAMS = frozenset({"tracking_number", "tracking_link", "carrier"})
TOO_MANY_REQUESTS = 429
RATE_LIMIT_WAIT_SECONDS = 60.0  # when a 429 names no Retry-After


class OrderSource(Protocol):
    """The part of the Wix adapter a sync needs (WixClient, or anything shaped like it)."""

    def search_pages(self, since: datetime | None) -> Any: ...

    def tracking_for_orders(self, order_ids: Iterable[str]) -> dict[str, tuple[Tracking, ...]]: ...


@dataclass(frozen=True)
class SyncResult:
    store: str
    ok: bool
    baseline: bool
    counts: RunCounts
    error: str | None = None


@dataclass
class _Counts(RunCounts):
    max_updated: datetime | None = None


@dataclass(frozen=True)
class _Outgoing:
    """One message ready to queue: every decision made, nothing written yet."""

    notification: Notification
    order: Order
    message: NewMessage
    skipped_reason: str | None


PageProgress = Callable[[str, RunCounts, bool], None]
"""Called after each committed page with (store, counts so far, baseline)."""


@dataclass(frozen=True)
class _Decided:
    """An order read, diffed and ruled on; its messages are rendered once tracking is known."""

    order: Order
    snapshot: Snapshot
    notes: tuple[Notification, ...]


def sync_store(
    store: StoreSettings,
    wix: OrderSource,
    engine: Engine,
    clock: Callable[[], datetime],
    progress: PageProgress | None = None,
) -> SyncResult:
    """Run one poll of ``store`` to the last page; never raises for Wix or data trouble."""
    structlog.contextvars.bind_contextvars(store=store.name)
    try:
        return _sync(store, wix, engine, clock, progress)
    finally:
        structlog.contextvars.unbind_contextvars("store")


def _sync(
    store: StoreSettings,
    wix: OrderSource,
    engine: Engine,
    clock: Callable[[], datetime],
    progress: PageProgress | None = None,
) -> SyncResult:
    started = clock()
    with engine.begin() as conn:
        orders.ensure_store_state(conn, store.name)
        state = orders.get_store_state(conn, store.name)
        assert state is not None
        baseline = state.baseline_at is None
        waiting = state.poll_not_before is not None and started < state.poll_not_before
        if not waiting:
            run_id = orders.start_poll_run(conn, store.name, now=started, baseline=baseline)
    if waiting:
        return _wait_for_rate_limit(store, state, baseline)
    since = (
        None
        if state.watermark is None
        else state.watermark - timedelta(seconds=store.overlap_seconds)
    )
    counts = _Counts()
    try:
        for page in wix.search_pages(since):
            _apply_page(store, wix, engine, clock, page, baseline=baseline, counts=counts)
            if progress is not None:
                progress(store.name, counts, baseline)
    except NotifierError as exc:
        return _fail(store, engine, clock, run_id, counts, baseline, exc)
    finished = clock()
    with engine.begin() as conn:
        orders.finish_poll(
            conn, store.name, now=finished, watermark=counts.max_updated, baseline_done=baseline
        )
        orders.end_poll_run(conn, run_id, now=finished, ok=True, counts=counts)
    if baseline:
        log.info("baseline_created", count=counts.orders_seen, pages=counts.pages)
    log.info(
        "poll.finished",
        baseline=baseline,
        since=since.isoformat() if since else None,
        **counts.as_dict(),
    )
    return SyncResult(store.name, True, baseline, _plain(counts))


def _plain(counts: _Counts) -> RunCounts:
    return RunCounts(counts.pages, counts.orders_seen, counts.events, counts.queued)


def _wait_for_rate_limit(
    store: StoreSettings, state: orders.StoreState, baseline: bool
) -> SyncResult:
    """Wix said 429: no request until its Retry-After has passed (the watermark stays put)."""
    assert state.poll_not_before is not None
    until = state.poll_not_before.isoformat()
    log.info("poll.waiting_for_rate_limit", until=until, last_error=state.last_poll_error)
    error = f"waiting until {until}: Wix rate-limited the last poll"
    return SyncResult(store.name, False, baseline, RunCounts(), error)


def _fail(
    store: StoreSettings,
    engine: Engine,
    clock: Callable[[], datetime],
    run_id: int,
    counts: _Counts,
    baseline: bool,
    exc: NotifierError,
) -> SyncResult:
    error = f"{type(exc).__name__}: {exc}"
    now = clock()
    not_before = _rate_limited_until(exc, now)
    with engine.begin() as conn:
        orders.record_poll_error(conn, store.name, error, not_before=not_before)
        orders.end_poll_run(conn, run_id, now=now, ok=False, error=error, counts=counts)
    log.warning(
        "poll.failed",
        error=error,
        not_before=not_before.isoformat() if not_before else None,
        **counts.as_dict(),
    )
    return SyncResult(store.name, False, baseline, _plain(counts), error)


def _rate_limited_until(exc: NotifierError, now: datetime) -> datetime | None:
    """When a 429 lets the next poll start: Retry-After, else about a minute."""
    if not isinstance(exc, WixTransientError) or exc.status != TOO_MANY_REQUESTS:
        return None
    wait = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_WAIT_SECONDS
    return now + timedelta(seconds=wait)


def _apply_page(
    store: StoreSettings,
    wix: OrderSource,
    engine: Engine,
    clock: Callable[[], datetime],
    page: PollPage,
    *,
    baseline: bool,
    counts: _Counts,
) -> None:
    """Decide everything outside the transaction, then write snapshots + outbox rows in one."""
    for order_id, reason in page.bad_orders:
        log.warning("order.unreadable", order_id=order_id, reason=reason)
    with engine.connect() as conn:
        previous = orders.load_snapshots(conn, store.name, [o.id for o in page.orders])
    decided: list[_Decided] = []
    for order in page.orders:
        counts.orders_seen += 1
        if order.updated_date and (
            counts.max_updated is None or order.updated_date > counts.max_updated
        ):
            counts.max_updated = order.updated_date
        try:
            decided.append(_decide(store, order, previous.get(order.id), baseline, counts))
        except Exception:  # one bad order must never stop the page; it is logged with its id
            log.exception("order.skipped", order_id=order.id)
    tracking = _tracking_for(wix, decided)
    labels: dict[str, Labels] = {}
    changed: list[Snapshot] = []
    outgoing: list[_Outgoing] = []
    for item in decided:
        try:
            messages = [
                _prepare(store, item.order, note, tracking.get(item.order.id), labels)
                for note in item.notes
            ]
        except Exception:  # as above: the order is skipped, its snapshot left as it was
            log.exception("order.skipped", order_id=item.order.id)
            continue
        if item.snapshot != previous.get(item.order.id):
            changed.append(item.snapshot)
        outgoing.extend(messages)
    now = clock()
    with engine.begin() as conn:
        orders.save_snapshots(conn, store.name, changed, now=now)
        counts.queued += _queue(conn, store, outgoing, now)
    counts.pages += 1


def _decide(
    store: StoreSettings,
    order: Order,
    previous: Snapshot | None,
    baseline: bool,
    counts: _Counts,
) -> _Decided:
    snapshot = Snapshot.of(order, previous)
    if baseline:
        return _Decided(order, snapshot, ())
    events = diff(previous, order)
    for event in events:
        if not rules.is_known(event.field, event.new):
            log.warning(
                "order.unknown_value", order_id=order.id, field=event.field.value, value=event.new
            )
    counts.events += len(events)
    return _Decided(order, snapshot, rules.notifications_for(store.name, events, store.rules))


def _prepare(
    store: StoreSettings,
    order: Order,
    note: Notification,
    tracking: Tracking | None,
    labels: dict[str, Labels],
) -> _Outgoing:
    """The message for ``note``; ``labels`` caches the page's labels per language."""
    rule = note.rule
    language = _language_for(order, rule.languages, store.default_language)
    recipient = phones.recipient_for(order, store.default_country)
    if language not in labels:
        labels[language] = Labels.for_language(language, store.labels)
    try:
        rendered = render_template(
            rule,
            order,
            language=language,
            tracking=tracking,
            labels=labels[language],
            name_fallback=store.name_fallback,
        )
    except MissingParameter as exc:
        payload: dict[str, Any] = {
            "name": rule.template,
            "language": language,
            "body": [],
            "button": None,
        }
        skipped: str | None = f"missing parameter: {exc}"
    else:
        payload = template_payload(rendered)
        skipped = None if recipient.e164 else f"{recipient.problem} phone"
    message = NewMessage(
        store=store.name,
        dedupe_key=note.dedupe_key,
        kind="template",
        payload=payload,
        recipient=recipient.e164,
        order_id=order.id,
        order_number=order.number,
        event=f"{note.event.field.value}:{note.event.new}",
        urgency=rule.urgency.value,
        status="skipped" if skipped else "queued",
        error_title=skipped,
    )
    return _Outgoing(note, order, message, skipped)


def _needs_tracking(params: Sequence[str], button_param: str | None) -> bool:
    return bool(TRACKING_PARAMS & {*params, button_param or ""})


def _tracking_for(wix: OrderSource, decided: Sequence[_Decided]) -> dict[str, Tracking]:
    """The tracking of the page's orders whose messages show it, in one Wix call; {} when Wix
    fails (those messages then go without tracking, as the rules allow)."""
    wanted = [
        item.order.id
        for item in decided
        if any(_needs_tracking(n.rule.params, n.rule.button_param) for n in item.notes)
    ]
    if not wanted:
        return {}
    try:
        found = wix.tracking_for_orders(wanted)
    except NotifierError as exc:
        for order_id in wanted:
            log.warning("tracking.unavailable", order_id=order_id, error=str(exc))
        return {}
    chosen: dict[str, Tracking] = {}
    for order_id, entries in found.items():
        with_number = [t for t in entries if t.number or t.link]
        if with_number:
            chosen[order_id] = with_number[-1]
    return chosen


def _language_for(order: Order, languages: Sequence[str], default: str) -> str:
    for candidate in (order.buyer_language, default):
        if candidate and candidate in languages:
            return candidate
    return languages[0]


def _queue(conn: Connection, store: StoreSettings, items: list[_Outgoing], now: datetime) -> int:
    """Insert the page's outbox rows in one statement (ON CONFLICT DO NOTHING), and the ledger
    rows of the new skipped ones in another; the number of new rows."""
    new_ids = enqueue_many(conn, [item.message for item in items], now=now)
    page_log = log.bind()  # the module's lazy logger would assemble a new logger for every line
    estimates: list[ledger.Estimate] = []
    queued = 0
    for item in items:
        # pop: a key twice in one page is one row, counted and logged once
        message_id = new_ids.pop(item.message.dedupe_key, None)
        if message_id is None:
            continue
        queued += 1
        if item.skipped_reason:
            page_log.warning(
                "message.skipped",
                order_number=item.order.number,
                reason=item.skipped_reason,
                dedupe_key=item.message.dedupe_key,
            )
            estimates.append(_skipped_estimate(store, item, message_id, now))
        else:
            page_log.info(
                "message.queued", order_number=item.order.number, dedupe_key=item.message.dedupe_key
            )
    ledger.record_new_estimates(conn, estimates, now=now)
    return queued


def _skipped_estimate(
    store: StoreSettings, item: _Outgoing, message_id: int, now: datetime
) -> ledger.Estimate:
    recipient = item.message.recipient
    return ledger.Estimate(
        message_id=message_id,
        store=store.name,
        order_id=item.order.id,
        order_number=item.order.number,
        template=item.message.payload["name"],
        price=Price(Decimal(0), None, None, "utility", None, "skipped"),
        status="skipped",
        recipient_masked=phones.mask(recipient) if recipient else None,
        priced_on=now.date(),
    )
