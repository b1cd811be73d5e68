"""Frozen value types shared by the pure core and the adapters.

Wix enum values are kept as plain strings: a value Wix adds tomorrow is data, not a crash.
A field Wix left out of a response is ``None``, which the diff reads as "no news", never as a change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

PAYMENT_STATUSES = frozenset(
    {
        "UNSPECIFIED",
        "NOT_PAID",
        "PAID",
        "PARTIALLY_REFUNDED",
        "FULLY_REFUNDED",
        "PENDING",
        "PARTIALLY_PAID",
        "PENDING_MERCHANT",
        "CANCELED",
        "DECLINED",
    }
)
FULFILLMENT_STATUSES = frozenset({"NOT_FULFILLED", "PARTIALLY_FULFILLED", "FULFILLED"})
ORDER_STATUSES = frozenset({"INITIALIZED", "APPROVED", "CANCELED", "PENDING", "REJECTED"})


class Field(enum.StrEnum):
    """The order fields whose changes notifier watches."""

    PAYMENT = "payment"
    FULFILLMENT = "fulfillment"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency; ``amount`` is always a Decimal, never a float."""

    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class LineItem:
    name: str
    quantity: int
    price: Money | None = None


@dataclass(frozen=True, slots=True)
class ContactPhone:
    """A phone as the buyer typed it, with the country to read it in (ISO alpha-2, may be None)."""

    raw: str
    country: str | None


@dataclass(frozen=True, slots=True)
class Tracking:
    number: str | None
    provider: str | None
    link: str | None


@dataclass(frozen=True, slots=True)
class Order:
    """A Wix order reduced to what notifier needs. ``None`` means "absent from the response"."""

    id: str
    number: str | None
    status: str | None
    payment_status: str | None
    fulfillment_status: str | None
    created_date: datetime | None = None
    updated_date: datetime | None = None
    currency: str | None = None
    buyer_language: str | None = None
    total: Money | None = None
    first_name: str | None = None
    last_name: str | None = None
    phones: tuple[ContactPhone, ...] = ()
    country: str | None = None
    line_items: tuple[LineItem, ...] = ()
    archived: bool | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What notifier last saw of an order: the watched fields only."""

    order_id: str
    number: str | None
    status: str | None
    payment_status: str | None
    fulfillment_status: str | None
    updated_date: datetime | None = None

    @classmethod
    def of(cls, order: Order, previous: Snapshot | None = None) -> Snapshot:
        """The snapshot after seeing ``order``; absent fields keep their previous value."""

        def keep(new: str | None, old: str | None) -> str | None:
            return new if new is not None else old

        prev = previous or cls(order.id, None, None, None, None)
        return cls(
            order_id=order.id,
            number=keep(order.number, prev.number),
            status=keep(order.status, prev.status),
            payment_status=keep(order.payment_status, prev.payment_status),
            fulfillment_status=keep(order.fulfillment_status, prev.fulfillment_status),
            updated_date=order.updated_date or prev.updated_date,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One watched field of one order moved from ``old`` to ``new`` (``old`` None = new order)."""

    order_id: str
    field: Field
    old: str | None
    new: str


class Urgency(enum.StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"


@dataclass(frozen=True, slots=True)
class Rule:
    """Event → template. ``params`` name the order values sent as body parameters, in order."""

    field: Field
    to: str
    template: str
    languages: tuple[str, ...] = ("en",)
    params: tuple[str, ...] = ("customer_name", "order_number")
    param_names: tuple[str, ...] = ()
    button_param: str | None = None
    urgency: Urgency = Urgency.NORMAL


@dataclass(frozen=True, slots=True)
class Notification:
    """A rule matched an event: this template should go to this order's customer."""

    store: str
    order_id: str
    event: Event
    rule: Rule

    @property
    def dedupe_key(self) -> str:
        """(store, order, event, new value): the same transition can never be queued twice."""
        return f"{self.store}:{self.order_id}:{self.event.field.value}:{self.event.new}"


@dataclass(frozen=True, slots=True)
class TemplateParam:
    text: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedTemplate:
    """Everything needed to send one template message; parameters are already sanitised."""

    name: str
    language: str
    body: tuple[TemplateParam, ...] = ()
    button_url_suffix: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """A message template as the business account lists it."""

    name: str
    language: str
    status: str
    category: str
    parameter_format: str = "POSITIONAL"
    body_param_count: int = 0
    body_param_names: tuple[str, ...] = ()
    url_button_param_count: int = 0


@dataclass(frozen=True, slots=True)
class SendResult:
    wamid: str
    message_status: str = "accepted"
    wa_id: str | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """The estimated or confirmed cost of one message.

    ``amount`` is None when the market or category has no rate: "unknown", never silently zero.
    """

    amount: Decimal | None
    currency: str | None
    rate: Decimal | None
    category: str
    market: str | None
    free_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PollPage:
    orders: tuple[Order, ...]
    bad_orders: tuple[tuple[str, str], ...] = field(default=())
