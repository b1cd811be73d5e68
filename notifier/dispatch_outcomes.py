"""What happens to an outbox row that was not cleanly sent: it waits, is retried, fails with its
reason, or pauses dispatch; template trouble alerts once per template, never once per order."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from sqlalchemy import Connection

from notifier import phones
from notifier.domain import Price, RenderedTemplate
from notifier.errors import WhatsAppErrorKind, WhatsAppPermanentError, WhatsAppTransientError
from notifier.retry import RandomSource, RetryPolicy, next_attempt_at, pair_rate_delay
from notifier.store import ledger, outbox, registry
from notifier.store.outbox import OutboxMessage

log = structlog.get_logger("notifier.dispatch")


@dataclass
class DispatchResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    ambiguous: int = 0

    def add(self, other: DispatchResult) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class Outcomes:
    """Writes each unsent outcome through ``writing`` (the dispatcher's write turn)."""

    writing: Callable[[], AbstractContextManager[Connection]]
    clock: Callable[[], datetime]
    rng: RandomSource
    policy: RetryPolicy
    stop_pause: timedelta
    paused_until: datetime | None = None

    def defer(
        self,
        message: OutboxMessage,
        until: datetime,
        result: DispatchResult,
        *,
        status: str = "queued",
    ) -> None:
        """Not a failure: the row waits (same attempt count); quiet hours show as ``deferred``."""
        with self.writing() as conn:
            outbox.set_status(
                conn,
                message.id,
                status,
                now=self.clock(),
                attempts=message.attempts - 1,
                next_attempt_at=until,
            )
        result.deferred += 1

    def transient(
        self, message: OutboxMessage, exc: WhatsAppTransientError, result: DispatchResult
    ) -> None:
        now = self.clock()
        if exc.kind is WhatsAppErrorKind.AMBIGUOUS:
            with self.writing() as conn:
                unsettled = outbox.mark_ambiguous(conn, message.id, now=now, error_title=str(exc))
            result.ambiguous += 1
            log.warning("message.ambiguous", error=str(exc), settled_by_webhook=not unsettled)
            return
        retry_at = self._retry_at(message, exc, now)
        if retry_at is None:
            title = f"gave up after {message.attempts} attempts: {exc}"
            self.finish_unsent(message, "failed", "failed", result, code=exc.code, title=title)
            return
        with self.writing() as conn:
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

    def _retry_at(
        self, message: OutboxMessage, exc: WhatsAppTransientError, now: datetime
    ) -> datetime | None:
        """131056 spaces only this pair (BR-12); the rest back off with jitter, None = give up."""
        if exc.kind is WhatsAppErrorKind.RECIPIENT_LATER:
            return now + timedelta(seconds=pair_rate_delay(message.attempts))
        return next_attempt_at(
            self.policy,
            attempt=message.attempts,
            now=now,
            rng=self.rng,
            retry_after=exc.retry_after,
        )

    def permanent(
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
            self.alert_template(rendered, f"WhatsApp error {exc.code}: {exc}")
        self.finish_unsent(
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
        with self.writing() as conn:
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

    def template_failure(
        self,
        message: OutboxMessage,
        rendered: RenderedTemplate,
        reason: str,
        result: DispatchResult,
    ) -> None:
        self.alert_template(rendered, reason)
        self.finish_unsent(
            message, "failed", "failed", result, title=f"template check failed: {reason}"
        )

    def alert_template(self, rendered: RenderedTemplate, reason: str) -> None:
        with self.writing() as conn:
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

    def finish_unsent(
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
        market = phones.market_of(message.recipient or "")
        price = Price(Decimal(0), None, None, "utility", market, free_reason)
        with self.writing() as conn:
            outbox.set_status(
                conn,
                message.id,
                status,
                now=now,
                error_code=code,
                error_title=title,
                error_details=details,
            )
            ledger.record_for_message(conn, message, price, status=status, now=now)
        if status == "failed":
            result.failed += 1
        else:
            result.skipped += 1
        log.warning(
            f"message.{status}", code=code, reason=title, to=phones.mask(message.recipient or "")
        )
