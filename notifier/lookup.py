"""Use case: answer a customer who writes in — order lookup, help, STOP/START.

Every inbound message is stored once (its WhatsApp id is the key), opens or refreshes the sender's
24 h service window, and gets at most one reply, queued in the outbox under ``reply:<inbound id>`` so a
redelivered webhook can never produce a second answer. Order details go only to the order's owner;
anyone else gets the same neutral text whether or not the order exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine, func, select

from notifier import inbound, phones
from notifier.config import LookupSettings, StoreSettings
from notifier.domain import Order, RenderedTemplate, TemplateParam
from notifier.errors import NotifierError
from notifier.inbound import Intent, OrderReference
from notifier.labels import Labels
from notifier.render import lookup_reply, order_values
from notifier.store import inbox
from notifier.store.outbox import enqueue, template_payload
from notifier.store.tables import inbound_messages
from notifier.webhook_parse import InboundMessage

log = structlog.get_logger("notifier.lookup")


class OrderLookup(Protocol):
    def get_order(self, order_id: str) -> Order | None: ...

    def find_by_number(self, number: str) -> Order | None: ...


@dataclass(frozen=True)
class StoreLookup:
    settings: StoreSettings
    wix: OrderLookup


@dataclass(frozen=True)
class _Reply:
    text: str
    fallback: RenderedTemplate | None = None


@dataclass
class Responder:
    engine: Engine
    stores: Sequence[StoreLookup]
    settings: LookupSettings
    clock: Callable[[], datetime]
    on_queued: Callable[[], object] = lambda: None

    def handle(self, message: InboundMessage) -> None:
        """Store, open the window, decide the answer, queue it (once)."""
        now = self.clock()
        sender = message.from_wa_id
        text = storable_text(message.text)
        with self.engine.begin() as conn:
            is_new = inbox.record_inbound(
                conn,
                message_id=message.id,
                from_wa_id=sender,
                user_id=message.user_id,
                kind=message.type,
                text=text,
                sent_at=message.timestamp,
                now=now,
            )
            if is_new and sender:
                inbox.open_window(conn, sender, message.timestamp or now)
        if not is_new:
            log.info("inbound.duplicate", inbound_id=message.id)
            return
        if not sender:
            log.warning("inbound.no_phone_number", inbound_id=message.id, user_id=message.user_id)
            return
        intent = inbound.classify(text, message.type)
        log.info(
            "inbound.received",
            inbound_id=message.id,
            intent=intent.value,
            sender=phones.mask(sender),
        )
        reply = self._answer(intent, text, sender, now)
        if reply is not None:
            self._queue(message, sender, reply, now)

    def _answer(
        self, intent: Intent, text: str | None, sender: str, now: datetime
    ) -> _Reply | None:
        if intent is Intent.STOP:
            with self.engine.begin() as conn:
                first = inbox.opt_out(conn, sender, now)
            return _Reply(inbound.OPTED_OUT_CONFIRMATION) if first else None
        if intent is Intent.START:
            with self.engine.begin() as conn:
                changed = inbox.opt_in(conn, sender)
            return _Reply(inbound.OPTED_IN_CONFIRMATION if changed else inbound.HELP_TEXT)
        if intent is Intent.OTHER:
            return _Reply(inbound.NON_TEXT_REPLY)
        reference = inbound.find_order_reference(text or "")
        if intent is Intent.HELP or reference is None:
            return _Reply(inbound.HELP_TEXT)
        if self._lookups_in_last_hour(sender, now) > self.settings.max_lookups_per_hour:
            log.warning("lookup.rate_limited", sender=phones.mask(sender))
            return _Reply(inbound.TOO_MANY_LOOKUPS)
        return self._lookup(reference, sender)

    def _lookups_in_last_hour(self, sender: str, now: datetime) -> int:
        with self.engine.connect() as conn:
            count = conn.execute(
                select(func.count())
                .select_from(inbound_messages)
                .where(
                    inbound_messages.c.from_wa_id == sender,
                    inbound_messages.c.received_at > now - timedelta(hours=1),
                )
            ).scalar_one()
        return int(count)

    def _lookup(self, reference: OrderReference, sender: str) -> _Reply:
        """Search every store; details only for an order whose phone is the sender's."""
        for store in self.stores:
            try:
                order = _fetch(store.wix, reference)
            except NotifierError as exc:
                log.error(
                    "lookup.wix_error",
                    store=store.settings.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                return _Reply(inbound.LOOKUP_UNAVAILABLE)
            if order is not None and _owned_by(order, sender, store.settings.default_country):
                labels = Labels.for_language(order.buyer_language, store.settings.labels)
                log.info("lookup.answered", store=store.settings.name, order_number=order.number)
                return _Reply(
                    lookup_reply(order, labels, store.settings.name_fallback),
                    self._late_template(order, labels, store.settings),
                )
            if order is not None:
                log.warning(
                    "lookup.not_owner", store=store.settings.name, sender=phones.mask(sender)
                )
        return _Reply(inbound.NOT_FOUND_OR_NOT_YOURS)

    def _late_template(
        self, order: Order, labels: Labels, store: StoreSettings
    ) -> RenderedTemplate | None:
        """What to send instead if the reply can only go out after the window closed (BR-11)."""
        if self.settings.late_reply != "template":
            return None
        values = order_values(
            order, tracking=None, labels=labels, name_fallback=store.name_fallback
        )
        names = ("customer_name", "order_number", "payment_status", "fulfillment_status")
        return RenderedTemplate(
            self.settings.late_reply_template,
            self.settings.late_reply_language,
            tuple(TemplateParam(values[n] or labels.unknown) for n in names),
        )

    def _queue(self, message: InboundMessage, sender: str, reply: _Reply, now: datetime) -> None:
        payload: dict[str, Any] = {
            "body": reply.text,
            "reply_to": message.id,
            "fallback": template_payload(reply.fallback) if reply.fallback else None,
        }
        with self.engine.begin() as conn:
            enqueue(
                conn,
                store="-",
                dedupe_key=f"reply:{message.id}",
                kind="text",
                payload=payload,
                now=now,
                recipient=f"+{sender}",
                urgency="urgent",
            )
        self.on_queued()


def storable_text(text: str | None) -> str | None:
    """The text with what no backend can store (a lone surrogate from a JSON escape such as
    ``\\ud83d``; NUL, which PostgreSQL refuses) replaced by U+FFFD."""
    if text is None:
        return None
    paired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return paired.replace("\x00", "\N{REPLACEMENT CHARACTER}")


def _fetch(wix: OrderLookup, reference: OrderReference) -> Order | None:
    if reference.kind == "id":
        return wix.get_order(reference.value)
    return wix.find_by_number(reference.value)


def _owned_by(order: Order, sender: str, default_country: str) -> bool:
    return any(
        check.e164 and phones.same_person(phones.digits(check.e164), sender)
        for check in phones.order_phones(order, default_country)
    )
