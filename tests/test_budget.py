"""Monthly budget per store: past the cap, proactive template sends wait (deferred, with the reason),
replies to customers still go, ops get one alert per store and month, and a new month resumes.

Orders come from the Wix sandbox through the real sync; sends go to the WhatsApp sandbox; India
utility is ₹0.115 per message outside the service window (the shipped rate card).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from notifier.bootstrap import Runtime
from notifier.config import RATE_CARD_CURRENCY, Settings, parse_settings
from notifier.errors import ConfigError
from notifier.guard import over_budget
from notifier.sandbox.harness import Sandboxes
from notifier.serving import RunningServer
from notifier.store import registry
from tests.conftest import Clock
from tests.test_dispatch import baseline, created, wait_for, webhooks
from tests.test_sync import drain, india_phone, make_runtime, message_rows, order_guid, wix_order

__all__ = ["webhooks"]  # fixtures shared with test_dispatch

CAP = Decimal("0.2")  # the second ₹0.115 message takes the month to ₹0.230, past the cap


@pytest.fixture
def runtime(boxes: Sandboxes, engine: Engine, clock: Clock) -> Iterator[Runtime]:
    built = make_runtime(boxes, engine, clock, monthly_budget={"INR": CAP})
    yield built
    built.close()


def queue_paid(boxes: Sandboxes, runtime: Runtime, clock: Clock, *numbers: int) -> None:
    baseline(boxes, runtime, clock, *(wix_order(n, created=created(clock)) for n in numbers))
    for number in numbers:
        boxes.wix.set_payment(order_guid(number), "PAID")
    runtime.sync_all()


def budget_alerts(engine: Engine) -> list[registry.Alert]:
    with engine.connect() as conn:
        return [a for a in registry.open_alerts(conn) if a.kind == "budget"]


def test_past_the_cap_template_sends_wait_with_the_reason_and_alert_once(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """Three payments, cap ₹0.20: two sent (₹0.230), the third stays deferred; one budget alert."""
    queue_paid(boxes, runtime, clock, 10301, 10302, 10303)

    result = drain(runtime)
    clock.advance(seconds=runtime.settings.whatsapp.template_recheck_seconds + 1)
    drain(runtime)  # a second look at the held row neither sends nor alerts again

    assert (result.sent, result.deferred) == (2, 1)
    sent = sorted(m.body_params[1] for m in boxes.whatsapp.sent_messages())
    [held] = [row for row in message_rows(engine) if row["status"] == "deferred"]
    assert sent == sorted({"10301", "10302", "10303"} - {held["order_number"]})
    assert held["status"] == "deferred"
    assert held["error_title"] == "paused: monthly budget of 0.2 INR reached (0.230 INR spent)"
    [alert] = budget_alerts(engine)
    assert alert.key == "budget:sandbox-store:2026-06"


def test_replies_to_customers_continue_past_the_cap(
    boxes: Sandboxes,
    runtime: Runtime,
    engine: Engine,
    clock: Clock,
    webhooks: RunningServer,
) -> None:
    """With the budget spent, a customer's lookup is still answered (a free in-window reply)."""
    queue_paid(boxes, runtime, clock, 10304, 10305, 10306)
    drain(runtime)
    assert len(budget_alerts(engine)) == 1

    boxes.whatsapp.post_inbound_text(india_phone(10304), "where is order 10304?")
    wait_for(lambda: any(m.type == "text" for m in boxes.whatsapp.sent_messages()))

    [reply] = [m for m in boxes.whatsapp.sent_messages() if m.type == "text"]
    assert "10304" in (reply.text or "")
    assert [row["status"] for row in message_rows(engine)].count("deferred") == 1


def test_a_new_month_resumes_the_held_sends(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """The cap is per calendar month (UTC): on 1 July the row held on 20 June goes out, once."""
    queue_paid(boxes, runtime, clock, 10307, 10308, 10309)
    drain(runtime)
    assert len(boxes.whatsapp.sent_messages()) == 2

    clock.advance(days=11)  # 2026-07-01 12:00 UTC
    assert drain(runtime).sent == 1

    assert sorted(m.body_params[1] for m in boxes.whatsapp.sent_messages()) == [
        "10307",
        "10308",
        "10309",
    ]


def test_no_budget_means_no_cap(boxes: Sandboxes, engine: Engine, clock: Clock) -> None:
    """A store without monthly_budget sends everything."""
    plain = make_runtime(boxes, engine, clock)
    try:
        queue_paid(boxes, plain, clock, 10310, 10311, 10312)
        assert drain(plain).sent == 3
    finally:
        plain.close()


def test_a_plain_budget_is_in_the_rate_cards_currency(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """monthly_budget = 5000 for an Indian store caps INR (the rate card's currency for IN)."""
    built = make_runtime(boxes, engine, clock, monthly_budget={RATE_CARD_CURRENCY: Decimal(5000)})
    try:
        assert built.dispatcher.guard is not None
        assert built.dispatcher.guard.budgets == {"sandbox-store": {"INR": Decimal(5000)}}
    finally:
        built.close()


def test_over_budget_is_per_currency() -> None:
    """Spend in one currency never counts against another's cap; reaching the cap is enough."""
    caps = {"INR": Decimal(100), "USD": Decimal(5)}
    assert over_budget(caps, {"INR": Decimal("99.99"), "EUR": Decimal(500)}) is None
    assert over_budget(caps, {"USD": Decimal(5)}) == "monthly budget of 5 USD reached (5 USD spent)"


def _store_toml(budget: str) -> str:
    return f"""
[[stores]]
name = "main"
site_id = "site"
api_key = "key"
{budget}

[whatsapp]
phone_number_id = "1"
waba_id = "2"
access_token = "t"
app_secret = "s"
verify_token = "v"
"""


def _parse(text: str) -> Settings:
    return parse_settings(tomllib.loads(text), environ={}, base_dir=Path("."))


def test_config_reads_both_budget_forms() -> None:
    """A number means the rate card's currency; a table names currencies; amounts become Decimal."""
    plain = _parse(_store_toml("monthly_budget = 5000"))
    table = _parse(_store_toml('monthly_budget = { INR = "5000.50", USD = 60 }'))
    assert plain.stores[0].monthly_budget == {RATE_CARD_CURRENCY: Decimal(5000)}
    assert table.stores[0].monthly_budget == {
        "INR": Decimal("5000.50"),
        "USD": Decimal(60),
    }


def test_config_lists_every_bad_budget() -> None:
    """A bad currency code and a non-positive amount are both reported, with their paths."""
    with pytest.raises(ConfigError) as caught:
        _parse(_store_toml('monthly_budget = { rupees = 10, USD = -1, EUR = "lots" }'))
    text = "\n".join(caught.value.problems)
    assert "stores[0].monthly_budget.rupees: 'rupees' is not a currency code" in text
    assert "stores[0].monthly_budget.USD: must be a positive amount" in text
    assert "stores[0].monthly_budget.EUR: must be a positive amount" in text
