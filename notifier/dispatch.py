"""Use case: drain the outbox — policy checks, pricing, send, and classify every failure.

A claimed row is ``sending`` before the HTTP call, so a crash leaves evidence; a timeout after the
request left us is ``ambiguous`` and is settled by the status webhook (``biz_opaque_callback_data`` is
our message id), never by a blind resend.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import structlog
from sqlalchemy import Connection, Engine

from notifier import phones
from notifier.dispatch_batch import Accepted, Batch, read_batch
from notifier.dispatch_outcomes import DispatchResult, Outcomes
from notifier.domain import Price, RenderedTemplate, SendResult, TemplateInfo, Urgency
from notifier.errors import WhatsAppPermanentError, WhatsAppTransientError
from notifier.guard import Hold, SendGuard
from notifier.pricing import RateCard, estimate
from notifier.quiet import QuietHours
from notifier.ratelimit import SlidingWindow
from notifier.render import template_problems
from notifier.retry import RandomSource, RetryPolicy
from notifier.store import inbox, ledger, outbox
from notifier.store.outbox import AcceptedSend, OutboxMessage, rendered_from_payload
from notifier.webhooks import apply_pending_statuses, settle_early_statuses

log = structlog.get_logger("notifier.dispatch")


class MessageSender(Protocol):
    """The part of the WhatsApp adapter dispatch needs."""

    def send_template(
        self, to: str, template: RenderedTemplate, *, callback_data: str
    ) -> SendResult: ...

    def send_text(self, to: str, body: str, *, reply_to: str | None = None) -> SendResult: ...


@dataclass
class Dispatcher:
    engine: Engine
    sender: MessageSender
    rate_cards: Mapping[str, RateCard]
    default_languages: Mapping[str, str]
    clock: Callable[[], datetime]
    rng: RandomSource
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    recipient_spacing: timedelta = timedelta(seconds=6)
    stop_pause: timedelta = timedelta(minutes=5)
    batch_size: int = 100
    quiet_hours: Mapping[str, QuietHours] = field(default_factory=dict)
    throughput: SlidingWindow = field(default_factory=lambda: SlidingWindow(rate=80.0))
    concurrent_sends: int = 4
    write_every: int = 20
    write_within: float = 0.5  # seconds an accepted send may wait for its batched write
    stale_sending: timedelta = timedelta(seconds=30)
    ambiguous_grace: timedelta = timedelta(minutes=15)
    unreachable_skip: timedelta = timedelta(days=7)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    guard: SendGuard | None = None
    _pace_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _write_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    outcomes: Outcomes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.outcomes = Outcomes(self._writing, self.clock, self.rng, self.policy, self.stop_pause)

    @property
    def paused_until(self) -> datetime | None:
        """Set by a "stop everything" error: no sends for this number before then."""
        return self.outcomes.paused_until

    def dispatch_due(self) -> DispatchResult:
        """Send what is due now; returns counts for the canonical log line."""
        result = DispatchResult()
        now = self.clock()
        if self.paused_until and now < self.paused_until:
            return result
        self._recover(now)
        with self._writing() as conn:
            claimed = outbox.claim_due(conn, now=now, limit=self.batch_size)
        if not claimed:
            return result
        batch = read_batch(self.engine, claimed, now, unreachable_skip=self.unreachable_skip)
        try:
            for lane_result in self._run_lanes(batch):
                result.add(lane_result)
        finally:
            self._write_accepted(batch)
            self._release([m for m in claimed if m.id not in batch.started])
        log.info("dispatch.finished", claimed=len(claimed), **vars(result))
        return result

    def _run_lanes(self, batch: Batch) -> list[DispatchResult]:
        """One lane per recipient, in claim order; lanes run side by side on a few threads, so one
        recipient's messages still go one after the other, in order."""
        lanes: dict[str, list[OutboxMessage]] = {}
        for message in batch.claimed:
            lanes.setdefault(message.recipient or "", []).append(message)
        if self.concurrent_sends <= 1 or len(lanes) == 1:
            return [self._run_lane(lane, batch) for lane in lanes.values()]
        workers = min(self.concurrent_sends, len(lanes))
        with ThreadPoolExecutor(workers, thread_name_prefix="notifier-send") as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, self._run_lane, lane, batch)
                for lane in lanes.values()
            ]
            return [future.result() for future in futures]

    def _run_lane(self, lane: list[OutboxMessage], batch: Batch) -> DispatchResult:
        result = DispatchResult()
        for message in lane:
            if self.paused_until and self.clock() < self.paused_until:
                break
            with batch.lock:
                batch.started.add(message.id)
            self._dispatch_one(message, batch, result)
        return result

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction; this process's senders take turns (SQLite has one writer, and
        waiting on our own lock is cheaper than its busy timeout)."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _recover(self, now: datetime) -> None:
        """After a crash: ``sending`` rows become ambiguous; ambiguous ones with no evidence after
        the grace are resent once (the status webhook, tied by our id, usually settles them first)."""
        with self._writing() as conn:
            unsent = outbox.recover_stale_claims(conn, older_than=now - self.stale_sending, now=now)
            stale = outbox.recover_stale_sending(conn, older_than=now - self.stale_sending, now=now)
            resent = outbox.resend_stale_ambiguous(
                conn, older_than=now - self.ambiguous_grace, now=now
            )
        if unsent or stale:
            log.warning("dispatch.recovered", requeued=unsent, ambiguous=stale)
        for message_id in resent:
            log.warning("message.resend_after_ambiguity", message_id=message_id)

    def _release(self, messages: list[OutboxMessage]) -> None:
        if messages:
            with self._writing() as conn:
                outbox.release_claims(conn, [m.id for m in messages], now=self.clock())

    def _dispatch_one(self, message: OutboxMessage, batch: Batch, result: DispatchResult) -> None:
        structlog.contextvars.bind_contextvars(message_id=message.id, store=message.store)
        try:
            if message.kind == "text":
                self._send_reply(message, batch, result)
                return
            self._send_template(message, batch, result)
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "store")

    def _send_template(self, message: OutboxMessage, batch: Batch, result: DispatchResult) -> None:
        now = self.clock()
        recipient = message.recipient or ""
        last_send = batch.last_sends.get(recipient)
        if phones.digits(recipient) in batch.opted_out:
            self.outcomes.finish_unsent(
                message, "skipped", "opted_out", result, title="recipient opted out"
            )
            return
        if recipient in batch.unreachable:
            title = "recipient recently undeliverable (131026)"
            self.outcomes.finish_unsent(message, "skipped", "unreachable", result, title=title)
            return
        hours = self.quiet_hours.get(message.store)
        release = hours.release_at(now, Urgency(message.urgency)) if hours else None
        if release is not None:
            self.outcomes.defer(message, release, result, status="deferred")
            return
        if last_send is not None and now - last_send < self.recipient_spacing:
            self.outcomes.defer(message, last_send + self.recipient_spacing, result)
            return
        rendered, info = self._resolve_template(message, batch.templates)
        checked = self._checked(message, rendered, info, batch, result)
        if checked is not None:
            self._send(message, checked, batch, result)

    def _send_reply(self, message: OutboxMessage, batch: Batch, result: DispatchResult) -> None:
        """Free-form text only inside the 24 h window; after it, the fallback template or nothing (BR-11)."""
        if batch.window_open(message.recipient or "", self.clock()):
            self._send(message, None, batch, result)
            return
        fallback = message.payload.get("fallback")
        if not fallback:
            self.outcomes.finish_unsent(
                message, "skipped", "window_closed", result, title="service window closed"
            )
            return
        rendered = rendered_from_payload(fallback)
        checked = self._checked(
            message,
            rendered,
            batch.templates.get((rendered.name, rendered.language)),
            batch,
            result,
        )
        if checked is not None:
            log.info("reply.window_closed_template", template=rendered.name)
            self._send(message, checked, batch, result)

    def _checked(
        self,
        message: OutboxMessage,
        rendered: RenderedTemplate,
        info: TemplateInfo | None,
        batch: Batch,
        result: DispatchResult,
    ) -> tuple[RenderedTemplate, TemplateInfo] | None:
        """The pre-send check against the account's template (BR-06); a failure alerts once per template."""
        hold = self._budget_or_drift(message, rendered, info, batch)
        if hold is not None:
            self._hold(message, hold, result)
            return None
        if info is None:
            problems = ["template not found in the business account"]
        else:
            problems = template_problems(rendered, info)
        if problems:
            self.outcomes.template_failure(message, rendered, "; ".join(problems), result)
            return None
        assert info is not None
        return rendered, info

    def _budget_or_drift(
        self,
        message: OutboxMessage,
        rendered: RenderedTemplate,
        info: TemplateInfo | None,
        batch: Batch,
    ) -> Hold | None:
        """The guard's verdict. A budgeted store's spend is read once per batch and each send that
        passes reserves its estimate at once, so concurrent lanes and the batched ledger writes
        cannot carry the month past the cap unnoticed."""
        if self.guard is None:
            return None
        now = self.clock()
        if not self.guard.has_budget(message):
            return self.guard.hold(message, rendered, info, now)
        guard = self.guard
        with batch.lock:
            spent = batch.spent.get(message.store)
            if spent is None:
                spent = batch.spent[message.store] = guard.spent(message.store, now)
            hold = guard.hold(message, rendered, info, now, spent=lambda: spent)
            price = self._estimate(message, info, batch, now)
            if hold is None and price.amount is not None and price.currency:
                spent[price.currency] = spent.get(price.currency, Decimal(0)) + price.amount
        return hold

    def _hold(self, message: OutboxMessage, hold: Hold, result: DispatchResult) -> None:
        """Drifted template or spent budget: the row waits intact, with the reason, and ops hear once."""
        assert self.guard is not None
        now = self.clock()
        with self._writing() as conn:
            outbox.set_status(
                conn,
                message.id,
                "deferred",
                now=now,
                attempts=message.attempts - 1,
                next_attempt_at=hold.retry_at,
                error_title=hold.reason,
            )
            self.guard.alert(conn, hold, store=message.store, now=now)
        result.deferred += 1
        log.info("message.held", reason=hold.reason, retry_at=hold.retry_at.isoformat())

    def _resolve_template(
        self, message: OutboxMessage, templates: Mapping[tuple[str, str], TemplateInfo]
    ) -> tuple[RenderedTemplate, TemplateInfo | None]:
        """Use the row's language; fall back to the store default only when that pair exists (BR-10)."""
        rendered = message.template
        info = templates.get((rendered.name, rendered.language))
        default = self.default_languages.get(message.store)
        if info is None and default and (rendered.name, default) in templates:
            rendered = RenderedTemplate(
                rendered.name, default, rendered.body, rendered.button_url_suffix
            )
            info = templates[(rendered.name, default)]
        return rendered, info

    def _send(
        self,
        message: OutboxMessage,
        template: tuple[RenderedTemplate, TemplateInfo] | None,
        batch: Batch,
        result: DispatchResult,
    ) -> None:
        recipient = message.recipient or ""
        outcome: SendResult | WhatsAppTransientError | WhatsAppPermanentError
        with self._send_slot():
            if not self._mark_sending(message, batch):
                log.warning("message.claim_lost", message_id=message.id)
                return
            try:
                if template is None:
                    outcome = self.sender.send_text(
                        recipient, message.payload["body"], reply_to=message.payload.get("reply_to")
                    )
                else:
                    outcome = self.sender.send_template(
                        recipient, template[0], callback_data=str(message.id)
                    )
            except (WhatsAppTransientError, WhatsAppPermanentError) as exc:
                outcome = exc
        if isinstance(outcome, WhatsAppTransientError):
            self.outcomes.transient(message, outcome, result)
        elif isinstance(outcome, WhatsAppPermanentError):
            self.outcomes.permanent(message, template[0] if template else None, outcome, result)
        else:
            self._accepted(message, outcome, template[1] if template else None, batch, result)

    def _mark_sending(self, message: OutboxMessage, batch: Batch) -> bool:
        """Group commit: whoever holds the write lock marks every lane waiting for it, so when a
        lane gets the lock its row is already ``sending`` (by itself or by the lane before).
        False: the row was no longer ours (another replica requeued and took it), so no send."""
        with batch.lock:
            batch.to_mark.append(message.id)
        with self._write_lock:
            with batch.lock:
                ids, batch.to_mark = batch.to_mark, []
            if ids:
                try:
                    with self.engine.begin() as conn:
                        moved = outbox.mark_sending(conn, ids, now=self.clock())
                except BaseException:  # other lanes' rows are not marked: the next holder retries
                    with batch.lock:
                        batch.to_mark.extend(i for i in ids if i != message.id)
                    raise
                with batch.lock:
                    batch.marked.update(moved)
        with batch.lock:
            return message.id in batch.marked

    def _accepted(
        self,
        message: OutboxMessage,
        sent: SendResult,
        info: TemplateInfo | None,
        batch: Batch,
        result: DispatchResult,
    ) -> None:
        """The row stays ``sending`` until its batched write (a crash before it leaves the row
        ambiguous, settled by the status webhook that carries our id)."""
        now = self.clock()
        price = self._estimate(message, info, batch, now)
        batch.last_sends[message.recipient or ""] = now
        with batch.lock:
            batch.accepted.append(Accepted(message, sent.wamid, price, now))
            if batch.oldest_unwritten is None:
                batch.oldest_unwritten = self.monotonic()
            due = (
                len(batch.accepted) >= self.write_every
                or self.monotonic() - batch.oldest_unwritten >= self.write_within
            )
        if due:
            self._write_accepted(batch)
        result.sent += 1
        log.info(
            "message.sent",
            wamid=sent.wamid,
            template=message.payload.get("name"),
            to=phones.mask(message.recipient or ""),
            order_number=message.order_number,
            estimated_cost=str(price.amount) if price.amount is not None else "unknown",
            currency=price.currency,
            free_reason=price.free_reason,
            attempts=message.attempts,
        )

    def _write_accepted(self, batch: Batch) -> None:
        """The accepted sends so far: statuses, ledger estimates and early webhooks, in one go."""
        with batch.lock:
            pending, batch.accepted, batch.oldest_unwritten = batch.accepted, [], None
        if not pending:
            return
        sends = [AcceptedSend(a.message.id, a.wamid, a.at) for a in pending]
        with self._writing() as conn:
            statuses = outbox.mark_accepted(conn, sends)
            ledger.record_for_messages(
                conn, [(a.message, a.price, statuses[a.message.id], a.at) for a in pending]
            )
            early = inbox.wamids_with_unapplied_statuses(conn, [a.wamid for a in pending])
            for a in pending:
                if a.wamid in early:
                    apply_pending_statuses(conn, a.wamid, a.message.id, self.rate_cards, now=a.at)
                if statuses[a.message.id] != "accepted":  # a webhook came before the answer
                    settle_early_statuses(conn, a.message.id, self.rate_cards, now=a.at)

    def _estimate(
        self, message: OutboxMessage, info: TemplateInfo | None, batch: Batch, now: datetime
    ) -> Price:
        market = phones.market_of(message.recipient or "")
        if info is None:  # a free-form reply: free inside the window, and only sent there
            return Price(Decimal(0), None, None, "service", market, "service_window")
        window = batch.window_open(message.recipient or "", now)
        card = self.rate_cards.get(message.store) or RateCard()
        return estimate(
            card, market=market, category=info.category.lower(), on=now.date(), window_open=window
        )

    @contextmanager
    def _send_slot(self) -> Iterator[None]:
        """The business number's throughput limit (default 80 messages/s in any second)."""
        while True:
            with self._pace_lock:
                wait = self.throughput.wait_time(self.monotonic())
                if wait <= 0:
                    self.throughput.start()
                    break
            self.sleep(wait)
        try:
            yield
        finally:
            with self._pace_lock:
                self.throughput.finish(self.monotonic())
