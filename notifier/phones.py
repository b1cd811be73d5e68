"""Pure: free-text checkout phones → E.164, and whether an inbound wa_id is the order's buyer.

Checkout phones are typed by people: national format, a trunk 0, "(0)", digits in other scripts.
``phonenumbers`` reads all of that given the right country. WhatsApp's ``wa_id`` is different: it
is digits only and may drop Brazil's 9th mobile digit or Argentina's mobile 9, forms
``phonenumbers`` calls invalid, so wa_ids are compared by digits (``same_person``), never validated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from notifier.domain import ContactPhone, Order

MISSING = "missing"
INVALID = "invalid"
_MASK = "•••••"
_UNKNOWN_REGIONS = frozenset({"ZZ", "001"})
_BRAZIL_MOBILE_WITH_NINE = 13  # 55 + DD + 9XXXXXXXX
E164_MAX_DIGITS = 15


@dataclass(frozen=True, slots=True)
class PhoneCheck:
    """A usable E.164 number ("+4915123456789"), or why there is none ("missing" / "invalid")."""

    e164: str | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.e164 is not None


# A poll reads the same few phones again and again (one customer, many orders; an order re-read
# by the overlap), and parsing one costs about 0.2 ms; PhoneCheck is frozen, so sharing is safe.
# 1,024 entries cover ten pages; 8,192 cost ~3 MB of peak RSS in a 10,000-order poll.
@lru_cache(maxsize=1024)
def normalise(raw: str | None, country: str | None) -> PhoneCheck:
    """Read a typed phone in ``country`` (ISO alpha-2) as E.164; never raises."""
    text = (raw or "").strip()
    if not any(char.isdecimal() for char in text):
        return PhoneCheck(None, MISSING)
    region = _region(country)
    if region is None and text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return PhoneCheck(None, INVALID)
    if not phonenumbers.is_valid_number(number):
        return PhoneCheck(None, INVALID)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # phonenumbers accepts some over-long numbers (a 16-digit +49 one); E.164 allows 15 digits.
    if len(e164) - 1 > E164_MAX_DIGITS:
        return PhoneCheck(None, INVALID)
    return PhoneCheck(e164, None)


def _region(country: str | None) -> str | None:
    code = (country or "").strip().upper()
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


def order_phones(order: Order, default_country: str | None) -> list[PhoneCheck]:
    """Every phone of the order, each read in its own country, else the order's, else the default."""
    return [normalise(p.raw, _country_for(p, order, default_country)) for p in order.phones]


def recipient_for(order: Order, default_country: str | None) -> PhoneCheck:
    """The first valid phone of the order; otherwise "invalid" if any was given, else "missing"."""
    checks = order_phones(order, default_country)
    for check in checks:
        if check.ok:
            return check
    problems = [c.problem for c in checks]
    return PhoneCheck(None, INVALID if INVALID in problems else MISSING)


def _country_for(phone: ContactPhone, order: Order, default_country: str | None) -> str | None:
    return phone.country or order.country or default_country


def digits(e164_or_wa_id: str) -> str:
    """Only the digits, as ASCII ("+91 98200-00001" → "919820000001")."""
    return "".join(str(int(char)) for char in e164_or_wa_id if char.isdecimal())


def _calling_code(phone_digits: str) -> tuple[str, str] | None:
    """(calling code, ISO region); calling codes are prefix-free, so the first match is the one."""
    for length in (1, 2, 3):
        code = phone_digits[:length]
        if len(code) < length:
            return None
        region = phonenumbers.region_code_for_country_code(int(code))
        if region not in _UNKNOWN_REGIONS:
            return code, region
    return None


def market_of(phone: str) -> str | None:
    """The ISO region of the number's calling code ("+919820000001" → "IN"); works on wa_ids."""
    found = _calling_code(digits(phone))
    return found[1] if found else None


def same_person(a: str, b: str) -> bool:
    """Whether two numbers reach one WhatsApp user (Brazil 9th digit, Argentina 549 ≡ 54)."""
    left, right = _canonical(digits(a)), _canonical(digits(b))
    return bool(left) and left == right


def _canonical(phone_digits: str) -> str:
    if (
        phone_digits.startswith("55")
        and len(phone_digits) == _BRAZIL_MOBILE_WITH_NINE
        and phone_digits[4] == "9"
    ):
        return phone_digits[:4] + phone_digits[5:]
    if phone_digits.startswith("549"):
        return "54" + phone_digits[3:]
    return phone_digits


def mask(phone: str) -> str:
    """For logs: the calling code and the last 4 digits only ("+91•••••0001")."""
    phone_digits = digits(phone)
    found = _calling_code(phone_digits)
    code = found[0] if found else ""
    if len(phone_digits) < len(code) + 6:
        return "+" + _MASK if phone_digits else ""
    return f"+{code}{_MASK}{phone_digits[-4:]}"
