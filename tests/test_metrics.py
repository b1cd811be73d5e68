"""``/metrics`` over loopback: valid Prometheus text whose values equal the database's own counts."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from notifier.bootstrap import Runtime, build
from notifier.config import Secret
from notifier.costs import plain_amount
from notifier.metrics import CONTENT_TYPE, Family, render
from notifier.sandbox.harness import Sandboxes, sandbox_settings, start_sandboxes
from notifier.serving import serve_in_thread
from notifier.store import ledger, orders
from notifier.store.tables import messages, poll_runs
from tests.conftest import BACKENDS, Clock
from tests.test_ops import STORE, TOKEN, DemoRun, demo_database, ops_app

Sample = tuple[str, dict[str, str], str]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_exposition(text: str) -> list[Sample]:
    """Parse Prometheus text format strictly: HELP and TYPE precede each family's samples."""
    assert text.endswith("\n")
    declared: dict[str, str] = {}
    samples: list[Sample] = []
    for line in text.split("\n")[:-1]:  # only \n ends a line, not \r or U+2028
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge")
            assert name not in declared
            declared[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, label_text, value = match.groups()
        assert name in declared, f"{name} has no TYPE line before it"
        samples.append((name, _parse_labels(label_text or ""), value))
        float(value)  # Prometheus parses every value as a float (+Inf included)
    return samples


def _parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match, f"bad labels: {text!r}"
        value = re.sub(r"\\.", lambda m: _UNESCAPE[m.group(0)], match.group(2))
        labels[match.group(1)] = value
        position = match.end()
    return labels


def values(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], str]:
    return {tuple(sorted(labels.items())): value for n, labels, value in samples if n == name}


@pytest.fixture(scope="module", params=BACKENDS)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoRun]:
    with demo_database(str(request.param), tmp_path_factory.mktemp("demo")) as run:
        yield run


@pytest.fixture(scope="module")
def scraped(demo: DemoRun) -> Iterator[httpx.Response]:
    with serve_in_thread(ops_app(demo.runtime)) as server:
        yield httpx.get(server.url + "/metrics")  # no credentials: /metrics is open


def test_metrics_are_open_and_in_prometheus_text_format(scraped: httpx.Response) -> None:
    """200 without a token (the ops token is set), version 0.0.4 content type, parseable text."""
    assert scraped.status_code == 200
    assert scraped.headers["content-type"] == CONTENT_TYPE
    names = {name for name, _, _ in parse_exposition(scraped.text)}
    assert names >= {
        "notifier_polls_total",
        "notifier_orders_diffed_total",
        "notifier_messages",
        "notifier_cost_estimated",
        "notifier_cost_confirmed",
        "notifier_outbox_depth",
        "notifier_seconds_since_last_successful_poll",
        "notifier_api_errors_total",
    }


def test_poll_and_message_metrics_equal_the_database(
    scraped: httpx.Response, demo: DemoRun
) -> None:
    """Polls, orders diffed and messages per (status, template) are the tables' own counts."""
    samples = parse_exposition(scraped.text)
    with demo.runtime.engine.connect() as conn:
        runs = conn.execute(select(func.count()).select_from(poll_runs)).scalar_one()
        seen = conn.execute(select(func.sum(poll_runs.c.orders_seen))).scalar_one()
        grouped = conn.execute(
            select(messages.c.status, messages.c.template, func.count()).group_by(
                messages.c.status, messages.c.template
            )
        ).all()
    assert values(samples, "notifier_polls_total") == {
        (("ok", "true"), ("store", STORE)): str(runs)
    }
    assert values(samples, "notifier_orders_diffed_total") == {(("store", STORE),): str(seen)}
    assert values(samples, "notifier_messages") == {
        (("status", status), ("template", template or "")): str(n)
        for status, template, n in grouped
    }
    assert values(samples, "notifier_outbox_depth") == {(): "0"}


def test_cost_metrics_are_exact_ledger_sums_per_currency(
    scraped: httpx.Response, demo: DemoRun
) -> None:
    """Estimated and confirmed cost per currency equal the Decimal sums of the ledger rows."""
    samples = parse_exposition(scraped.text)
    with demo.runtime.engine.connect() as conn:
        rows = ledger.rows(conn)
    for currency in ("INR", "EUR", "USD"):
        mine = [r for r in rows if r.currency == currency]
        estimated = sum((r.estimated_cost or Decimal(0) for r in mine), Decimal(0))
        confirmed = sum((r.confirmed_cost or Decimal(0) for r in mine), Decimal(0))
        key = (("currency", currency),)
        assert values(samples, "notifier_cost_estimated")[key] == plain_amount(estimated)
        assert values(samples, "notifier_cost_confirmed")[key] == plain_amount(confirmed)
    assert Decimal(values(samples, "notifier_cost_confirmed")[(("currency", "INR"),)]) > 0


def test_api_errors_and_poll_age(scraped: httpx.Response, demo: DemoRun) -> None:
    """Both failures appear by Meta code; poll age is the clock minus the last successful poll."""
    samples = parse_exposition(scraped.text)
    assert values(samples, "notifier_api_errors_total") == {
        (("code", "131026"),): "1",
        (("code", "131049"),): "1",
    }
    with demo.runtime.engine.connect() as conn:
        state = orders.get_store_state(conn, STORE)
    assert state is not None
    assert state.last_poll_ok_at is not None
    age = (demo.clock() - state.last_poll_ok_at).total_seconds()
    got = values(samples, "notifier_seconds_since_last_successful_poll")[(("store", STORE),)]
    assert float(got) == pytest.approx(age)


def test_a_store_never_polled_is_infinitely_stale_until_its_first_poll(
    engine: Engine, clock: Clock, tmp_path: Path
) -> None:
    """+Inf before any successful poll (so an age alert fires); then seconds by the clock."""
    with start_sandboxes(clock) as boxes:
        runtime = _runtime(boxes, engine, clock)
        try:
            with serve_in_thread(ops_app(runtime)) as server:
                before = parse_exposition(httpx.get(server.url + "/metrics").text)
                runtime.sync_all()
                clock.advance(seconds=90)
                after = parse_exposition(httpx.get(server.url + "/metrics").text)
        finally:
            runtime.close()
    name = "notifier_seconds_since_last_successful_poll"
    key = (("store", "sandbox-store"),)
    assert values(before, name)[key] == "+Inf"
    assert math.isinf(float(values(before, name)[key]))
    assert values(after, name)[key] == "90"
    assert values(before, "notifier_polls_total") == {}


def _runtime(boxes: Sandboxes, engine: Engine, clock: Clock) -> Runtime:
    settings = sandbox_settings(boxes, str(engine.url))
    settings = replace(settings, web=replace(settings.web, ops_token=Secret(TOKEN)))
    return build(settings, clock=clock, engine=engine)


_label_values = st.text(max_size=20)


@given(st.dictionaries(st.sampled_from(["store", "template", "code"]), _label_values))
def test_label_values_round_trip_through_escaping(labels: dict[str, str]) -> None:
    """Quotes, backslashes and newlines in a label value are escaped and parse back unchanged."""
    family = Family("notifier_example", "gauge", 'help with "quotes" and \\ and\nnewline')
    family.add(3, **labels)
    samples = parse_exposition(render([family]))
    assert samples == [("notifier_example", labels, "3")]
