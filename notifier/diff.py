"""Pure: the previous snapshot of an order + the order as Wix returns it now → events.

Three fields are watched, always reported in the fixed order payment, fulfilment, status.
A field that Wix left out of the response (``None``) is "no news", never a change.
An enum value notifier does not know is ordinary data: it becomes an event, and rules
simply find nothing to send for it.

Deciding whether a store is being seen for the first time (baseline: record, send nothing)
is the service's job; here ``previous=None`` only means "this order has no snapshot yet".
"""

from __future__ import annotations

from notifier.domain import Event, Field, Order, Snapshot

WATCHED_FIELDS: tuple[Field, ...] = (Field.PAYMENT, Field.FULFILLMENT, Field.STATUS)

_ATTRIBUTE = {
    Field.PAYMENT: "payment_status",
    Field.FULFILLMENT: "fulfillment_status",
    Field.STATUS: "status",
}


def watched_value(record: Order | Snapshot, field: Field) -> str | None:
    """The value of one watched field on an order or a snapshot."""
    value: str | None = getattr(record, _ATTRIBUTE[field])
    return value


def diff(previous: Snapshot | None, order: Order) -> tuple[Event, ...]:
    """The watched fields that changed between ``previous`` and ``order``, in field order."""
    if previous is not None and previous.order_id != order.id:
        msg = f"snapshot of order {previous.order_id!r} compared with order {order.id!r}"
        raise ValueError(msg)
    events: list[Event] = []
    for field in WATCHED_FIELDS:
        new = watched_value(order, field)
        if new is None:
            continue
        old = watched_value(previous, field) if previous is not None else None
        if new != old:
            events.append(Event(order_id=order.id, field=field, old=old, new=new))
    return tuple(events)
