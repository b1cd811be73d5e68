"""rules: events + rules → notifications; parse_event; is_known; dedupe keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.diff import diff
from notifier.domain import (
    FULFILLMENT_STATUSES,
    ORDER_STATUSES,
    PAYMENT_STATUSES,
    Event,
    Field,
    Notification,
    Order,
    Snapshot,
    Urgency,
)
from notifier.rules import DEFAULT_RULES, is_known, notifications_for, parse_event

STORE = "store-1"


def order(payment: str | None, fulfillment: str | None = None, order_id: str = "o-1") -> Order:
    return Order(
        id=order_id,
        number="10090",
        status="APPROVED",
        payment_status=payment,
        fulfillment_status=fulfillment,
    )


def poll_sequence(
    payments: list[str | None], fulfillments: list[str | None] | None = None
) -> list[Notification]:
    """Run successive polls of one order through diff + rules, as the service would."""
    fulfillments = fulfillments or [None] * len(payments)
    snapshot: Snapshot | None = None
    sent: list[Notification] = []
    for payment, fulfillment in zip(payments, fulfillments, strict=True):
        current = order(payment, fulfillment)
        if snapshot is not None:
            sent.extend(notifications_for(STORE, diff(snapshot, current), DEFAULT_RULES))
        snapshot = Snapshot.of(current, snapshot)
    return sent


def by_template() -> dict[str, list[tuple[Field, str]]]:
    table: dict[str, list[tuple[Field, str]]] = {}
    for rule in DEFAULT_RULES:
        table.setdefault(rule.template, []).append((rule.field, rule.to))
    return table


def test_default_rules_match_product_table() -> None:
    """DEFAULT_RULES is exactly product.md's table of events and templates."""
    assert by_template() == {
        "order_payment_received": [(Field.PAYMENT, "PAID")],
        "order_partly_shipped": [(Field.FULFILLMENT, "PARTIALLY_FULFILLED")],
        "order_shipped": [(Field.FULFILLMENT, "FULFILLED")],
        "order_refunded": [
            (Field.PAYMENT, "FULLY_REFUNDED"),
            (Field.PAYMENT, "PARTIALLY_REFUNDED"),
        ],
        "order_cancelled": [(Field.STATUS, "CANCELED")],
        "order_payment_failed": [(Field.PAYMENT, "DECLINED")],
    }


def test_default_rules_params_urgency_and_button() -> None:
    """Each default rule carries the sandbox template's params, urgency and button parameter."""
    table = {(rule.field, rule.to): rule for rule in DEFAULT_RULES}
    name_number = ("customer_name", "order_number")
    assert table[Field.PAYMENT, "PAID"].params == (*name_number, "total")
    assert table[Field.FULFILLMENT, "PARTIALLY_FULFILLED"].params == name_number
    assert table[Field.FULFILLMENT, "FULFILLED"].params == name_number
    assert table[Field.FULFILLMENT, "FULFILLED"].button_param == "tracking_number"
    for refund in ("FULLY_REFUNDED", "PARTIALLY_REFUNDED"):
        assert table[Field.PAYMENT, refund].params == (*name_number, "payment_status")
    assert table[Field.STATUS, "CANCELED"].urgency is Urgency.URGENT
    assert table[Field.PAYMENT, "DECLINED"].urgency is Urgency.URGENT
    assert table[Field.PAYMENT, "PAID"].urgency is Urgency.NORMAL
    assert {rule.languages for rule in DEFAULT_RULES} == {("en",)}
    assert [r for r in DEFAULT_RULES if r.button_param] == [table[Field.FULFILLMENT, "FULFILLED"]]


def test_default_rules_only_target_known_values() -> None:
    """Every default rule moves into a documented Wix enum value (a typo would never fire)."""
    assert all(is_known(rule.field, rule.to) for rule in DEFAULT_RULES)


def test_br04_pending_then_paid_notifies_once_on_paid() -> None:
    """BR-04 (10090): NOT_PAID → PENDING → PENDING → PAID gives one payment message, on PAID."""
    sent = poll_sequence(["NOT_PAID", "PENDING", "PENDING", "PAID"])
    assert [(n.event.old, n.event.new, n.rule.template) for n in sent] == [
        ("PENDING", "PAID", "order_payment_received")
    ]


def test_br04_pending_then_not_paid_notifies_nothing() -> None:
    """BR-04 (10091): PENDING → NOT_PAID sends no payment message."""
    assert poll_sequence(["PENDING", "NOT_PAID"]) == []


def test_pending_never_matches_paid() -> None:
    """No default rule fires on a move into PENDING, from any previous value."""
    for old in [None, *sorted(PAYMENT_STATUSES)]:
        event = Event("o-1", Field.PAYMENT, old, "PENDING")
        assert notifications_for(STORE, [event], DEFAULT_RULES) == ()


def test_unknown_value_matches_nothing() -> None:
    """An event into a value Wix never documented produces no notification."""
    event = Event("o-1", Field.FULFILLMENT, "NOT_FULFILLED", "TELEPORTED")
    assert notifications_for(STORE, [event], DEFAULT_RULES) == ()


def test_rule_matches_on_field_not_just_value() -> None:
    """Rules match on field too: status PENDING and payment CANCELED fire nothing."""
    events = [Event("o-1", Field.STATUS, "APPROVED", "PENDING")]
    assert notifications_for(STORE, events, DEFAULT_RULES) == ()
    payment_canceled = Event("o-1", Field.PAYMENT, "PENDING", "CANCELED")
    assert notifications_for(STORE, [payment_canceled], DEFAULT_RULES) == ()


def test_notifications_sorted_payment_fulfilment_status_and_stable() -> None:
    """Events sort payment, fulfilment, status; within a field the input order is kept."""
    events = [
        Event("b", Field.STATUS, "APPROVED", "CANCELED"),
        Event("a", Field.FULFILLMENT, "NOT_FULFILLED", "FULFILLED"),
        Event("a", Field.PAYMENT, "NOT_PAID", "PAID"),
        Event("b", Field.PAYMENT, "PAID", "FULLY_REFUNDED"),
    ]
    result = notifications_for(STORE, events, DEFAULT_RULES)
    assert [(n.order_id, n.rule.template) for n in result] == [
        ("a", "order_payment_received"),
        ("b", "order_refunded"),
        ("a", "order_shipped"),
        ("b", "order_cancelled"),
    ]
    assert all(n.store == STORE for n in result)


def test_br03a_identical_notifications_share_dedupe_key() -> None:
    """BR-03a: two runs seeing the same NOT_PAID → PAID build notifications with one dedupe key."""
    event = Event("10077", Field.PAYMENT, "NOT_PAID", "PAID")
    first = notifications_for(STORE, [event], DEFAULT_RULES)
    second = notifications_for(STORE, [event], DEFAULT_RULES)
    assert first == second
    assert first[0].dedupe_key == second[0].dedupe_key == "store-1:10077:payment:PAID"


def test_br03b_refulfilled_order_reuses_dedupe_key() -> None:
    """BR-03b: FULFILLED → NOT_FULFILLED → FULFILLED gives one dedupe key both times."""
    sent = poll_sequence(["PAID"] * 4, ["NOT_FULFILLED", "FULFILLED", "NOT_FULFILLED", "FULFILLED"])
    assert [n.rule.template for n in sent] == ["order_shipped", "order_shipped"]
    assert len({n.dedupe_key for n in sent}) == 1


def test_dedupe_key_differs_per_store_order_and_value() -> None:
    """Different stores, orders or target values never collide on the dedupe key."""
    keys = {
        n.dedupe_key
        for store, order_id, new in [
            ("s1", "o1", "FULLY_REFUNDED"),
            ("s2", "o1", "FULLY_REFUNDED"),
            ("s1", "o2", "FULLY_REFUNDED"),
            ("s1", "o1", "PARTIALLY_REFUNDED"),
        ]
        for n in notifications_for(
            store, [Event(order_id, Field.PAYMENT, "PAID", new)], DEFAULT_RULES
        )
    }
    assert len(keys) == 4


def test_is_known_uses_domain_sets() -> None:
    """is_known accepts each field's documented values and rejects other fields' values."""
    for field, values in (
        (Field.PAYMENT, PAYMENT_STATUSES),
        (Field.FULFILLMENT, FULFILLMENT_STATUSES),
        (Field.STATUS, ORDER_STATUSES),
    ):
        assert all(is_known(field, value) for value in values)
    assert not is_known(Field.FULFILLMENT, "PAID")
    assert not is_known(Field.PAYMENT, "paid")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("payment:PAID", (Field.PAYMENT, "PAID")),
        (" Payment : paid ", (Field.PAYMENT, "PAID")),
        ("fulfillment:FULFILLED", (Field.FULFILLMENT, "FULFILLED")),
        ("fulfilment:PARTIALLY_FULFILLED", (Field.FULFILLMENT, "PARTIALLY_FULFILLED")),
        ("status:CANCELED", (Field.STATUS, "CANCELED")),
    ],
)
def test_parse_event_accepts_config_strings(text: str, expected: tuple[Field, str]) -> None:
    """parse_event reads 'field:VALUE' case-insensitively, accepting the British 'fulfilment'."""
    assert parse_event(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PAID", "must look like 'field:VALUE'"),
        ("shipping:FULFILLED", "unknown field 'shipping'"),
        ("payment:SHIPPED", "unknown payment value 'SHIPPED'"),
        ("fulfillment:PAID", "unknown fulfillment value 'PAID'"),
        ("payment:", "unknown payment value ''"),
        ("payment:pa\u0131d", "unknown payment value"),
    ],
)
def test_parse_event_rejects_with_clear_message(text: str, message: str) -> None:
    """parse_event raises ValueError naming the bad part of the config string."""
    with pytest.raises(ValueError, match=message):
        parse_event(text)


@given(st.text(max_size=40))
def test_parse_event_free_text_returns_known_value_or_raises_value_error(text: str) -> None:
    """For any text, parse_event either returns a known (field, value) or raises ValueError."""
    try:
        field, value = parse_event(text)
    except ValueError:
        return
    assert is_known(field, value)
