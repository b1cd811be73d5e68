"""Pure: the plain-English words customers see for Wix status values (product.md's table).

Labels are data: a store may override any key per language. Keys are ``"<field>.<WIX_VALUE>"``
(``"payment.PAID"``), ``"unknown"``, and the phrases of the lookup reply (``"reply.*"``) and of
the item summary (``"items.*"``). Phrases hold ``{placeholders}`` filled by ``Labels.text``.
Only English ships: a translation nobody checked is worse than a clear English fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

FALLBACK_LANGUAGE = "en"

_ENGLISH: dict[str, str] = {
    "unknown": "Unknown",
    "payment.PAID": "Paid",
    "payment.NOT_PAID": "Not paid",
    "payment.PENDING": "Payment pending",
    "payment.PARTIALLY_PAID": "Partially paid",
    "payment.PARTIALLY_REFUNDED": "Partially refunded",
    "payment.FULLY_REFUNDED": "Refunded",
    "payment.PENDING_MERCHANT": "Awaiting confirmation",
    "payment.CANCELED": "Payment cancelled",
    "payment.DECLINED": "Payment declined",
    "payment.UNSPECIFIED": "Unknown",
    "fulfillment.NOT_FULFILLED": "Preparing for dispatch",
    "fulfillment.PARTIALLY_FULFILLED": "Partly shipped",
    "fulfillment.FULFILLED": "Shipped",
    "status.CANCELED": "Cancelled",
    "reply.greeting": "Hi {name}, here is your order update:",
    "reply.order": "Order #{number}",
    "reply.payment": "Payment: {label}",
    "reply.fulfillment": "Fulfilment: {label}",
    "reply.status": "Status: {label}",
    "reply.item": "Item: {item}",
    "reply.more_items": "…and {count} more",
    "reply.total": "Total: {total}",
    "items.line": "{name} (x{quantity})",
    "items.more_one": "{first} and 1 more item",
    "items.more_many": "{first} and {count} more items",
}

DEFAULT_LABELS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {FALLBACK_LANGUAGE: MappingProxyType(_ENGLISH)}
)


@dataclass(frozen=True, slots=True)
class Labels:
    """The resolved words for one language; every missing key falls back to English."""

    language: str
    table: Mapping[str, str]

    @classmethod
    def for_language(
        cls, lang: str | None, overrides: Mapping[str, Mapping[str, str]] | None = None
    ) -> Labels:
        """Labels for ``lang`` ("pt_BR" also tries "pt"), layered over English; overrides win."""
        wanted = _language_chain(lang)
        merged: dict[str, str] = {}
        for language in wanted:
            merged.update(DEFAULT_LABELS.get(language, {}))
            merged.update((overrides or {}).get(language, {}))
        return cls(language=wanted[-1], table=MappingProxyType(merged))

    @property
    def unknown(self) -> str:
        return self.table.get("unknown") or _ENGLISH["unknown"]

    def payment(self, value: str | None) -> str:
        """The label of a Wix ``paymentStatus``; unknown or None gives "Unknown"."""
        return self._enum("payment", value)

    def fulfillment(self, value: str | None) -> str:
        """The label of a Wix ``fulfillmentStatus``; unknown or None gives "Unknown"."""
        return self._enum("fulfillment", value)

    def status(self, value: str | None) -> str:
        """The label of a Wix order ``status``; unlabelled values or None give "Unknown"."""
        return self._enum("status", value)

    def text(self, key: str, **values: str) -> str:
        """The phrase ``key`` with its ``{placeholders}`` filled in (missing key → English)."""
        phrase = self.table.get(key) or _ENGLISH.get(key, key)
        # str.replace, not str.format: a store's override may contain stray braces.
        for name, value in values.items():
            phrase = phrase.replace("{" + name + "}", value)
        return phrase

    def _enum(self, field: str, value: str | None) -> str:
        if value is None:
            return self.unknown
        return self.table.get(f"{field}.{value}") or self.unknown


def _language_chain(lang: str | None) -> tuple[str, ...]:
    """English first, then the base language, then the full tag: later layers win."""
    chain = [FALLBACK_LANGUAGE]
    tag = (lang or "").strip().replace("-", "_")
    base = tag.split("_", 1)[0].lower()
    for candidate in (base, tag):
        if candidate and candidate not in chain:
            chain.append(candidate)
    return tuple(chain)
