"""Sends the business would regret: a template that drifted, or a store past its monthly budget.

Meta bills the category in force when a template is sent, so a template re-categorised to MARKETING
(or PAUSED, DISABLED) must stop its sends before the next dispatch, and a store that set a monthly
budget must stop proactive sends once it is spent. Neither is a failure of the message: the row
stays in the outbox as ``deferred`` with the reason in ``error_title`` and is looked at again after
``recheck``; ops hear once per template, and once per store and month.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import structlog
from sqlalchemy import Connection, Engine, func, select

from notifier.config import RATE_CARD_CURRENCY
from notifier.domain import RenderedTemplate, TemplateInfo
from notifier.errors import ConfigError
from notifier.pricing import RateCard
from notifier.store import registry
from notifier.store.outbox import OutboxMessage
from notifier.store.tables import ledger
from notifier.webhook_parse import TemplateUpdate

log = structlog.get_logger("notifier.guard")


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a message waits, and the alert (raised once per key) that tells ops."""

    reason: str
    alert_key: str
    alert_kind: str
    retry_at: datetime


def template_drift(info: TemplateInfo) -> str | None:
    """Why Meta would bill or refuse this template differently from an APPROVED UTILITY one."""
    label = f"template {info.name}/{info.language}"
    if info.status.upper() != "APPROVED":
        return f"{label} is {info.status.upper()}, not APPROVED"
    if info.category.upper() != "UTILITY":
        return f"{label} is categorised {info.category.upper()}, not UTILITY"
    return None


def template_alert_key(name: str, language: str) -> str:
    """The dispatcher's template alerts use this key too, so each template alerts once."""
    return f"template:{name}:{language}"


def alert_template_drift(conn: Connection, info: TemplateInfo, *, now: datetime) -> bool:
    """Raise the template's alert if it drifted; True only the first time."""
    reason = template_drift(info)
    if reason is None:
        return False
    first = registry.raise_alert(
        conn,
        key=template_alert_key(info.name, info.language),
        kind="template",
        message=f"{reason}; its sends are held",
        now=now,
    )
    if first:
        log.error("alert.template", template=info.name, language=info.language, reason=reason)
    return first


def month_start(now: datetime) -> date:
    return now.astimezone(UTC).date().replace(day=1)


def over_budget(caps: Mapping[str, Decimal], spent: Mapping[str, Decimal]) -> str | None:
    """Pure: the first currency whose spend reached its cap, as a sentence; None when under."""
    for currency, cap in sorted(caps.items()):
        used = spent.get(currency, Decimal(0))
        if used >= cap:
            return f"monthly budget of {cap} {currency} reached ({used} {currency} spent)"
    return None


def spent_this_month(conn: Connection, store: str, now: datetime) -> dict[str, Decimal]:
    """The store's ledger total per currency since the 1st of the month (UTC): confirmed, else
    estimated. Rows are counted per distinct amount in SQL (a month has few distinct prices), so
    the sum stays exact Decimal without reading every row."""
    query = (
        select(ledger.c.currency, ledger.c.estimated_cost, ledger.c.confirmed_cost, func.count())
        .where(ledger.c.store == store, ledger.c.priced_on >= month_start(now))
        .group_by(ledger.c.currency, ledger.c.estimated_cost, ledger.c.confirmed_cost)
    )
    totals: dict[str, Decimal] = {}
    for currency, estimated, confirmed, count in conn.execute(query):
        cost = confirmed if confirmed is not None else estimated
        if currency and cost is not None:
            totals[currency] = totals.get(currency, Decimal(0)) + cost * count
    return totals


def apply_template_updates(
    engine: Engine, updates: tuple[TemplateUpdate, ...], clock: Callable[[], datetime]
) -> None:
    """Meta's template webhooks update the registry at once, so the next dispatch holds a template
    that was paused, disabled or re-categorised; an advance notice (``correct_category``) only alerts."""
    for update in updates:
        try:
            _apply_template_update(engine, update, clock())
        except Exception:  # isolate the item, like every other item of a webhook batch
            log.exception("template_update.failed", template=update.name)


def _apply_template_update(engine: Engine, update: TemplateUpdate, now: datetime) -> None:
    if update.name is None:
        log.warning("template_update.unnamed", field=update.field_name)
        return
    status, category = _template_change(update)
    with engine.begin() as conn:
        changed = registry.update_template(
            conn, update.name, update.language, status=status, category=category, now=now
        )
        for info in changed:
            alert_template_drift(conn, info, now=now)
        if status is None and category is None and update.correct_category:
            registry.raise_alert(
                conn,
                key=f"template_notice:{update.name}:{update.language}",
                kind="template_notice",
                message=f"Meta will re-categorise template {update.name}/{update.language}"
                f" as {update.correct_category}",
                now=now,
            )
    log.info(
        "template_update.applied",
        template=update.name,
        language=update.language,
        status=status,
        category=category,
        templates=len(changed),
    )


def _template_change(update: TemplateUpdate) -> tuple[str | None, str | None]:
    """(new status, new category) announced by one template webhook; None where unchanged."""
    if update.field_name == "message_template_status_update":
        event = (update.event or "").upper()
        return _TEMPLATE_EVENT_STATUS.get(
            event, event if event in _TEMPLATE_STATUSES else None
        ), None
    if update.correct_category and update.correct_category != update.new_category:
        return None, None  # advance notice: Meta moves it later, and says so again then
    return None, update.new_category


_TEMPLATE_STATUSES = frozenset(
    {"APPROVED", "REJECTED", "PAUSED", "DISABLED", "PENDING", "PENDING_DELETION", "DELETED"}
)
_TEMPLATE_EVENT_STATUS = {"REINSTATED": "APPROVED"}


@dataclass
class SendGuard:
    """The dispatcher's hook: a Hold for a message that must not go out now, else None."""

    engine: Engine
    budgets: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    recheck: timedelta = timedelta(minutes=10)

    def hold(
        self,
        message: OutboxMessage,
        rendered: RenderedTemplate,
        info: TemplateInfo | None,
        now: datetime,
        spent: Callable[[], Mapping[str, Decimal]] | None = None,
    ) -> Hold | None:
        """``spent`` gives the store's month so far (the dispatcher adds its unwritten sends);
        without it the ledger is read."""
        drift = template_drift(info) if info is not None else None
        if drift is not None:
            key = template_alert_key(rendered.name, rendered.language)
            return Hold(f"held: {drift}", key, "template", now + self.recheck)
        caps = self.budgets.get(message.store)
        if not self.has_budget(message):
            return None
        assert caps is not None
        reason = over_budget(caps, spent() if spent else self.spent(message.store, now))
        if reason is None:
            return None
        key = f"budget:{message.store}:{month_start(now):%Y-%m}"
        return Hold(f"paused: {reason}", key, "budget", now + self.recheck)

    def has_budget(self, message: OutboxMessage) -> bool:
        """Replies to customers are never paused; only a store with a cap is checked."""
        return message.kind == "template" and bool(self.budgets.get(message.store))

    def spent(self, store: str, now: datetime) -> dict[str, Decimal]:
        with self.engine.connect() as conn:
            return spent_this_month(conn, store, now)

    def alert(self, conn: Connection, hold: Hold, *, store: str, now: datetime) -> None:
        """Tell ops once per key (template, or store and month)."""
        if registry.raise_alert(
            conn, key=hold.alert_key, kind=hold.alert_kind, message=hold.reason, now=now
        ):
            log.error(f"alert.{hold.alert_kind}", store=store, reason=hold.reason)


def resolve_budget(
    caps: Mapping[str, Decimal], card: RateCard, *, store: str, country: str, on: date
) -> dict[str, Decimal]:
    """Turn a plain budget (``RATE_CARD_CURRENCY``) into the currency of the store's country's rates."""
    resolved = {currency: cap for currency, cap in caps.items() if currency != RATE_CARD_CURRENCY}
    if RATE_CARD_CURRENCY in caps:
        rate = card.rate_for(country, "utility", on)
        if rate is None:
            raise ConfigError(
                [
                    f"store {store!r}: monthly_budget has no currency and the rate card has no"
                    f" utility rate for {country}; write it as {{ INR = ... }}"
                ]
            )
        resolved.setdefault(rate.currency, caps[RATE_CARD_CURRENCY])
    return resolved
