"""Pure parsing of Wix eCommerce payloads into domain values.

Tolerant by design: a field of the wrong type or shape becomes ``None`` (absent), unknown enum
strings pass through as data, and the only error raised is ``BadOrder`` for an order without an id.
Accepts the REST names and the JS SDK's renames (``_id``, ``_createdDate``, ``_updatedDate``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from notifier.domain import ContactPhone, LineItem, Money, Order, Tracking

MAX_LINE_ITEMS = 200
ITEM_FALLBACK_NAME = "Item"


class BadOrder(ValueError):  # noqa: N818 - the name the brief fixes
    """An order payload notifier cannot use at all (no id); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def dig(raw: object, *keys: str) -> Any:
    """``raw[k1][k2]…`` or None as soon as a level is missing or not a mapping."""
    value: Any = raw
    for key in keys:
        # JSON objects are dicts: the exact type check spares the slower ABC check.
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def text(value: object) -> str | None:
    """A non-blank string, stripped; anything else is None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def parse_datetime(value: object) -> datetime | None:
    """An ISO-8601 string as an aware UTC datetime ('Z' or offset, ms optional); bad → None."""
    if not isinstance(value, str) or not value.isascii():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def format_datetime(moment: datetime) -> str:
    """The Wix wire form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a decimal string or an int ("10.0", "0", 5); anything else → None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def parse_money(raw: object, default_currency: str | None) -> Money | None:
    """``{"amount": "1299.00", "currency"?: "INR"}`` → Money; None without an amount or currency."""
    amount = parse_decimal(dig(raw, "amount"))
    currency = text(dig(raw, "currency")) or default_currency
    if amount is None or currency is None:
        return None
    return Money(amount, currency)


def _number(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return text(value)


def _country(value: object) -> str | None:
    country = text(value)
    return country.upper() if country else None


def _contact_blocks(raw: Mapping[str, Any]) -> list[Any]:
    return [
        dig(raw, "billingInfo", "contactDetails"),
        dig(raw, "shippingInfo", "logistics", "shippingDestination", "contactDetails"),
        dig(raw, "buyerInfo", "contactDetails"),
    ]


def _names(raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """First/last name from the first contact block that holds either of them."""
    for block in _contact_blocks(raw):
        first, last = text(dig(block, "firstName")), text(dig(block, "lastName"))
        if first or last:
            return first, last
    return None, None


def _phones(raw: Mapping[str, Any]) -> tuple[ContactPhone, ...]:
    billing_country = _country(dig(raw, "billingInfo", "address", "country"))
    destination = dig(raw, "shippingInfo", "logistics", "shippingDestination")
    shipping_country = _country(dig(destination, "address", "country"))
    recipient_country = _country(dig(raw, "recipientInfo", "address", "country"))
    candidates = [
        (dig(raw, "billingInfo", "contactDetails", "phone"), billing_country or shipping_country),
        (dig(destination, "contactDetails", "phone"), shipping_country or billing_country),
        (
            dig(raw, "recipientInfo", "contactDetails", "phone"),
            recipient_country or shipping_country or billing_country,
        ),
        (dig(raw, "buyerInfo", "contactDetails", "phone"), billing_country or shipping_country),
    ]
    phones: list[ContactPhone] = []
    for value, country in candidates:
        phone_text = text(value)
        if phone_text is None:
            continue
        phone = ContactPhone(phone_text, country)
        if phone not in phones:
            phones.append(phone)
    return tuple(phones)


def _order_country(raw: Mapping[str, Any]) -> str | None:
    billing = dig(raw, "billingInfo", "address", "country")
    shipping = dig(raw, "shippingInfo", "logistics", "shippingDestination", "address", "country")
    return _country(billing) or _country(shipping)


def _quantity(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return max(value, 0) if isinstance(value, int) else 0


def _line_items(raw: Mapping[str, Any], currency: str | None) -> tuple[LineItem, ...]:
    items = raw.get("lineItems")
    if not isinstance(items, list):
        return ()
    parsed: list[LineItem] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        name = text(dig(item, "productName", "translated")) or text(
            dig(item, "productName", "original")
        )
        parsed.append(
            LineItem(
                name=name or ITEM_FALLBACK_NAME,
                quantity=_quantity(item.get("quantity")),
                price=parse_money(item.get("price"), currency),
            )
        )
        if len(parsed) >= MAX_LINE_ITEMS:
            break
    return tuple(parsed)


def _total(raw: Mapping[str, Any], currency: str | None) -> Money | None:
    summary = raw.get("priceSummary")
    # Older orders (get-order-rest-2.json) carry ``totalPrice`` instead of ``total``.
    total = dig(summary, "total")
    return parse_money(total if total is not None else dig(summary, "totalPrice"), currency)


def order_id_of(raw: object) -> str | None:
    """The order's id (REST ``id`` or SDK ``_id``) if it is a non-blank string."""
    return text(dig(raw, "id")) or text(dig(raw, "_id"))


def parse_order(raw: Mapping[str, Any]) -> Order:
    """One Wix order payload → Order. Raises ``BadOrder`` only when the id is missing."""
    order_id = order_id_of(raw)  # also None when ``raw`` is not a mapping at all
    if order_id is None:
        raise BadOrder("order has no id")
    currency = text(raw.get("currency"))
    first_name, last_name = _names(raw)
    archived = raw.get("archived")
    return Order(
        id=order_id,
        number=_number(raw.get("number")),
        status=text(raw.get("status")),
        payment_status=text(raw.get("paymentStatus")),
        fulfillment_status=text(raw.get("fulfillmentStatus")),
        created_date=parse_datetime(raw.get("createdDate", raw.get("_createdDate"))),
        updated_date=parse_datetime(raw.get("updatedDate", raw.get("_updatedDate"))),
        currency=currency,
        buyer_language=text(raw.get("buyerLanguage")),
        total=_total(raw, currency),
        first_name=first_name,
        last_name=last_name,
        phones=_phones(raw),
        country=_order_country(raw),
        line_items=_line_items(raw, currency),
        archived=archived if isinstance(archived, bool) else None,
    )


def _fulfilments(with_fulfilments: object) -> Iterator[Any]:
    fulfilments = dig(with_fulfilments, "fulfillments")
    if isinstance(fulfilments, list):
        yield from fulfilments


def parse_tracking(raw: Mapping[str, Any]) -> tuple[Tracking, ...]:
    """Tracking entries of a Get-fulfilments response, in order, without duplicates or blanks."""
    return _tracking_of(dig(raw, "orderWithFulfillments"))


def parse_tracking_by_order(raw: Mapping[str, Any]) -> dict[str, tuple[Tracking, ...]]:
    """A List-fulfilments-by-ids response as order id → its tracking (entries without an id are
    dropped; an order Wix left out is simply absent)."""
    entries = dig(raw, "ordersWithFulfillments")
    found: dict[str, tuple[Tracking, ...]] = {}
    for entry in entries if isinstance(entries, list) else []:
        order_id = text(dig(entry, "orderId"))
        if order_id is not None:
            found[order_id] = _tracking_of(entry)
    return found


def _tracking_of(with_fulfilments: object) -> tuple[Tracking, ...]:
    found: list[Tracking] = []
    for fulfilment in _fulfilments(with_fulfilments):
        info = dig(fulfilment, "trackingInfo")
        tracking = Tracking(
            number=text(dig(info, "trackingNumber")),
            provider=text(dig(info, "shippingProvider")),
            link=text(dig(info, "trackingLink")),
        )
        if tracking != Tracking(None, None, None) and tracking not in found:
            found.append(tracking)
    return tuple(found)
