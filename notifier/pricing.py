"""Pure: a dated rate card + market + category + service window + date → the cost of a message.

The rate card is data, not code. Each ``[[rate]]`` is a price per delivered template message for
one market (ISO alpha-2 of the recipient's calling code) and category, valid from its
``effective_from`` date until a later row for the same market and category replaces it. Each
``[[window_rule]]`` says, from its date on, whether a category is free when delivered inside an
open customer-service window. A price change, or Meta billing utility inside the window, is a
new dated row, never a code change.

Two moments, two functions:

* ``estimate`` at send time, from the card and whether the window is open;
* ``confirm`` from a status webhook's ``pricing`` block (``type`` decides; the deprecated
  ``billable`` is only a fallback). The caller counts it once per message, on delivery.

An unknown market or category costs "unknown" (``amount=None``), never a silent zero. Money is
``Decimal`` throughout; amounts are quoted strings in TOML so no float ever touches them.

Loading the shipped card is I/O and lives with the caller::

    text = (importlib.resources.files(DEFAULT_RATE_CARD_PACKAGE) / DEFAULT_RATE_CARD_RESOURCE)
    card = RateCard.from_toml(text.read_text(encoding="utf-8"))
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from notifier.domain import Price
from notifier.errors import ConfigError

DEFAULT_RATE_CARD_PACKAGE = "notifier.data"
DEFAULT_RATE_CARD_RESOURCE = "rate_card.toml"

FREE_SERVICE_WINDOW = "service_window"
FREE_CUSTOMER_SERVICE = "free_customer_service"
FREE_ENTRY_POINT = "free_entry_point"
FREE_FAILED = "failed"
FREE_NOT_BILLABLE = "not_billable"

_RATE_KEYS = frozenset({"market", "category", "currency", "amount", "effective_from"})
_WINDOW_KEYS = frozenset({"category", "free_in_window", "effective_from"})
_TABLES = {"rate": _RATE_KEYS, "window_rule": _WINDOW_KEYS}

_K = TypeVar("_K")


def normalise_category(name: str) -> str:
    """Meta's category spellings as one lower snake name: ``"UTILITY"`` → ``"utility"``."""
    return "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())


@dataclass(frozen=True, slots=True)
class Rate:
    """The price of one delivered template message of ``category`` to ``market``."""

    market: str
    category: str
    currency: str
    amount: Decimal
    effective_from: date


@dataclass(frozen=True, slots=True)
class WindowRule:
    """From ``effective_from`` on, whether ``category`` is free inside a service window."""

    category: str
    free_in_window: bool
    effective_from: date


@dataclass(frozen=True, slots=True)
class RateCard:
    rates: tuple[Rate, ...] = ()
    window_rules: tuple[WindowRule, ...] = ()

    @classmethod
    def from_toml(cls, text: str, *, source: str = "rate card") -> RateCard:
        """Parse a rate card; raises ConfigError listing every problem found."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
        problems: list[str] = []
        tables = _tables(document, source, problems)
        rates = [_rate(row, f"{source}: rate[{i}]", problems) for i, row in tables["rate"]]
        rules = [
            _window_rule(row, f"{source}: window_rule[{i}]", problems)
            for i, row in tables["window_rule"]
        ]
        card = cls(
            rates=tuple(rate for rate in rates if rate is not None),
            window_rules=tuple(rule for rule in rules if rule is not None),
        )
        problems.extend(_duplicates(card, source))
        if problems:
            raise ConfigError(problems)
        return card

    def merged(self, override: RateCard) -> RateCard:
        """This card with ``override``'s rows winning for the same key and effective date."""
        rates = {_rate_key(r): r for r in self.rates} | {_rate_key(r): r for r in override.rates}
        rules = {_rule_key(w): w for w in self.window_rules} | {
            _rule_key(w): w for w in override.window_rules
        }
        return RateCard(
            rates=tuple(sorted(rates.values(), key=_rate_key)),
            window_rules=tuple(sorted(rules.values(), key=_rule_key)),
        )

    def rate_for(self, market: str, category: str, on: date) -> Rate | None:
        """The rate in force on ``on``: the latest ``effective_from`` not after it."""
        market, category = market.upper(), normalise_category(category)
        candidates = (
            rate
            for rate in self.rates
            if rate.market == market and rate.category == category and rate.effective_from <= on
        )
        return max(candidates, key=lambda rate: rate.effective_from, default=None)

    def free_in_window(self, category: str, on: date) -> bool:
        """Whether ``category`` delivered inside an open service window is free on ``on``."""
        category = normalise_category(category)
        candidates = (
            rule
            for rule in self.window_rules
            if rule.category == category and rule.effective_from <= on
        )
        latest = max(candidates, key=lambda rule: rule.effective_from, default=None)
        return latest is not None and latest.free_in_window


def estimate(
    card: RateCard, *, market: str | None, category: str, on: date, window_open: bool
) -> Price:
    """The expected cost of sending one template now (charged only if delivered)."""
    category = normalise_category(category)
    market = market.upper() if market else None
    rate = card.rate_for(market, category, on) if market else None
    if window_open and card.free_in_window(category, on):
        return _free(rate, category, market, FREE_SERVICE_WINDOW)
    return _charged(rate, category, market)


def confirm(
    card: RateCard,
    *,
    market: str | None,
    category_hint: str,
    on: date,
    pricing: Mapping[str, object] | None,
    failed: bool,
) -> Price | None:
    """The cost a status webhook confirms; None while no pricing has arrived.

    ``type`` decides: ``regular`` is charged, ``free_*`` types are free. Without a ``type``
    the deprecated ``billable`` decides; with neither, the message is assumed charged, so the
    ledger errs towards overstating spend rather than hiding it.
    """
    category = _category(pricing, category_hint)
    market = market.upper() if market else None
    rate = card.rate_for(market, category, on) if market else None
    if failed:
        return _free(rate, category, market, FREE_FAILED)
    if pricing is None:
        return None
    kind = pricing.get("type")
    if isinstance(kind, str) and kind.startswith("free_"):
        return _free(rate, category, market, kind)
    if kind != "regular" and pricing.get("billable") is False:
        return _free(rate, category, market, FREE_NOT_BILLABLE)
    return _charged(rate, category, market)


def _category(pricing: Mapping[str, object] | None, hint: str) -> str:
    reported = pricing.get("category") if pricing is not None else None
    return normalise_category(reported if isinstance(reported, str) and reported else hint)


def _charged(rate: Rate | None, category: str, market: str | None) -> Price:
    if rate is None:
        return Price(amount=None, currency=None, rate=None, category=category, market=market)
    return Price(
        amount=rate.amount,
        currency=rate.currency,
        rate=rate.amount,
        category=category,
        market=market,
    )


def _free(rate: Rate | None, category: str, market: str | None, reason: str) -> Price:
    return Price(
        amount=Decimal(0),
        currency=rate.currency if rate else None,
        rate=rate.amount if rate else None,
        category=category,
        market=market,
        free_reason=reason,
    )


# --- parsing: every helper appends to ``problems`` instead of raising -----------------------


def _tables(
    document: Mapping[str, object], source: str, problems: list[str]
) -> dict[str, list[tuple[int, Mapping[str, object]]]]:
    found: dict[str, list[tuple[int, Mapping[str, object]]]] = {name: [] for name in _TABLES}
    for key, value in document.items():
        if key not in _TABLES:
            problems.append(f"{source}: unknown key {key!r} (expected [[rate]] or [[window_rule]])")
        elif not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
            problems.append(f"{source}: {key!r} must be an array of tables, written [[{key}]]")
        else:
            found[key] = list(enumerate(value))
    return found


def _check_keys(
    row: Mapping[str, object], expected: frozenset[str], where: str, problems: list[str]
) -> bool:
    missing = sorted(expected - row.keys())
    unknown = sorted(row.keys() - expected)
    problems.extend(f"{where}: missing key {key!r}" for key in missing)
    problems.extend(f"{where}: unknown key {key!r}" for key in unknown)
    return not missing


def _rate(row: Mapping[str, object], where: str, problems: list[str]) -> Rate | None:
    if not _check_keys(row, _RATE_KEYS, where, problems):
        return None
    market = _code(row["market"], 2, f"{where}: market", problems)
    currency = _code(row["currency"], 3, f"{where}: currency", problems)
    category = _category_name(row["category"], f"{where}: category", problems)
    amount = _amount(row["amount"], f"{where}: amount", problems)
    effective_from = _date(row["effective_from"], f"{where}: effective_from", problems)
    if market and currency and category and amount is not None and effective_from:
        return Rate(market, category, currency, amount, effective_from)
    return None


def _window_rule(row: Mapping[str, object], where: str, problems: list[str]) -> WindowRule | None:
    if not _check_keys(row, _WINDOW_KEYS, where, problems):
        return None
    category = _category_name(row["category"], f"{where}: category", problems)
    free = _flag(row["free_in_window"], f"{where}: free_in_window", problems)
    effective_from = _date(row["effective_from"], f"{where}: effective_from", problems)
    if category and free is not None and effective_from:
        return WindowRule(category, free, effective_from)
    return None


def _flag(value: object, where: str, problems: list[str]) -> bool | None:
    if isinstance(value, bool):
        return value
    problems.append(f"{where} must be true or false, got {value!r}")
    return None


def _code(value: object, length: int, where: str, problems: list[str]) -> str | None:
    if isinstance(value, str) and len(value) == length and value.isascii() and value.isalpha():
        return value.upper()
    problems.append(f"{where} must be {length} letters, got {value!r}")
    return None


def _category_name(value: object, where: str, problems: list[str]) -> str | None:
    if isinstance(value, str) and normalise_category(value):
        return normalise_category(value)
    problems.append(f"{where} must be a non-empty name, got {value!r}")
    return None


def _amount(value: object, where: str, problems: list[str]) -> Decimal | None:
    if not isinstance(value, str):
        problems.append(f'{where} must be a quoted decimal string such as "0.115", got {value!r}')
        return None
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        problems.append(f"{where} is not a decimal number: {value!r}")
        return None
    if not amount.is_finite():
        problems.append(f"{where} must be a finite number, got {value!r}")
        return None
    if amount < 0:
        problems.append(f"{where} must not be negative, got {value!r}")
        return None
    return amount


def _date(value: object, where: str, problems: list[str]) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    problems.append(f"{where} must be an unquoted TOML date such as 2025-07-01, got {value!r}")
    return None


def _duplicates(card: RateCard, source: str) -> Iterable[str]:
    rate_keys = [_rate_key(rate) for rate in card.rates]
    rule_keys = [_rule_key(rule) for rule in card.window_rules]
    yield from (f"{source}: duplicate rate for {_show(k)}" for k in _repeated(rate_keys))
    yield from (f"{source}: duplicate window_rule for {_show(k)}" for k in _repeated(rule_keys))


def _repeated(keys: Iterable[_K]) -> Iterable[_K]:
    seen: set[_K] = set()
    for key in keys:
        if key in seen:
            yield key
        seen.add(key)


def _show(key: tuple[object, ...]) -> str:
    return " / ".join(str(part) for part in key)


def _rate_key(rate: Rate) -> tuple[str, str, date]:
    return (rate.market, rate.category, rate.effective_from)


def _rule_key(rule: WindowRule) -> tuple[str, date]:
    return (rule.category, rule.effective_from)
