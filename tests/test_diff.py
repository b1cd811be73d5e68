"""diff: previous snapshot + current order → events."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.diff import diff
from notifier.domain import Event, Field, Order, Snapshot


def order(
    payment: str | None = "NOT_PAID",
    fulfillment: str | None = "NOT_FULFILLED",
    status: str | None = "APPROVED",
    order_id: str = "o-1",
) -> Order:
    return Order(
        id=order_id,
        number="10077",
        status=status,
        payment_status=payment,
        fulfillment_status=fulfillment,
    )


def snapshot_of(current: Order) -> Snapshot:
    return Snapshot.of(current)


def test_no_change_no_events() -> None:
    """An order identical to its snapshot produces no events."""
    current = order()
    assert diff(snapshot_of(current), current) == ()


def test_single_field_change() -> None:
    """A payment change yields one payment event carrying old and new values."""
    previous = snapshot_of(order(payment="NOT_PAID"))
    assert diff(previous, order(payment="PAID")) == (
        Event("o-1", Field.PAYMENT, "NOT_PAID", "PAID"),
    )


def test_new_order_emits_one_event_per_present_field() -> None:
    """With no snapshot, every present field becomes an event with old=None."""
    events = diff(None, order(payment="PAID", fulfillment="FULFILLED", status="APPROVED"))
    assert events == (
        Event("o-1", Field.PAYMENT, None, "PAID"),
        Event("o-1", Field.FULFILLMENT, None, "FULFILLED"),
        Event("o-1", Field.STATUS, None, "APPROVED"),
    )


def test_new_order_skips_absent_fields() -> None:
    """With no snapshot, a field absent from the response produces no event."""
    events = diff(None, order(payment="PAID", fulfillment=None, status=None))
    assert events == (Event("o-1", Field.PAYMENT, None, "PAID"),)


def test_absent_field_is_not_a_change() -> None:
    """A field absent from the response (None) never produces an event."""
    previous = snapshot_of(order(payment="PAID", fulfillment="FULFILLED", status="APPROVED"))
    assert diff(previous, order(payment=None, fulfillment=None, status=None)) == ()


def test_field_first_present_after_absent_is_an_event() -> None:
    """A field the snapshot never had but the response now carries is reported with old=None."""
    previous = snapshot_of(order(fulfillment=None))
    assert diff(previous, order(fulfillment="FULFILLED")) == (
        Event("o-1", Field.FULFILLMENT, None, "FULFILLED"),
    )


def test_events_in_fixed_field_order() -> None:
    """All three fields changing come out as payment, fulfilment, status."""
    previous = snapshot_of(order())
    events = diff(previous, order(payment="PAID", fulfillment="FULFILLED", status="CANCELED"))
    assert [event.field for event in events] == [Field.PAYMENT, Field.FULFILLMENT, Field.STATUS]


def test_unknown_enum_value_is_ordinary_data() -> None:
    """A Wix value notifier does not know still becomes an event (rules decide to ignore it)."""
    previous = snapshot_of(order(payment="PAID"))
    assert diff(previous, order(payment="PAID_BY_MOON_BEAMS")) == (
        Event("o-1", Field.PAYMENT, "PAID", "PAID_BY_MOON_BEAMS"),
    )


def test_snapshot_of_another_order_is_refused() -> None:
    """Diffing an order against another order's snapshot is a programming error and raises."""
    with pytest.raises(ValueError, match="compared with order"):
        diff(snapshot_of(order(order_id="a")), order(order_id="b"))


statuses = st.one_of(st.none(), st.text(min_size=1, max_size=20))


@given(statuses, statuses, statuses, statuses, statuses, statuses)
def test_property_events_are_exactly_the_present_differing_fields(
    p0: str | None, f0: str | None, s0: str | None, p1: str | None, f1: str | None, s1: str | None
) -> None:
    """Events are exactly the present, differing fields; after applying them, no events."""
    previous = Snapshot("o-1", "1", s0, p0, f0)
    current = order(payment=p1, fulfillment=f1, status=s1)
    events = diff(previous, current)
    expected = [
        (field, old, new)
        for field, old, new in (
            (Field.PAYMENT, p0, p1),
            (Field.FULFILLMENT, f0, f1),
            (Field.STATUS, s0, s1),
        )
        if new is not None and new != old
    ]
    assert [(e.field, e.old, e.new) for e in events] == expected
    assert diff(Snapshot.of(current, previous), current) == ()
