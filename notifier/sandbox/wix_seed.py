"""Orders for the Wix sandbox: the guide's seed order 1023 and realistic generated orders.

Generated orders are shaped like Wix's own Search Orders response (full size, REST names) and carry
the mess real checkouts produce: national-format phones, trunk zeros, extensions, empty names.
Pure: the caller passes the RNG and ``now``.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

from notifier.wix_parse import format_datetime


def seed_1023() -> dict[str, Any]:
    """The seed guide's order #1023 (Priya, one kurta ×2, ₹1,299.00, PAID/NOT_FULFILLED)."""
    data = resources.files("notifier.sandbox").joinpath("data/seed-order.json").read_text("utf-8")
    order: dict[str, Any] = json.loads(data)["order"]
    return order


@dataclass(frozen=True)
class _Market:
    country: str
    country_name: str
    currency: str
    symbol: str
    city: str
    phones: tuple[str | None, ...]  # None = the buyer left the phone out entirely
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    languages: tuple[str, ...] = ("en",)


_MARKETS = (
    _Market(
        "IN",
        "India",
        "INR",
        "₹",
        "Mumbai",
        ("+91982000{n}", "098200 0{n}", "+91-98200-0{n}", "982000{n}", "", None),
        ("Priya", "Rahul", "Ananya", "Vikram", "Sneha", ""),
        ("Sharma", "Patel", "Iyer", "Singh", "Reddy"),
        ("en", "hi"),
    ),
    _Market(
        "DE",
        "Germany",
        "EUR",
        "€",
        "Berlin",
        ("+49 (0)151 2345{n}x", "0151 2345 {n}", "+49 151 2345{n}", None),
        ("Noa", "Lukas", "Mia", ""),
        ("Becker", "Ferreira", "Schmidt"),
    ),
    _Market(
        "BR",
        "Brazil",
        "BRL",
        "R$",
        "São Paulo",
        ("(11) 98765-{n}", "+55 11 98765-{n}", "11 9876{n}"),
        ("João", "Ana", "Lucas"),
        ("Silva", "Souza"),
    ),
    _Market(
        "AR",
        "Argentina",
        "USD",
        "$",
        "Buenos Aires",
        ("011 15-2345-{n}", "+54 11 2345-{n}"),
        ("Sofía", "Mateo"),
        ("González", "Rodríguez"),
    ),
    _Market(
        "US",
        "United States",
        "USD",
        "$",
        "New York",
        ("0555555555", "(212) 555-{n}", None),
        ("John", "Jane"),
        ("Doe", "Smith"),
    ),
    _Market(
        "GB",
        "United Kingdom",
        "USD",
        "$",
        "London",
        ("07700 90{n}", "+44 7700 90{n}"),
        ("Oliver", "Amelia"),
        ("Jones", "Taylor"),
    ),
    _Market(
        "AE",
        "United Arab Emirates",
        "USD",
        "$",
        "Dubai",
        ("050 123 {n}", "+971 50 123 {n}"),
        ("Omar", "Fatima"),
        ("Al Mansouri", "Haddad"),
    ),
)
_MARKET_WEIGHTS = (60, 10, 8, 5, 7, 5, 5)
_PRODUCTS = (
    ("Classic Cotton Kurta", Decimal("649.50")),
    ("Block-Print Dupatta", Decimal("399")),
    ("Indonesian Blend", Decimal("55.00")),
    ("Gift Set\nRed\tLarge", Decimal("24.9")),
    ("Brazilian Arabica", Decimal("48.75")),
    ("Special wrapping", Decimal("2")),
)
# (status, paymentStatus, fulfillmentStatus) with weights: mostly open or done, a few odd ones.
_STATES = (
    (("APPROVED", "NOT_PAID", "NOT_FULFILLED"), 30),
    (("APPROVED", "PAID", "NOT_FULFILLED"), 25),
    (("APPROVED", "PAID", "FULFILLED"), 25),
    (("APPROVED", "PAID", "PARTIALLY_FULFILLED"), 5),
    (("APPROVED", "PENDING", "NOT_FULFILLED"), 5),
    (("APPROVED", "PARTIALLY_REFUNDED", "FULFILLED"), 2),
    (("CANCELED", "FULLY_REFUNDED", "NOT_FULFILLED"), 3),
    (("PENDING", "PENDING_MERCHANT", "NOT_FULFILLED"), 3),
    (("APPROVED", "DECLINED", "NOT_FULFILLED"), 2),
)


def _amount(value: Decimal, symbol: str) -> dict[str, str]:
    # Wix sends decimal strings of varying precision ("10.0", "0", "1299.00").
    exact = value.quantize(Decimal("0.01"))
    shown = str(exact) if exact != exact.to_integral() else str(exact.normalize())
    return {"amount": shown, "formattedAmount": f"{symbol}{exact:,.2f}"}


def _phone(rng: random.Random, market: _Market, index: int) -> str | None:
    pattern = rng.choice(market.phones)
    if pattern is None:
        return None
    # 0002..9999: never the seed order's +91 98200 00001, which the lookup demo relies on.
    return pattern.replace("{n}", f"{(index - 1) % 9998 + 2:04d}")


def _contact(first: str, last: str, phone: str | None) -> dict[str, str]:
    details = {"firstName": first, "lastName": last}
    if phone is not None:
        details["phone"] = phone
    return details


def _address(rng: random.Random, market: _Market) -> dict[str, str]:
    return {
        "country": market.country,
        "city": market.city,
        "postalCode": f"{rng.randint(10000, 99999)}",
        "addressLine": f"{rng.randint(1, 200)} Market Street",
        "countryFullname": market.country_name,
    }


def _line_items(rng: random.Random, market: _Market) -> list[dict[str, Any]]:
    items = []
    for position in range(rng.randint(1, 4)):
        name, price = rng.choice(_PRODUCTS)
        items.append(
            {
                "id": f"00000000-0000-0000-0000-{position + 1:012d}",
                "productName": {"original": name, "translated": name},
                "quantity": rng.randint(1, 3),
                "price": _amount(price, market.symbol),
                "itemType": {"preset": "PHYSICAL"},
                "paymentOption": "FULL_PAYMENT_ONLINE",
            }
        )
    return items


def _price_summary(items: list[dict[str, Any]], market: _Market) -> dict[str, Any]:
    subtotal = sum((Decimal(i["price"]["amount"]) * i["quantity"] for i in items), start=Decimal(0))
    shipping = Decimal("5.0") if market.currency != "INR" else Decimal(0)
    symbol = market.symbol
    return {
        "subtotal": _amount(subtotal, symbol),
        "shipping": _amount(shipping, symbol),
        "tax": _amount(Decimal(0), symbol),
        "discount": _amount(Decimal(0), symbol),
        "total": _amount(subtotal + shipping, symbol),
    }


def _order(rng: random.Random, now: datetime, number: int) -> dict[str, Any]:
    market = rng.choices(_MARKETS, weights=_MARKET_WEIGHTS)[0]
    status, payment, fulfilment = rng.choices(
        [s for s, _ in _STATES], weights=[w for _, w in _STATES]
    )[0]
    created = now - timedelta(milliseconds=rng.randint(60_000, 30 * 24 * 3600 * 1000))
    updated = min(created + timedelta(milliseconds=rng.randint(0, 3 * 24 * 3600 * 1000)), now)
    first, last = rng.choice(market.first_names), rng.choice(market.last_names)
    phone = _phone(rng, market, number)
    address = _address(rng, market)
    items = _line_items(rng, market)
    # Some checkouts only keep the phone on the shipping contact.
    billing_phone = phone if rng.random() > 0.15 else None
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "number": str(number),
        "createdDate": format_datetime(created),
        "updatedDate": format_datetime(updated),
        "lineItems": items,
        "buyerInfo": {
            "contactId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "email": f"buyer{number}@example.com",
        },
        "paymentStatus": payment,
        "fulfillmentStatus": fulfilment,
        "buyerLanguage": rng.choice(market.languages),
        "weightUnit": "KG",
        "currency": market.currency,
        "taxIncludedInPrices": False,
        "priceSummary": _price_summary(items, market),
        "billingInfo": {"address": address, "contactDetails": _contact(first, last, billing_phone)},
        "shippingInfo": {
            "title": "Standard Shipping",
            "logistics": {
                "deliveryTime": "3 - 5 business days",
                "shippingDestination": {
                    "address": address,
                    "contactDetails": _contact(first, last, phone),
                },
            },
        },
        "status": status,
        "archived": False,
        "channelInfo": {"type": "WEB"},
        "seenByAHuman": rng.random() < 0.5,
    }


def generate_orders(
    rng: random.Random, *, now: datetime, count: int, start_number: int = 10001
) -> list[dict[str, Any]]:
    """``count`` realistic orders numbered from ``start_number``, created over the past 30 days."""
    return [_order(rng, now, start_number + offset) for offset in range(count)]
