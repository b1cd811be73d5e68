"""`notifier poll-once` (daemon.prepare + daemon.poll_once) end to end against the sandboxes.

Every call builds a fresh runtime on the same database, exactly like a cron job would, so these
tests also pin that a restart neither re-baselines nor re-sends.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from notifier.config import Settings
from notifier.daemon import StartupError, poll_once, prepare
from notifier.domain import Field, Rule
from notifier.rules import DEFAULT_RULES
from notifier.sandbox.harness import Sandboxes, sandbox_settings, start_sandboxes
from notifier.store import orders
from notifier.store.tables import poll_runs
from tests.conftest import Clock
from tests.test_sync import message_rows, order_guid, wix_order

STORE = "sandbox-store"


@pytest.fixture
def boxes(clock: Clock) -> Iterator[Sandboxes]:
    with start_sandboxes(clock) as started:
        started.wix.add_orders(
            wix_order(number, created=clock() - timedelta(days=5, minutes=number - 10120))
            for number in range(10120, 10130)
        )
        yield started


@pytest.fixture
def settings(boxes: Sandboxes, engine: Engine) -> Settings:
    return sandbox_settings(boxes, str(engine.url))


def run(settings: Settings, engine: Engine, clock: Clock) -> int:
    """One `poll-once` pass: a new runtime on the shared database, then closed."""
    return poll_once(settings, clock=clock, engine=engine, rng=random.Random(3))


def runs(engine: Engine) -> list[tuple[bool, bool]]:
    """(ok, baseline) of every recorded poll run, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(poll_runs).order_by(poll_runs.c.id))
        return [(bool(r.ok), bool(r.baseline)) for r in rows]


def test_issue_done_line_poll_once_sends_each_change_exactly_once(
    boxes: Sandboxes, settings: Settings, engine: Engine, clock: Clock
) -> None:
    """Two quiet passes send 0; one PAID change sends 1 with the right template; repeating sends 0."""
    assert run(settings, engine, clock) == 0
    clock.advance(seconds=30)
    assert run(settings, engine, clock) == 0
    assert boxes.whatsapp.sent_messages() == []

    clock.advance(seconds=30)
    boxes.wix.set_payment(order_guid(10126), "PAID")
    assert run(settings, engine, clock) == 0
    [sent] = boxes.whatsapp.sent_messages()
    assert (sent.template, sent.language) == ("order_payment_received", "en")
    assert sent.body_params == ("Priya", "10126", "Rs. 1,299.00")
    assert sent.to == "+919800010126"
    assert sent.callback_data == str(message_rows(engine)[0]["id"])

    for _ in range(2):
        clock.advance(seconds=30)
        assert run(settings, engine, clock) == 0
    assert len(boxes.whatsapp.sent_messages()) == 1
    assert runs(engine) == [(True, True)] + [(True, False)] * 4


def test_issue_wix_429_on_search_fails_the_run_keeps_the_mark_and_next_run_catches_up(
    boxes: Sandboxes, settings: Settings, engine: Engine, clock: Clock
) -> None:
    """A 429 on search: exit 1, run recorded failed, watermark unchanged; the next pass sends the change."""
    run(settings, engine, clock)
    with engine.connect() as conn:
        mark = orders.get_store_state(conn, STORE)
    clock.advance(seconds=30)
    boxes.wix.set_payment(order_guid(10123), "PAID")
    boxes.wix.fail_next(429, path_contains="search", retry_after=60)

    assert run(settings, engine, clock) == 1

    with engine.connect() as conn:
        after_failure = orders.get_store_state(conn, STORE)
    assert mark is not None
    assert after_failure is not None
    assert after_failure.watermark == mark.watermark
    assert "rate limit" in (after_failure.last_poll_error or "")
    assert boxes.whatsapp.sent_messages() == []
    assert runs(engine)[-1] == (False, False)

    clock.advance(seconds=60)
    assert run(settings, engine, clock) == 0
    assert [m.body_params[1] for m in boxes.whatsapp.sent_messages()] == ["10123"]
    with engine.connect() as conn:
        caught_up = orders.get_store_state(conn, STORE)
    assert caught_up is not None
    assert caught_up.watermark is not None
    assert mark.watermark is not None
    assert caught_up.watermark > mark.watermark
    assert caught_up.last_poll_error is None


def test_br10_startup_refuses_a_rule_language_missing_from_the_account(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """Rule language en_US while the account only has order_payment_received/en: StartupError names it."""
    en_us = Rule(
        Field.PAYMENT,
        "PAID",
        "order_payment_received",
        languages=("en_US",),
        params=("customer_name", "order_number", "total"),
    )
    rules = (en_us, *(r for r in DEFAULT_RULES if r.template != "order_payment_received"))
    settings = sandbox_settings(boxes, str(engine.url), rules=rules)

    with pytest.raises(StartupError) as refused:
        prepare(settings, clock=clock, engine=engine)

    assert "'order_payment_received' in language 'en_US'" in str(refused.value)
    with pytest.raises(StartupError):
        run(settings, engine, clock)
    assert boxes.wix.request_count == 0  # refused before polling anything
    assert boxes.whatsapp.sent_messages() == []
