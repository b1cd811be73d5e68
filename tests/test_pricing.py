"""pricing: dated rate card, estimates at send time, confirmation from status webhooks."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from importlib.resources import files

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain import Price
from notifier.errors import ConfigError
from notifier.pricing import (
    DEFAULT_RATE_CARD_PACKAGE,
    DEFAULT_RATE_CARD_RESOURCE,
    RateCard,
    confirm,
    estimate,
    normalise_category,
)

DE_CARD = """
[[rate]]
market = "DE"
category = "utility"
currency = "EUR"
amount = "0.0456"
effective_from = 2025-07-01

[[window_rule]]
category = "utility"
free_in_window = true
effective_from = 2025-07-01
"""

BILLED_IN_WINDOW_FROM_OCTOBER = """
[[window_rule]]
category = "utility"
free_in_window = false
effective_from = 2026-10-01
"""


@pytest.fixture(scope="module")
def card() -> RateCard:
    resource = files(DEFAULT_RATE_CARD_PACKAGE) / DEFAULT_RATE_CARD_RESOURCE
    return RateCard.from_toml(resource.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def de_card() -> RateCard:
    return RateCard.from_toml(DE_CARD)


def in_utility(card: RateCard, on: date, *, window_open: bool) -> Price:
    return estimate(card, market="IN", category="utility", on=on, window_open=window_open)


def test_shipped_card_india_utility_outside_window(card: RateCard) -> None:
    """A utility template to India outside a window is estimated at ₹0.115, exactly."""
    price = in_utility(card, date(2025, 9, 1), window_open=False)
    assert price == Price(Decimal("0.115"), "INR", Decimal("0.115"), "utility", "IN")


def test_shipped_card_india_utility_free_inside_window(card: RateCard) -> None:
    """A utility template inside an open window costs 0 with free_reason service_window."""
    price = in_utility(card, date(2025, 9, 1), window_open=True)
    assert price.amount == Decimal(0)
    assert price.free_reason == "service_window"
    assert (price.currency, price.rate) == ("INR", Decimal("0.115"))


def test_marketing_is_not_free_inside_window(card: RateCard) -> None:
    """The free-window rule is per category: marketing in an open window is still charged."""
    price = estimate(card, market="IN", category="MARKETING", on=date(2025, 9, 1), window_open=True)
    assert (price.amount, price.free_reason) == (Decimal("0.7846"), None)


@pytest.mark.parametrize(
    ("on", "expected"),
    [(date(2025, 12, 31), Decimal("0.7846")), (date(2026, 1, 1), Decimal("0.8631"))],
)
def test_marketing_rate_changes_on_effective_date(
    card: RateCard, on: date, expected: Decimal
) -> None:
    """India marketing is 0.7846 through 2025-12-31 and 0.8631 from 2026-01-01."""
    price = estimate(card, market="IN", category="marketing", on=on, window_open=False)
    assert price.amount == expected


@pytest.mark.parametrize(
    ("category", "amount"),
    [("authentication", "0.115"), ("authentication-international", "2.30")],
)
def test_shipped_card_authentication_rates(card: RateCard, category: str, amount: str) -> None:
    """The shipped card carries India's authentication rates, category names normalised."""
    price = estimate(card, market="in", category=category, on=date(2025, 7, 1), window_open=False)
    assert price.amount == Decimal(amount)
    assert price.market == "IN"


def test_no_rate_before_first_effective_date(card: RateCard) -> None:
    """Before any row is effective the cost is unknown (None), not zero."""
    assert in_utility(card, date(2025, 6, 30), window_open=False).amount is None


@pytest.mark.parametrize(
    ("market", "category"), [("BR", "utility"), (None, "utility"), ("IN", "service")]
)
def test_unknown_market_or_category_is_unknown_not_zero(
    card: RateCard, market: str | None, category: str
) -> None:
    """An unknown market, a missing market or an unknown category has amount None, never 0."""
    price = estimate(card, market=market, category=category, on=date(2025, 9, 1), window_open=False)
    assert price.amount is None
    assert price.currency is None


def test_window_change_is_data_not_code(card: RateCard) -> None:
    """A window rule dated 2026-10-01, free_in_window=false, charges in-window utility from then."""
    changed = card.merged(RateCard.from_toml(BILLED_IN_WINDOW_FROM_OCTOBER))
    before = in_utility(changed, date(2026, 9, 30), window_open=True)
    after = in_utility(changed, date(2026, 10, 1), window_open=True)
    assert (before.amount, before.free_reason) == (Decimal(0), "service_window")
    assert (after.amount, after.free_reason) == (Decimal("0.115"), None)


def test_store_override_wins_for_same_key(card: RateCard) -> None:
    """A store row for the same market/category/date replaces the shipped one; others stay."""
    override = RateCard.from_toml(
        '[[rate]]\nmarket="IN"\ncategory="utility"\ncurrency="INR"\namount="0.1"\n'
        "effective_from=2025-07-01\n"
    )
    merged = card.merged(override)
    assert in_utility(merged, date(2025, 9, 1), window_open=False).amount == Decimal("0.1")
    assert merged.rate_for("IN", "marketing", date(2026, 2, 1)) == card.rate_for(
        "IN", "marketing", date(2026, 2, 1)
    )
    assert len(merged.rates) == len(card.rates)


# The pricing block of the recorded fixture status-webhook-delivered-utility-free-in-window.json
# (a utility template delivered to +91 inside an open window), inlined so the test needs no path.
IN_WINDOW_PRICING: dict[str, object] = {
    "billable": False,
    "pricing_model": "PMP",
    "type": "free_customer_service",
    "category": "utility",
}


def test_br24_three_messages_to_germany(de_card: RateCard) -> None:
    """BR-24: free_customer_service → 0, regular → 0.0456 EUR, failed without pricing → 0."""
    on = date(2025, 9, 1)

    def confirmed(pricing: dict[str, object] | None, *, failed: bool = False) -> Price | None:
        return confirm(
            de_card, market="DE", category_hint="utility", on=on, pricing=pricing, failed=failed
        )

    free = {
        "pricing_model": "PMP",
        "category": "utility",
        "type": "free_customer_service",
        "billable": False,
    }
    regular = {"pricing_model": "PMP", "category": "utility", "type": "regular", "billable": True}
    a, b, c = confirmed(free), confirmed(regular), confirmed(None, failed=True)
    assert a is not None
    assert b is not None
    assert c is not None
    assert (a.amount, a.free_reason) == (Decimal(0), "free_customer_service")
    assert (b.amount, b.currency, b.free_reason) == (Decimal("0.0456"), "EUR", None)
    assert (c.amount, c.free_reason) == (Decimal(0), "failed")
    assert sum(p.amount or Decimal(0) for p in (a, b, c)) == Decimal("0.0456")


def test_confirm_without_pricing_is_not_confirmed_yet(de_card: RateCard) -> None:
    """A non-failed status with no pricing block (e.g. read) confirms nothing: None."""
    result = confirm(
        de_card,
        market="DE",
        category_hint="utility",
        on=date(2025, 9, 1),
        pricing=None,
        failed=False,
    )
    assert result is None


def test_confirm_free_entry_point(de_card: RateCard) -> None:
    """pricing.type free_entry_point costs 0 with that reason."""
    price = confirm(
        de_card,
        market="DE",
        category_hint="utility",
        on=date(2025, 9, 1),
        pricing={"type": "free_entry_point", "category": "utility"},
        failed=False,
    )
    assert price is not None
    assert (price.amount, price.free_reason) == (Decimal(0), "free_entry_point")


@pytest.mark.parametrize(
    ("billable", "amount", "reason"),
    [(True, Decimal("0.0456"), None), (False, Decimal(0), "not_billable")],
)
def test_confirm_falls_back_to_billable_without_type(
    de_card: RateCard, billable: bool, amount: Decimal, reason: str | None
) -> None:
    """With no pricing.type, the deprecated billable flag decides charged or free."""
    price = confirm(
        de_card,
        market="DE",
        category_hint="utility",
        on=date(2025, 9, 1),
        pricing={"billable": billable, "category": "utility"},
        failed=False,
    )
    assert price is not None
    assert (price.amount, price.free_reason) == (amount, reason)


def test_confirm_type_wins_over_billable(de_card: RateCard) -> None:
    """pricing.type regular is charged even if a stale billable says false."""
    price = confirm(
        de_card,
        market="DE",
        category_hint="utility",
        on=date(2025, 9, 1),
        pricing={"type": "regular", "billable": False, "category": "utility"},
        failed=False,
    )
    assert price is not None
    assert price.amount == Decimal("0.0456")


def test_confirm_uses_webhook_category_over_hint(card: RateCard) -> None:
    """The category Meta reports (a template re-categorised to MARKETING) prices the message."""
    price = confirm(
        card,
        market="IN",
        category_hint="utility",
        on=date(2026, 1, 5),
        pricing={"type": "regular", "category": "MARKETING"},
        failed=False,
    )
    assert price is not None
    assert (price.category, price.amount) == ("marketing", Decimal("0.8631"))


def test_confirm_recorded_in_window_webhook(card: RateCard) -> None:
    """The recorded free-in-window delivered webhook to +91 confirms 0 as free_customer_service."""
    price = confirm(
        card,
        market="IN",
        category_hint="utility",
        on=date(2026, 1, 1),
        pricing=IN_WINDOW_PRICING,
        failed=False,
    )
    assert price is not None
    assert (price.amount, price.free_reason, price.rate) == (
        Decimal(0),
        "free_customer_service",
        Decimal("0.115"),
    )


def test_confirm_regular_with_unknown_market_is_unknown(de_card: RateCard) -> None:
    """A charged message to a market without a rate is unknown (None), never 0."""
    price = confirm(
        de_card,
        market="US",
        category_hint="utility",
        on=date(2025, 9, 1),
        pricing={"type": "regular", "category": "utility"},
        failed=False,
    )
    assert price is not None
    assert price.amount is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("UTILITY", "utility"),
        ("authentication-international", "authentication_international"),
        (" Authentication International ", "authentication_international"),
        ("marketing_lite", "marketing_lite"),
    ],
)
def test_normalise_category(raw: str, expected: str) -> None:
    """Category names from Meta or config normalise to lower snake case."""
    assert normalise_category(raw) == expected


BAD_CARD = """
surprise = 1

[[rate]]
market = "IN"
category = "utility"
currency = "INR"
amount = "abc"
effective_from = 2025-07-01

[[rate]]
market = "IN"
category = "marketing"
currency = "INR"
amount = "-1"
effective_from = "2025-07-01"
colour = "red"

[[rate]]
market = "IN"
currency = "INR"
amount = 0.115
effective_from = 2025-07-01

[[rate]]
market = "IND"
category = "utility"
currency = "INR"
amount = "0.2"
effective_from = 2025-07-01T00:00:00Z

[[window_rule]]
category = "utility"
free_in_window = "yes"
effective_from = 2025-07-01
"""


def test_from_toml_lists_every_problem() -> None:
    """One ConfigError lists every problem: keys, amounts, dates and flags, all at once."""
    with pytest.raises(ConfigError) as caught:
        RateCard.from_toml(BAD_CARD)
    problems = "\n".join(caught.value.problems)
    for expected in (
        "unknown key 'surprise'",
        "rate[0]: amount is not a decimal number: 'abc'",
        "rate[1]: amount must not be negative",
        "rate[1]: effective_from must be an unquoted TOML date",
        "rate[1]: unknown key 'colour'",
        "rate[2]: missing key 'category'",
        "rate[3]: market must be 2 letters",
        "rate[3]: effective_from must be an unquoted TOML date",
        "window_rule[0]: free_in_window must be true or false",
    ):
        assert expected in problems
    assert len(caught.value.problems) == 9


def test_from_toml_rejects_float_amount() -> None:
    """An unquoted (float) amount is refused, so a price is never read through a float."""
    text = DE_CARD.replace('amount = "0.0456"', "amount = 0.0456")
    with pytest.raises(ConfigError, match="quoted decimal string"):
        RateCard.from_toml(text)


def test_from_toml_rejects_duplicates_and_bad_syntax() -> None:
    """Two rows for one market/category/date, or broken TOML, are configuration errors."""
    with pytest.raises(ConfigError, match="duplicate rate for DE / utility / 2025-07-01"):
        RateCard.from_toml(DE_CARD + DE_CARD.split("[[window_rule]]", maxsplit=1)[0])
    with pytest.raises(ConfigError, match="not valid TOML"):
        RateCard.from_toml("[[rate]\n")


def test_shipped_card_keeps_unconfirmed_change_commented_out(card: RateCard) -> None:
    """The shipped card documents the 2026-10-01 window change but does not enact it."""
    text = (files(DEFAULT_RATE_CARD_PACKAGE) / DEFAULT_RATE_CARD_RESOURCE).read_text(
        encoding="utf-8"
    )
    assert "# effective_from = 2026-10-01" in text
    assert card.free_in_window("utility", date(2027, 1, 1))


positive_decimals = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal("1e9"), allow_nan=False, allow_infinity=False
)


@given(positive_decimals)
def test_amount_round_trips_exactly_as_decimal(amount: Decimal) -> None:
    """Any positive decimal string in the card is read back as the identical Decimal (no float)."""
    text = DE_CARD.replace('"0.0456"', f'"{amount}"')
    rate = RateCard.from_toml(text).rate_for("DE", "utility", date(2025, 7, 1))
    assert rate is not None
    assert type(rate.amount) is Decimal
    assert str(rate.amount) == str(amount)
    price = estimate(
        RateCard.from_toml(text),
        market="DE",
        category="utility",
        on=date(2026, 1, 1),
        window_open=False,
    )
    assert price.amount == amount
