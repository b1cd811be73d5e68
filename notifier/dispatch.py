"""Use case: drain the outbox — policy checks, pricing, send, and classify every failure.

A claimed row is ``sending`` before the HTTP call, so a crash leaves evidence; a timeout after the
request left us is ``ambiguous`` and is settled by the status webhook (``biz_opaque_callback_data`` is
our message id), never by a blind resend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import structlog
from sqlalchemy import Connection, Engine

from notifier import phones
from notifier.domain import Price, RenderedTemplate, SendResult, TemplateInfo, Urgency
from notifier.errors import WhatsAppErrorKind, WhatsAppPermanentError, WhatsAppTransientError
from notifier.pricing import RateCard, estimate
from notifier.quiet import QuietHours
from notifier.ratelimit import TokenBucket
from notifier.render import template_problems
from notifier.retry import RandomSource, RetryPolicy, next_attempt_at, pair_rate_delay
from notifier.store import inbox, ledger, outbox, registry
from notifier.store.outbox import OutboxMessage, rendered_from_payload
from notifier.webhooks import apply_pending_statuses, settle_early_statuses

log = structlog.get_logger("notifier.dispatch")


class MessageSender(Protocol):
    """The part of the WhatsApp adapter dispatch needs."""

    def send_template(
        self, to: str, template: RenderedTemplate, *, callback_data: str
    ) -> SendResult: ...

    def send_text(self, to: str, body: str, *, reply_to: str | None = None) -> SendResult: ...


@dataclass
class DispatchResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    ambiguous: int = 0


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
    paused_until: datetime | None = None
    quiet_hours: Mapping[str, QuietHours] = field(default_factory=dict)
    throughput: TokenBucket = field(default_factory=lambda: TokenBucket(rate=80.0))
    stale_sending: timedelta = timedelta(seconds=30)
    ambiguous_grace: timedelta = timedelta(minutes=15)
    unreachable_skip: timedelta = timedelta(days=7)
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def dispatch_due(self) -> DispatchResult:
        """Send what is due now; returns counts for the canonical log line."""
        result = DispatchResult()
        now = self.clock()
        if self.paused_until and now < self.paused_until:
            return result
        self._recover(now)
        with self.engine.begin() as conn:
            claimed = outbox.claim_due(conn, now=now, limit=self.batch_size)
        with self.engine.connect() as conn:
            templates = registry.load_templates(conn)
        for index, message in enumerate(claimed):
            if self.paused_until and self.clock() < self.paused_until:
                self._release(claimed[index:])
                break
            self._dispatch_one(message, templates, result)
        if claimed:
            log.info("dispatch.finished", claimed=len(claimed), **vars(result))
        return result

    def _recover(self, now: datetime) -> None:
        """After a crash: ``sending`` rows become ambiguous; ambiguous ones with no evidence after
        the grace are resent once (the status webhook, tied by our id, usually settles them first)."""
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            for m in messages:
                outbox.set_status(conn, m.id, "queued", now=self.clock(), attempts=m.attempts - 1)

    def _dispatch_one(
        self,
        message: OutboxMessage,
        templates: Mapping[tuple[str, str], TemplateInfo],
        result: DispatchResult,
    ) -> None:
        structlog.contextvars.bind_contextvars(message_id=message.id, store=message.store)
        try:
            if message.kind == "text":
                self._send_reply(message, templates, result)
                return
            self._send_template(message, templates, result)
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "store")

    def _send_template(
        self,
        message: OutboxMessage,
        templates: Mapping[tuple[str, str], TemplateInfo],
        result: DispatchResult,
    ) -> None:
        now = self.clock()
        recipient = message.recipient or ""
        with self.engine.connect() as conn:
            opted_out = inbox.is_opted_out(conn, phones.digits(recipient))
            last_send = outbox.last_send_to(conn, recipient)
        if opted_out:
            self._finish_unsent(
                message, "skipped", "opted_out", result, title="recipient opted out"
            )
            return
        if self._unreachable(recipient, now):
            title = "recipient recently undeliverable (131026)"
            self._finish_unsent(message, "skipped", "unreachable", result, title=title)
            return
        hours = self.quiet_hours.get(message.store)
        release = hours.release_at(now, Urgency(message.urgency)) if hours else None
        if release is not None:
            self._defer(message, release, result, status="deferred")
            return
        if last_send is not None and now - last_send < self.recipient_spacing:
            self._defer(message, last_send + self.recipient_spacing, result)
            return
        rendered, info = self._resolve_template(message, templates)
        checked = self._checked(message, rendered, info, result)
        if checked is not None:
            self._send(message, checked, result)

    def _send_reply(
        self,
        message: OutboxMessage,
        templates: Mapping[tuple[str, str], TemplateInfo],
        result: DispatchResult,
    ) -> None:
        """Free-form text only inside the 24 h window; after it, the fallback template or nothing (BR-11)."""
        with self.engine.connect() as conn:
            window = inbox.window_open(conn, phones.digits(message.recipient or ""), self.clock())
        if window:
            self._send(message, None, result)
            return
        fallback = message.payload.get("fallback")
        if not fallback:
            self._finish_unsent(
                message, "skipped", "window_closed", result, title="service window closed"
            )
            return
        rendered = rendered_from_payload(fallback)
        checked = self._checked(
            message, rendered, templates.get((rendered.name, rendered.language)), result
        )
        if checked is not None:
            log.info("reply.window_closed_template", template=rendered.name)
            self._send(message, checked, result)

    def _checked(
        self,
        message: OutboxMessage,
        rendered: RenderedTemplate,
        info: TemplateInfo | None,
        result: DispatchResult,
    ) -> tuple[RenderedTemplate, TemplateInfo] | None:
        """The pre-send check against the account's template (BR-06); a failure alerts once per template."""
        if info is None:
            problems = ["template not found in the business account"]
        else:
            problems = template_problems(rendered, info)
        if problems:
            self._template_failure(message, rendered, "; ".join(problems), result)
            return None
        assert info is not None
        return rendered, info

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
        result: DispatchResult,
    ) -> None:
        recipient = message.recipient or ""
        self._pace()
        with self.engine.begin() as conn:
            outbox.mark_sending(conn, message.id, now=self.clock())
        try:
            if template is None:
                sent = self.sender.send_text(
                    recipient, message.payload["body"], reply_to=message.payload.get("reply_to")
                )
            else:
                sent = self.sender.send_template(
                    recipient, template[0], callback_data=str(message.id)
                )
        except WhatsAppTransientError as exc:
            self._transient(message, exc, result)
            return
        except WhatsAppPermanentError as exc:
            self._permanent(message, template[0] if template else None, exc, result)
            return
        self._accepted(message, sent, template[1] if template else None, result)

    def _accepted(
        self,
        message: OutboxMessage,
        sent: SendResult,
        info: TemplateInfo | None,
        result: DispatchResult,
    ) -> None:
        now = self.clock()
        price = self._estimate(message, info, now)
        with self.engine.begin() as conn:
            status = outbox.mark_accepted(conn, message.id, wamid=sent.wamid, now=now)
            self._ledger(conn, message, price, status, now)
            apply_pending_statuses(conn, sent.wamid, message.id, self.rate_cards, now=now)
            if status != "accepted":  # a status webhook was processed before the answer came
                settle_early_statuses(conn, message.id, self.rate_cards, now=now)
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

    def _estimate(self, message: OutboxMessage, info: TemplateInfo | None, now: datetime) -> Price:
        market = phones.market_of(message.recipient or "")
        if info is None:  # a free-form reply: free inside the window, and only sent there
            return Price(Decimal(0), None, None, "service", market, "service_window")
        with self.engine.connect() as conn:
            window = inbox.window_open(conn, phones.digits(message.recipient or ""), now)
        card = self.rate_cards.get(message.store) or RateCard()
        return estimate(
            card, market=market, category=info.category.lower(), on=now.date(), window_open=window
        )

    def _ledger(
        self, conn: Connection, message: OutboxMessage, price: Price, status: str, now: datetime
    ) -> None:
        ledger.record_for_message(conn, message, price, status=status, now=now)

    def _unreachable(self, recipient: str, now: datetime) -> bool:
        if self.unreachable_skip <= timedelta(0):
            return False
        with self.engine.connect() as conn:
            return outbox.recently_undeliverable(conn, recipient, since=now - self.unreachable_skip)

    def _pace(self) -> None:
        """The business number's throughput limit (token bucket; default 80 messages/s)."""
        wait = self.throughput.wait_time(self.monotonic())
        if wait > 0:
            self.sleep(wait)
        self.throughput.take(self.monotonic())

    def _defer(
        self,
        message: OutboxMessage,
        until: datetime,
        result: DispatchResult,
        *,
        status: str = "queued",
    ) -> None:
        """Not a failure: the row waits (same attempt count); quiet hours show as ``deferred``."""
        with self.engine.begin() as conn:
            outbox.set_status(
                conn,
                message.id,
                status,
                now=self.clock(),
                attempts=message.attempts - 1,
                next_attempt_at=until,
            )
        result.deferred += 1

    def _transient(
        self, message: OutboxMessage, exc: WhatsAppTransientError, result: DispatchResult
    ) -> None:
        now = self.clock()
        if exc.kind is WhatsAppErrorKind.AMBIGUOUS:
            with self.engine.begin() as conn:
                unsettled = outbox.mark_ambiguous(conn, message.id, now=now, error_title=str(exc))
            result.ambiguous += 1
            log.warning("message.ambiguous", error=str(exc), settled_by_webhook=not unsettled)
            return
        if exc.kind is WhatsAppErrorKind.RECIPIENT_LATER:
            retry_at: datetime | None = now + timedelta(seconds=pair_rate_delay(message.attempts))
        else:
            retry_at = next_attempt_at(
                self.policy,
                attempt=message.attempts,
                now=now,
                rng=self.rng,
                retry_after=exc.retry_after,
            )
        if retry_at is None:
            self._finish_unsent(
                message,
                "failed",
                "failed",
                result,
                code=exc.code,
                title=f"gave up after {message.attempts} attempts: {exc}",
            )
            return
        with self.engine.begin() as conn:
            outbox.set_status(
                conn,
                message.id,
                "queued",
                now=now,
                next_attempt_at=retry_at,
                error_code=exc.code,
                error_title=str(exc),
            )
        result.retried += 1
        log.info(
            "message.retry", code=exc.code, retry_at=retry_at.isoformat(), attempts=message.attempts
        )

    def _permanent(
        self,
        message: OutboxMessage,
        rendered: RenderedTemplate | None,
        exc: WhatsAppPermanentError,
        result: DispatchResult,
    ) -> None:
        if exc.kind is WhatsAppErrorKind.STOP:
            self._stop_everything(message, exc)
            return
        if exc.kind is WhatsAppErrorKind.TEMPLATE and rendered is not None:
            self._alert_template(rendered, f"WhatsApp error {exc.code}: {exc}")
        self._finish_unsent(
            message,
            "failed",
            "failed",
            result,
            code=exc.code,
            title=exc.title or str(exc),
            details=exc.details,
        )

    def _stop_everything(self, message: OutboxMessage, exc: WhatsAppPermanentError) -> None:
        """Account-level trouble: keep the row queued, pause dispatch, tell ops once."""
        now = self.clock()
        self.paused_until = now + self.stop_pause
        with self.engine.begin() as conn:
            outbox.set_status(conn, message.id, "queued", now=now, attempts=message.attempts - 1)
            first = registry.raise_alert(
                conn,
                key=f"stop:{exc.code}",
                kind="dispatch_paused",
                message=f"WhatsApp error {exc.code}: {exc}",
                now=now,
            )
        if first:
            log.error(
                "alert.dispatch_paused",
                code=exc.code,
                error=str(exc),
                paused_until=self.paused_until.isoformat(),
            )

    def _template_failure(
        self,
        message: OutboxMessage,
        rendered: RenderedTemplate,
        reason: str,
        result: DispatchResult,
    ) -> None:
        self._alert_template(rendered, reason)
        self._finish_unsent(
            message, "failed", "failed", result, title=f"template check failed: {reason}"
        )

    def _alert_template(self, rendered: RenderedTemplate, reason: str) -> None:
        with self.engine.begin() as conn:
            first = registry.raise_alert(
                conn,
                key=f"template:{rendered.name}:{rendered.language}",
                kind="template",
                message=reason,
                now=self.clock(),
            )
        if first:
            log.error(
                "alert.template", template=rendered.name, language=rendered.language, reason=reason
            )

    def _finish_unsent(
        self,
        message: OutboxMessage,
        status: str,
        free_reason: str,
        result: DispatchResult,
        *,
        code: int | None = None,
        title: str | None = None,
        details: str | None = None,
    ) -> None:
        """A message that will never be sent: final status, and a zero-cost ledger row saying why."""
        now = self.clock()
        price = Price(
            Decimal(0),
            None,
            None,
            "utility",
            phones.market_of(message.recipient or ""),
            free_reason,
        )
        with self.engine.begin() as conn:
            outbox.set_status(
                conn,
                message.id,
                status,
                now=now,
                error_code=code,
                error_title=title,
                error_details=details,
            )
            self._ledger(conn, message, price, status, now)
        if status == "failed":
            result.failed += 1
        else:
            result.skipped += 1
        log.warning(
            f"message.{status}", code=code, reason=title, to=phones.mask(message.recipient or "")
        )
