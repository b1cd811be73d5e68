"""phones: free-text checkout phones → E.164, wa_id ownership matching, masking."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain import ContactPhone, Order
from notifier.phones import (
    PhoneCheck,
    digits,
    market_of,
    mask,
    normalise,
    recipient_for,
    same_person,
)


def order_with(*phones: ContactPhone, country: str | None = None) -> Order:
    return Order(
        id="o-1",
        number="10131",
        status="APPROVED",
        payment_status="PAID",
        fulfillment_status="NOT_FULFILLED",
        phones=phones,
        country=country,
    )


@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("0151 2345 6789", "DE", "+4915123456789"),
        ("+49 (0)151 23456789", None, "+4915123456789"),
        ("+49 0151 23456789", None, "+4915123456789"),
        ("(11) 98765-4321", "BR", "+5511987654321"),
        ("011 15-2345-6789", "AR", "+5491123456789"),
    ],
)
def test_br18_typed_phones_become_e164(raw: str, country: str | None, e164: str) -> None:
    """BR-18: national formats, trunk 0 and "(0)" are read as the right E.164 number."""
    assert normalise(raw, country) == PhoneCheck(e164, None)


def test_br18_too_short_number_is_invalid() -> None:
    """BR-18: "12345" in Germany is invalid, so nothing is sent."""
    assert normalise("12345", "DE") == PhoneCheck(None, "invalid")


@pytest.mark.parametrize("raw", ["", "   ", None, "n/a"])
def test_br18_empty_phone_is_missing(raw: str | None) -> None:
    """BR-18: an empty (or digit-less) phone is "missing", not "invalid"."""
    assert normalise(raw, "DE") == PhoneCheck(None, "missing")


@pytest.mark.parametrize(
    "raw", ["+91 ९८२०० ०००० १", "+91 ٩٨٢٠٠ ٠٠٠٠ ١", "09820000001", "0091 98200 00001"]
)
def test_digits_in_other_scripts_and_trunk_forms_are_read(raw: str) -> None:
    """Devanagari and Arabic-Indic digits, a trunk 0 and a 00 prefix all give +919820000001."""
    assert normalise(raw, "IN") == PhoneCheck("+919820000001", None)


def test_00_prefix_without_country_is_international() -> None:
    """With no country known, a leading 00 is read as the international prefix."""
    assert normalise("0049 151 23456789", None).e164 == "+4915123456789"


def test_garbage_country_is_ignored() -> None:
    """An unknown country code behaves like no country: an international number still works."""
    assert normalise("+49 151 23456789", "XX").e164 == "+4915123456789"
    assert normalise("0151 23456789", "Germany").problem == "invalid"


def test_lower_case_country_is_accepted() -> None:
    """Country codes are read case-insensitively."""
    assert normalise("0151 2345 6789", "de").e164 == "+4915123456789"


@given(
    raw=st.one_of(st.none(), st.text(), st.from_regex(r"\+?[0-9 ()\-]{0,30}", fullmatch=True)),
    country=st.sampled_from(
        [None, "", "DE", "BR", "AR", "IN", "US", "XX", "de", "??", "ZZ", "001"]
    ),
)
def test_normalise_never_raises(raw: str | None, country: str | None) -> None:
    """Any text and any country give a PhoneCheck with exactly one of e164 / problem."""
    check = normalise(raw, country)
    assert (check.e164 is None) != (check.problem is None)
    if check.e164 is not None:
        assert re.fullmatch(r"\+[1-9][0-9]{6,14}", check.e164)
    else:
        assert check.problem in {"missing", "invalid"}


def test_recipient_uses_first_valid_phone_with_its_own_country() -> None:
    """An invalid first phone is skipped; the next one is read in its own country."""
    order = order_with(
        ContactPhone("12345", "DE"), ContactPhone("(11) 98765-4321", "BR"), country="DE"
    )
    assert recipient_for(order, "IN") == PhoneCheck("+5511987654321", None)


def test_recipient_falls_back_to_order_then_default_country() -> None:
    """A phone without its own country is read in the order's country, else the default."""
    national = ContactPhone("0151 2345 6789", None)
    assert recipient_for(order_with(national, country="DE"), "IN").e164 == "+4915123456789"
    assert recipient_for(order_with(national), "DE").e164 == "+4915123456789"
    assert recipient_for(order_with(national), None).problem == "invalid"


def test_recipient_reports_invalid_over_missing() -> None:
    """With an empty phone and a bad phone, the problem reported is "invalid"."""
    order = order_with(ContactPhone("", "DE"), ContactPhone("12345", "DE"))
    assert recipient_for(order, None) == PhoneCheck(None, "invalid")


def test_recipient_without_phones_is_missing() -> None:
    """An order with no phone at all reports "missing"."""
    assert recipient_for(order_with(), "DE") == PhoneCheck(None, "missing")


def test_digits_strips_everything_but_ascii_digits() -> None:
    """digits() keeps only digits, converting other scripts to ASCII."""
    assert digits("+91 98200-00001") == "919820000001"
    assert digits("+91 ९८२००") == "9198200"
    assert digits("") == ""


@pytest.mark.parametrize(
    ("phone", "market"),
    [
        ("+919820000001", "IN"),
        ("4915123456789", "DE"),
        ("551187654321", "BR"),
        ("+1 415 555 0100", "US"),
        ("", None),
        ("+999 123", None),
    ],
)
def test_market_of_reads_the_calling_code(phone: str, market: str | None) -> None:
    """The market is the calling code's region, also for wa_ids phonenumbers calls invalid."""
    assert market_of(phone) == market


@pytest.mark.parametrize(
    ("order_phone", "wa_id"),
    [("+55 11 98765-4321", "551187654321"), ("+54 11 2345-6789", "5491123456789")],
)
def test_br18_wa_id_variants_are_the_same_person(order_phone: str, wa_id: str) -> None:
    """BR-18: Brazil's 9th digit and Argentina's 549/54 forms match, in both directions."""
    assert same_person(order_phone, wa_id)
    assert same_person(wa_id, order_phone)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("+5511987654321", "551187654322"),
        ("+5491123456789", "541123456780"),
        ("+4915123456789", "4915123456780"),
        ("+919820000001", "+9198200000011"),
        ("", ""),
    ],
)
def test_different_numbers_are_not_the_same_person(a: str, b: str) -> None:
    """Different numbers (and two empty strings) never match."""
    assert not same_person(a, b)


def test_identical_numbers_in_any_notation_match() -> None:
    """The same number with or without + and spaces is the same person."""
    assert same_person("+49 151 23456789", "4915123456789")


def test_mask_keeps_calling_code_and_last_four() -> None:
    """Masked phones show only the calling code and the last 4 digits."""
    assert mask("+919820000001") == "+91•••••0001"
    assert mask("4915123456789") == "+49•••••6789"
    assert mask("+1 415 555 0100") == "+1•••••0100"


def test_mask_hides_short_or_empty_numbers_entirely() -> None:
    """Numbers too short to hide anything are fully masked; empty stays empty."""
    assert mask("+49123") == "+•••••"
    assert mask("") == ""


@given(st.text())
def test_mask_never_reveals_middle_digits(text: str) -> None:
    """A masked phone shows at most the calling code plus 4 digits."""
    masked = mask(text)
    assert len(digits(masked)) <= 3 + 4


def test_an_over_long_number_is_invalid_even_if_phonenumbers_accepts_it() -> None:
    """E.164 allows at most 15 digits: a 16-digit German number found by hypothesis is invalid."""
    assert normalise("20100000000000", "DE") == PhoneCheck(None, "invalid")
