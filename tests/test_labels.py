"""labels: product.md's plain-English words for Wix status values, overridable per language."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain import FULFILLMENT_STATUSES, PAYMENT_STATUSES
from notifier.labels import DEFAULT_LABELS, Labels


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("PAID", "Paid"),
        ("NOT_PAID", "Not paid"),
        ("PENDING", "Payment pending"),
        ("PARTIALLY_PAID", "Partially paid"),
        ("PARTIALLY_REFUNDED", "Partially refunded"),
        ("FULLY_REFUNDED", "Refunded"),
        ("PENDING_MERCHANT", "Awaiting confirmation"),
        ("CANCELED", "Payment cancelled"),
        ("DECLINED", "Payment declined"),
        ("UNSPECIFIED", "Unknown"),
    ],
)
def test_payment_labels_match_product_table(value: str, label: str) -> None:
    """Each paymentStatus gets product.md's label."""
    assert Labels.for_language("en").payment(value) == label


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("NOT_FULFILLED", "Preparing for dispatch"),
        ("PARTIALLY_FULFILLED", "Partly shipped"),
        ("FULFILLED", "Shipped"),
    ],
)
def test_fulfillment_labels_match_product_table(value: str, label: str) -> None:
    """Each fulfillmentStatus gets product.md's label."""
    assert Labels.for_language("en").fulfillment(value) == label


def test_cancelled_status_label() -> None:
    """Order status CANCELED reads "Cancelled"."""
    assert Labels.for_language("en").status("CANCELED") == "Cancelled"


def test_every_known_wix_value_has_a_label() -> None:
    """Every documented payment and fulfilment value is in the English table."""
    english = DEFAULT_LABELS["en"]
    assert {f"payment.{value}" for value in PAYMENT_STATUSES} <= english.keys()
    assert {f"fulfillment.{value}" for value in FULFILLMENT_STATUSES} <= english.keys()


@given(value=st.one_of(st.none(), st.text()))
def test_unknown_values_read_unknown(value: str | None) -> None:
    """None or any value not in the table gives "Unknown" and never raises."""
    labels = Labels.for_language("en")
    for read, field in (
        (labels.payment, "payment"),
        (labels.fulfillment, "fulfillment"),
        (labels.status, "status"),
    ):
        expected = DEFAULT_LABELS["en"].get(f"{field}.{value}", "Unknown")
        assert read(value) == expected


@pytest.mark.parametrize("lang", ["xx", "", None, "pt_BR", "en-GB"])
def test_unknown_language_falls_back_to_english(lang: str | None) -> None:
    """A language with no table uses the English labels."""
    assert Labels.for_language(lang).payment("PAID") == "Paid"


def test_overrides_win_and_missing_keys_fall_back() -> None:
    """A store's override replaces one label; keys it does not override stay English."""
    labels = Labels.for_language("pt", {"pt": {"payment.PAID": "Pago", "unknown": "Desconhecido"}})
    assert labels.payment("PAID") == "Pago"
    assert labels.fulfillment("FULFILLED") == "Shipped"
    assert labels.status("WHATEVER") == "Desconhecido"


def test_regional_tag_uses_base_language_overrides() -> None:
    """pt_BR reads pt overrides, and its own overrides win over them."""
    overrides = {"pt": {"payment.PAID": "Pago"}, "pt_BR": {"fulfillment.FULFILLED": "Enviado"}}
    labels = Labels.for_language("pt_BR", overrides)
    assert labels.payment("PAID") == "Pago"
    assert labels.fulfillment("FULFILLED") == "Enviado"


def test_english_override_applies_to_fallback_languages() -> None:
    """A store's English wording is also the fallback for languages without that key."""
    labels = Labels.for_language("de", {"en": {"payment.PAID": "Paid in full"}})
    assert labels.payment("PAID") == "Paid in full"


def test_text_fills_placeholders_and_tolerates_braces() -> None:
    """Phrases fill {placeholders}; stray braces in an override do not raise."""
    labels = Labels.for_language("en", {"en": {"reply.greeting": "Hey {name} {oops}"}})
    assert labels.text("reply.greeting", name="Priya") == "Hey Priya {oops}"
    assert Labels.for_language("en").text("reply.order", number="1023") == "Order #1023"


def test_labels_are_immutable() -> None:
    """The resolved table cannot be changed after construction."""
    labels = Labels.for_language("en")
    with pytest.raises(TypeError):
        labels.table["payment.PAID"] = "Free"  # type: ignore[index]
