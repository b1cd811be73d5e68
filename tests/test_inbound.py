"""inbound: order references in free text, the intent of a message, and the fixed reply texts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier import inbound
from notifier.inbound import (
    Intent,
    OrderReference,
    classify,
    command_of,
    find_order_reference,
    normalise_text,
)

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def number(value: str) -> OrderReference:
    return OrderReference("number", value)


# --- order references -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1023",
        "#1023",
        "order no. 1023.",
        "Order #1023?",
        "where is my order 1023",
        "१०२३",
        "١٠٢٣",
        "１０２３",
        "Order: ۱۰۲۳ please",
        "  1023  ",
    ],
)
def test_order_number_in_any_phrasing_or_script(text: str) -> None:
    """Common phrasings and digits typed in Devanagari, Arabic-Indic or full width give "1023"."""
    assert find_order_reference(text) == number("1023")


def test_br16_text_names_order_10126() -> None:
    """BR-16's message (accents, emoji, slash, e-mail) refers to order number 10126."""
    assert find_order_reference("Café 😀 order #10126 / noa@example.com") == number("10126")


@pytest.mark.parametrize(
    "text",
    [
        f"my order id is {GUID.upper()}",
        f"{GUID}",
        f"order 1023 or {GUID}?",
    ],
)
def test_guid_anywhere_wins_and_is_lower_cased(text: str) -> None:
    """A Wix order id (8-4-4-4-12 hex, any case) anywhere is an id reference, lower-cased."""
    assert find_order_reference(text) == OrderReference("id", GUID)


def test_guid_glued_to_more_hex_is_not_an_id() -> None:
    """A GUID-shaped run inside a longer hex string is not taken as an order id."""
    assert find_order_reference(f"x{GUID}ab") is None


def test_keyword_number_beats_an_earlier_number() -> None:
    """A number after #/order/no/number is preferred to a bare number before it."""
    assert find_order_reference("I paid Rs. 1299 for order no 1023") == number("1023")
    assert find_order_reference("777 items, order #1023") == number("1023")


@pytest.mark.parametrize(
    "text",
    [
        "Rs. 1299",
        "paid ₹1299 today",
        "$ 450",
        "call me on +91 98200 00001",
        "+49 151 2345 6789",
        "12",
        "order 12",
        "order 1234567890123",
        "on 12/05/2025",
        "at 10:30",
        "price 12.50",
        "hello",
        "",
        "no",
    ],
)
def test_no_order_reference(text: str) -> None:
    """Prices, +phone numbers, dates, times, short or overlong numbers are not order numbers."""
    assert find_order_reference(text) is None


def test_phone_number_is_skipped_for_the_order_number() -> None:
    """A +phone number in the same message does not hide the real order number."""
    assert find_order_reference("call +91 98200 00001 about 1023") == number("1023")


def test_keyword_allows_up_to_twelve_digits() -> None:
    """After an order keyword, a 12-digit number is accepted; a bare one stops at 9 digits."""
    assert find_order_reference("order 123456789012") == number("123456789012")
    assert find_order_reference("1234567890") is None


@given(st.text())
def test_reference_is_always_in_the_normalised_text(text: str) -> None:
    """Any text: never raises, and what it returns appears verbatim in the normalised text."""
    found = find_order_reference(text)
    if found is not None:
        assert found.value in normalise_text(text)
        assert found.value.isascii()
        if found.kind == "number":
            assert found.value.isdigit()
            assert 3 <= len(found.value) <= 12


@given(st.integers(100, 999_999_999), st.sampled_from(["", "#", "order ", "Order No. "]))
def test_any_typed_order_number_is_found(value: int, prefix: str) -> None:
    """Any 3–9 digit number, bare or after a keyword, is found exactly."""
    assert find_order_reference(f"{prefix}{value}") == number(str(value))


@pytest.mark.timeout(10)  # a hang guard against catastrophic backtracking, not a speed target
@pytest.mark.parametrize(
    ("text", "expected"),
    [("#" * 4096, None), ("no." * 1365, None), ("order " * 680, None), ("rs 123 " * 585, None)],
)
def test_adversarial_text_finds_nothing(text: str, expected: OrderReference | None) -> None:
    """A 4,096-char message built to make regexes backtrack yields no order and a HELP intent."""
    assert find_order_reference(text) == expected
    assert classify(text, "text") is Intent.HELP


# --- intents -------------------------------------------------------------------------------------

STOP_MESSAGES = [
    "stop",
    "STOP",
    "STOP!",
    " Stop ",
    "stop.",
    "Unsubscribe",
    "stop 🙏",
    "stop ❤️",
    "रोकें",
    "बंद करो",
    "parar",
    "Cancelar suscripción",
    "sair",
    "Abmelden",
    "arrêt",
    "Désabonner",
]


@pytest.mark.parametrize("text", STOP_MESSAGES)
def test_stop_words_are_stop(text: str) -> None:
    """STOP and its local equivalents, in any case with edge punctuation, are STOP."""
    assert classify(text, "text") is Intent.STOP


@pytest.mark.parametrize(
    "text", ["don't stop my order", "stop 1023", "please unsubscribe me from nothing"]
)
def test_stop_only_counts_as_the_whole_message(text: str) -> None:
    """A stop word inside a longer sentence is not an opt-out."""
    assert classify(text, "text") is not Intent.STOP


@pytest.mark.parametrize("text", ["start", "START", "Subscribe!", "unstop"])
def test_start_words_are_start(text: str) -> None:
    """START, SUBSCRIBE and UNSTOP opt back in."""
    assert classify(text, "text") is Intent.START


@pytest.mark.parametrize(
    ("text", "message_type"),
    [("1023", "text"), ("Where is my order #10042?", "text"), ("Order 1023", "interactive")],
)
def test_order_reference_is_lookup(text: str, message_type: str) -> None:
    """A text, button or interactive message naming an order is a lookup."""
    assert classify(text, message_type) is Intent.LOOKUP


@pytest.mark.parametrize(
    ("text", "message_type"),
    [("hi", "text"), ("Track order", "button"), (None, "text"), ("", "text")],
)
def test_greetings_and_unknown_text_get_help(text: str | None, message_type: str) -> None:
    """Text that names no order and no command gets the help reply."""
    assert classify(text, message_type) is Intent.HELP


@pytest.mark.parametrize("message_type", ["image", "sticker", "unsupported", "audio", "location"])
def test_non_text_messages_are_other(message_type: str) -> None:
    """Non-text message types are OTHER, even if a caption would say stop."""
    assert classify("stop", message_type) is Intent.OTHER


@given(st.text(), st.sampled_from(["text", "button", "interactive", "image"]))
def test_classify_never_raises(text: str, message_type: str) -> None:
    """Any text of any type gets an Intent."""
    assert isinstance(classify(text, message_type), Intent)


@given(st.sampled_from(STOP_MESSAGES), st.text(alphabet=" .!?¡¿", max_size=4))
def test_stop_survives_surrounding_punctuation(text: str, edge: str) -> None:
    """Spaces and punctuation around a stop word never change the intent."""
    assert classify(f"{edge}{text}{edge[::-1]}", "text") is Intent.STOP


def test_command_keeps_hindi_vowel_signs() -> None:
    """Trimming strips punctuation but never a trailing Devanagari vowel sign."""
    assert command_of(" रोकें। ") == "रोकें"


# --- reply texts ---------------------------------------------------------------------------------

REPLIES = {
    "HELP_TEXT": inbound.HELP_TEXT,
    "NOT_FOUND_OR_NOT_YOURS": inbound.NOT_FOUND_OR_NOT_YOURS,
    "LOOKUP_UNAVAILABLE": inbound.LOOKUP_UNAVAILABLE,
    "NON_TEXT_REPLY": inbound.NON_TEXT_REPLY,
    "OPTED_OUT_CONFIRMATION": inbound.OPTED_OUT_CONFIRMATION,
    "OPTED_IN_CONFIRMATION": inbound.OPTED_IN_CONFIRMATION,
    "TOO_MANY_LOOKUPS": inbound.TOO_MANY_LOOKUPS,
}


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_reply_texts_fit_whatsapp_and_carry_no_order_data(name: str) -> None:
    """Every reply is non-empty, ≤ 4,096 characters and names no order."""
    text = REPLIES[name]
    assert 0 < len(text) <= 4096
    assert find_order_reference(text.replace("1023", "")) is None


def test_help_explains_how_to_ask_and_how_to_opt_out() -> None:
    """The help text mentions the order number, the confirmation e-mail's order id and STOP."""
    assert "order number" in inbound.HELP_TEXT
    assert "order ID" in inbound.HELP_TEXT
    assert "STOP" in inbound.HELP_TEXT


def test_not_found_text_does_not_say_whether_the_order_exists() -> None:
    """One neutral text serves "no such order" and "not your order": no ownership or existence."""
    text = inbound.NOT_FOUND_OR_NOT_YOURS.lower()
    for giveaway in ("does not exist", "doesn't exist", "belongs", "another customer", "not yours"):
        assert giveaway not in text
