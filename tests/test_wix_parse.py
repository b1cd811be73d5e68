"""wix_parse: every recorded Wix order parses, and junk never raises anything but BadOrder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.domain import ContactPhone, LineItem, Money, Tracking
from notifier.wix_parse import (
    MAX_LINE_ITEMS,
    BadOrder,
    format_datetime,
    parse_datetime,
    parse_order,
    parse_tracking,
    parse_tracking_by_order,
)

DATA = Path(__file__).parent / "data" / "wix"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text("utf-8"))


def recorded_orders() -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = load("search-orders-response.json")["orders"]
    orders += load("search-orders-response-page2.json")["orders"]
    orders += [load(name)["order"] for name in ("get-order-rest.json", "get-order-rest-2.json")]
    orders.append(load("seed-order.json")["order"])
    return orders


@pytest.mark.parametrize("raw", recorded_orders(), ids=lambda raw: raw["number"])
def test_every_recorded_order_parses_with_its_id_number_and_statuses(raw: dict[str, Any]) -> None:
    """Each order in the fixtures keeps id, number, statuses and gets an aware updated date."""
    order = parse_order(raw)
    assert order.id == raw["id"]
    assert order.number == raw["number"]
    assert order.status == raw["status"]
    assert order.payment_status == raw["paymentStatus"]
    assert order.fulfillment_status == raw["fulfillmentStatus"]
    assert order.updated_date is not None
    assert order.updated_date.tzinfo == UTC
    assert order.total is not None
    assert order.line_items


def test_search_fixture_order_is_read_field_by_field() -> None:
    """Order 10126: total as Decimal in USD, billing name, one deduplicated US phone, two items."""
    order = parse_order(load("search-orders-response.json")["orders"][0])
    assert order.created_date == datetime(2023, 11, 10, 8, 28, 58, 917000, tzinfo=UTC)
    assert order.total == Money(Decimal("63.24"), "USD")
    assert (order.first_name, order.last_name) == ("John", "Doe")
    assert order.phones == (ContactPhone("0555555555", "US"),)
    assert order.country == "US"
    assert order.buyer_language == "en"
    assert order.archived is False
    assert order.line_items == (
        LineItem("Indonesian Blend", 1, Money(Decimal("55.00"), "USD")),
        LineItem("Special wrapping", 1, Money(Decimal("2"), "USD")),
    )


def test_old_order_total_comes_from_total_price() -> None:
    """get-order-rest-2 has priceSummary.totalPrice instead of total; the amount is still read."""
    order = parse_order(load("get-order-rest-2.json")["order"])
    assert order.total == Money(Decimal("215.66"), "USD")
    assert order.line_items[0] == LineItem("Indonesian Blend", 2, Money(Decimal("35.0"), "USD"))


def test_seed_order_takes_name_and_phone_from_buyer_info() -> None:
    """The guide's shape (buyerInfo.contactDetails) gives Priya Sharma and her +91 phone."""
    order = parse_order(load("seed-order.json")["order"])
    assert (order.first_name, order.last_name) == ("Priya", "Sharma")
    assert order.phones == (ContactPhone("+919820000001", None),)
    assert order.total == Money(Decimal("1299.00"), "INR")
    assert order.line_items == (
        LineItem("Classic Cotton Kurta", 2, Money(Decimal("649.50"), "INR")),
    )


def test_sdk_names_id_and_created_date_are_accepted() -> None:
    """The JS SDK's _id/_createdDate/_updatedDate are read like the REST names."""
    raw = load("sdk-event-payment-status-updated.json")["data"]["order"]
    order = parse_order(raw)
    assert order.id == "7a8b195e-ab73-4138-b9da-cdf5e864a451"
    assert order.updated_date == datetime(2023, 1, 16, 14, 40, 1, 997000, tzinfo=UTC)


def test_number_given_as_int_becomes_a_string() -> None:
    """Wix documents number as a string, yet an int must read the same."""
    assert parse_order({"id": "x", "number": 10126}).number == "10126"
    assert parse_order({"id": "x", "number": True}).number is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-06-20T10:30:00.000Z", datetime(2026, 6, 20, 10, 30, tzinfo=UTC)),
        ("2026-06-20T10:30:00Z", datetime(2026, 6, 20, 10, 30, tzinfo=UTC)),
        ("2026-06-20T16:00:00+05:30", datetime(2026, 6, 20, 10, 30, tzinfo=UTC)),
        ("2026-06-20T10:30:00.5Z", datetime(2026, 6, 20, 10, 30, 0, 500000, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (1718879400, None),
        (None, None),
    ],
)
def test_dates_become_aware_utc_or_none(value: object, expected: datetime | None) -> None:
    """ISO-8601 with or without ms, 'Z' or offset → aware UTC; anything else → None."""
    assert parse_datetime(value) == expected


def test_format_datetime_is_the_wix_wire_form_with_milliseconds() -> None:
    """Watermarks go out as YYYY-MM-DDTHH:MM:SS.mmmZ in UTC; naive datetimes are refused."""
    moment = datetime(2026, 6, 20, 16, 0, 5, 123999, tzinfo=UTC)
    assert format_datetime(moment) == "2026-06-20T16:00:05.123Z"
    with pytest.raises(ValueError, match="naive"):
        format_datetime(datetime(2026, 6, 20))


@pytest.mark.parametrize(
    ("summary", "currency", "expected"),
    [
        ({"total": {"amount": "10.0"}}, "EUR", Money(Decimal("10.0"), "EUR")),
        ({"total": {"amount": "0"}}, "INR", Money(Decimal("0"), "INR")),
        ({"total": {"amount": "5", "currency": "BRL"}}, None, Money(Decimal("5"), "BRL")),
        ({"total": {"amount": 7.5}}, "USD", None),
        ({"total": {"amount": "NaN"}}, "USD", None),
        ({"total": {"amount": "12"}}, None, None),
        ({"total": "12"}, "USD", None),
    ],
)
def test_total_is_decimal_money_or_none(
    summary: dict[str, Any], currency: str | None, expected: Money | None
) -> None:
    """Total amounts of any precision become Decimal; floats, NaN or no currency give None."""
    raw: dict[str, Any] = {"id": "x", "priceSummary": summary}
    if currency:
        raw["currency"] = currency
    assert parse_order(raw).total == expected


def test_phones_are_collected_from_every_contact_and_deduplicated() -> None:
    """Billing, shipping, recipient and buyer phones each keep their own country; blanks drop."""
    raw = {
        "id": "x",
        "billingInfo": {"address": {"country": "in"}, "contactDetails": {"phone": "098200 00002"}},
        "shippingInfo": {
            "logistics": {
                "shippingDestination": {
                    "address": {"country": "DE"},
                    "contactDetails": {"phone": "+49 (0)151 2345678x"},
                }
            }
        },
        "recipientInfo": {"contactDetails": {"phone": "   "}},
        "buyerInfo": {"contactDetails": {"phone": "098200 00002"}},
    }
    order = parse_order(raw)
    assert order.phones == (
        ContactPhone("098200 00002", "IN"),
        ContactPhone("+49 (0)151 2345678x", "DE"),
    )
    assert order.country == "IN"


def test_br07_empty_first_name_comes_back_as_none_with_the_last_name() -> None:
    """BR-07: billing {"firstName": "", "lastName": "Ferreira"} → first None, last Ferreira."""
    raw = {
        "id": "x",
        "number": "10131",
        "billingInfo": {
            "contactDetails": {"firstName": "", "lastName": "Ferreira", "phone": "+49 151 23456789"}
        },
        "buyerInfo": {"contactDetails": {"firstName": "Someone", "lastName": "Else"}},
    }
    order = parse_order(raw)
    assert (order.first_name, order.last_name) == (None, "Ferreira")
    assert order.phones == (ContactPhone("+49 151 23456789", None),)


def test_line_items_are_capped_named_and_counted_safely() -> None:
    """Translated name wins, blanks become "Item", bad quantities become 0, at most 200 items."""
    items: list[Any] = [
        {"productName": {"original": "Kurta", "translated": "कुर्ता"}, "quantity": "2"},
        {"productName": {"original": "  "}, "quantity": -3},
        {"quantity": 1.5},
        "junk",
    ]
    items += [{"productName": {"original": "Bulk"}, "quantity": 1}] * 300
    order = parse_order({"id": "x", "lineItems": items})
    assert order.line_items[:3] == (
        LineItem("कुर्ता", 2, None),
        LineItem("Item", 0, None),
        LineItem("Item", 0, None),
    )
    assert len(order.line_items) == MAX_LINE_ITEMS


def test_unknown_status_strings_are_data() -> None:
    """A preview enum value Wix adds tomorrow is kept as given, not rejected."""
    order = parse_order({"id": "x", "paymentStatus": "PAID_BY_MAGIC", "status": 3})
    assert order.payment_status == "PAID_BY_MAGIC"
    assert order.status is None


@pytest.mark.parametrize("raw", [{}, {"id": ""}, {"id": 12}, {"_id": None}, [], "order"])
def test_order_without_an_id_is_a_bad_order(raw: Any) -> None:
    """No usable id → BadOrder with a reason (the poller records it and moves on)."""
    with pytest.raises(BadOrder, match="no id"):
        parse_order(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
order_keys = st.sampled_from(
    [
        "id",
        "_id",
        "number",
        "status",
        "paymentStatus",
        "createdDate",
        "updatedDate",
        "currency",
        "priceSummary",
        "billingInfo",
        "shippingInfo",
        "recipientInfo",
        "buyerInfo",
        "lineItems",
        "archived",
    ]
)


@settings(max_examples=300)
@given(st.dictionaries(order_keys, json_values, max_size=10))
def test_parse_order_on_junk_raises_nothing_but_bad_order(raw: dict[str, Any]) -> None:
    """Any JSON under Wix's keys either parses or raises BadOrder — never another exception."""
    try:
        order = parse_order(raw)
    except BadOrder:
        return
    assert order.id
    assert order.id.strip() == order.id


def test_tracking_is_read_in_order_without_duplicates() -> None:
    """The recorded fulfilments response has the same UPS tracking twice → one Tracking."""
    assert parse_tracking(load("list-fulfillments-single-order.json")) == (
        Tracking(
            "12345", "ups", "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=12345"
        ),
    )


def test_tracking_skips_fulfilments_without_tracking_info() -> None:
    """Fulfilments with no or empty trackingInfo, or junk shapes, yield no Tracking."""
    raw = {"orderWithFulfillments": {"fulfillments": [{}, {"trackingInfo": {}}, 3]}}
    assert parse_tracking(raw) == ()
    assert parse_tracking({"orderWithFulfillments": {"fulfillments": "x"}}) == ()


@settings(max_examples=300)
@given(st.dictionaries(order_keys, json_values, max_size=10))
def test_parse_order_with_an_id_and_junk_fields_always_parses(raw: dict[str, Any]) -> None:
    """With a valid id, junk in every other field degrades to None/() instead of failing."""
    order = parse_order({**raw, "id": "6f759095-0701-4075-9908-c9c31ff013e1"})
    assert order.id == "6f759095-0701-4075-9908-c9c31ff013e1"
    assert all(isinstance(item.quantity, int) and item.quantity >= 0 for item in order.line_items)
    assert order.total is None or isinstance(order.total.amount, Decimal)


def test_tracking_by_order_reads_each_entry_and_drops_junk() -> None:
    """List-by-ids entries map order id → tracking; entries without an id and junk shapes are
    dropped, an order with no usable fulfilment maps to ()."""
    single = load("list-fulfillments-single-order.json")["orderWithFulfillments"]
    raw = {
        "ordersWithFulfillments": [
            single,
            {"orderId": "o2", "fulfillments": [{"trackingInfo": {}}]},
            {"fulfillments": single["fulfillments"]},
            "junk",
        ]
    }
    assert parse_tracking_by_order(raw) == {
        single["orderId"]: parse_tracking(load("list-fulfillments-single-order.json")),
        "o2": (),
    }
    assert parse_tracking_by_order({"ordersWithFulfillments": {"o": 1}}) == {}
    assert parse_tracking_by_order({}) == {}
