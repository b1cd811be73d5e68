"""Pure: events + a store's rules → notifications.

A rule matches an event when it watches the same field and the event moves *into* the rule's
value (``rule.to == event.new``); where the field came from does not matter. So PENDING never
matches the "paid" rule, and an unknown Wix value matches nothing.

Re-entering a state that was already notified (FULFILLED → NOT_FULFILLED → FULFILLED) is
*not* filtered here: both FULFILLED events produce a notification with the same
``Notification.dedupe_key`` (store, order, field, new value), and the outbox's UNIQUE
constraint on that key lets only the first one in. Rules stay stateless; the database
is the single place that remembers what was already sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from notifier.domain import (
    FULFILLMENT_STATUSES,
    ORDER_STATUSES,
    PAYMENT_STATUSES,
    Event,
    Field,
    Notification,
    Rule,
    Urgency,
)

_NAME_AND_NUMBER = ("customer_name", "order_number")

# Template names and parameters match the templates seeded in the WhatsApp sandbox.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        Field.PAYMENT,
        "PAID",
        "order_payment_received",
        params=(*_NAME_AND_NUMBER, "total"),
    ),
    Rule(Field.FULFILLMENT, "PARTIALLY_FULFILLED", "order_partly_shipped"),
    Rule(Field.FULFILLMENT, "FULFILLED", "order_shipped", button_param="tracking_number"),
    Rule(
        Field.PAYMENT,
        "FULLY_REFUNDED",
        "order_refunded",
        params=(*_NAME_AND_NUMBER, "payment_status"),
    ),
    Rule(
        Field.PAYMENT,
        "PARTIALLY_REFUNDED",
        "order_refunded",
        params=(*_NAME_AND_NUMBER, "payment_status"),
    ),
    Rule(Field.STATUS, "CANCELED", "order_cancelled", urgency=Urgency.URGENT),
    Rule(Field.PAYMENT, "DECLINED", "order_payment_failed", urgency=Urgency.URGENT),
)

KNOWN_VALUES: dict[Field, frozenset[str]] = {
    Field.PAYMENT: PAYMENT_STATUSES,
    Field.FULFILLMENT: FULFILLMENT_STATUSES,
    Field.STATUS: ORDER_STATUSES,
}

# Payment news first (the customer's money), then shipping, then the order's own status.
_FIELD_RANK = {Field.PAYMENT: 0, Field.FULFILLMENT: 1, Field.STATUS: 2}

_FIELD_ALIASES = {"fulfilment": Field.FULFILLMENT, "order": Field.STATUS}


def is_known(field: Field, value: str) -> bool:
    """Whether ``value`` is one of the Wix enum values documented for ``field``."""
    return value in KNOWN_VALUES[field]


def matches(rule: Rule, event: Event) -> bool:
    """Whether ``rule`` fires for ``event``: same field, and the event moves into ``rule.to``."""
    return rule.field == event.field and rule.to == event.new


def notifications_for(
    store: str, events: Sequence[Event], rules: Sequence[Rule]
) -> tuple[Notification, ...]:
    """One notification per (event, matching rule), payment before fulfilment before status."""
    ordered = sorted(events, key=lambda event: _FIELD_RANK[event.field])
    return tuple(
        Notification(store=store, order_id=event.order_id, event=event, rule=rule)
        for event in ordered
        for rule in rules
        if matches(rule, event)
    )


def parse_event(text: str) -> tuple[Field, str]:
    """Read a config string such as ``"payment:PAID"`` into a field and a known value."""
    field_text, separator, value_text = text.partition(":")
    if not separator:
        msg = f"event {text!r} must look like 'field:VALUE', for example 'payment:PAID'"
        raise ValueError(msg)
    field = _parse_field(field_text.strip().lower(), text)
    value = value_text.strip().upper()
    # isascii: Unicode case folding would turn "paıd" (dotless i) into PAID.
    if not (value_text.isascii() and is_known(field, value)):
        known = ", ".join(sorted(KNOWN_VALUES[field]))
        msg = f"event {text!r}: unknown {field.value} value {value_text.strip()!r} (known: {known})"
        raise ValueError(msg)
    return field, value


def _parse_field(name: str, text: str) -> Field:
    if name in _FIELD_ALIASES:
        return _FIELD_ALIASES[name]
    try:
        return Field(name)
    except ValueError:
        known = ", ".join(f.value for f in Field)
        msg = f"event {text!r}: unknown field {name!r} (known: {known})"
        raise ValueError(msg) from None
