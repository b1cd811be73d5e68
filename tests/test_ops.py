"""The ops page over loopback: token guard, filters, paging, totals, masked phones, CSV export.

Its data comes from the real pipeline (``run_demo_pipeline``): sandbox Wix and WhatsApp, the
composition root, polls, dispatch and status webhooks over eight UTC days, three currencies.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from starlette.applications import Starlette

from notifier import phones
from notifier.bootstrap import Runtime, build
from notifier.config import Secret
from notifier.costs import money
from notifier.domain import Tracking
from notifier.metrics import metrics_route
from notifier.ops import (
    PAGE_SIZE,
    credentials_match,
    ops_routes,
    parse_request,
    render_page,
    rows_to_csv,
    summarize,
)
from notifier.ops_chart import cost_chart, nice_ceiling
from notifier.sandbox.harness import Sandboxes, sandbox_settings, start_sandboxes
from notifier.sandbox.wix_seed import generate_orders, seed_1023
from notifier.serving import RunningServer, serve_in_thread
from notifier.store import inbox, ledger, outbox
from notifier.store.engine import make_engine
from notifier.store.migrate import upgrade
from notifier.store.reports import FilterChoices, LogEntry
from notifier.store.tables import messages
from notifier.web import create_app
from notifier.wix_parse import parse_order
from tests.conftest import BACKENDS, Clock, drop_schema, new_database_url

TOKEN = "ops-token-0123456789abcdef"
STORE = "demo-india"
OWNER_WA_ID = "919820000001"  # the phone of the seed guide's order #1023
RATE_CARD = """
[[rate]]
market = "DE"
category = "utility"
currency = "EUR"
amount = "0.0456"
effective_from = 2025-07-01

[[rate]]
market = "AE"
category = "utility"
currency = "USD"
amount = "0.0157"
effective_from = 2025-07-01
"""
TRACKING = Tracking("DL123456789IN", "Delhivery", "https://track.example.com/DL123456789IN")

# -- the demo pipeline (shared with test_metrics.py and test_ops_browser.py) ------------------


@dataclass
class DemoRun:
    """A runtime whose database the real pipeline filled, and the servers around it."""

    runtime: Runtime
    boxes: Sandboxes
    webhooks: RunningServer
    clock: Clock

    def close(self) -> None:
        self.webhooks.stop()
        self.runtime.close()


def _next_change(wix: Any, order_id: str) -> None:
    """Move an order one step along its life, always into a state some default rule watches."""
    order = parse_order(wix.order(order_id))
    if order.payment_status in ("NOT_PAID", "DECLINED"):
        wix.set_payment(order_id, "PAID")
    elif order.payment_status == "PENDING":
        wix.set_payment(order_id, "DECLINED")
    elif order.fulfillment_status != "FULFILLED":
        wix.set_fulfillment(order_id, "FULFILLED", TRACKING)
    else:
        wix.set_payment(order_id, "FULLY_REFUNDED")


def _reachable_orders(boxes: Sandboxes) -> list[tuple[str, str]]:
    """(order id, wa_id) of approved orders with distinct phones, excluding #1023."""
    picked: list[tuple[str, str]] = []
    seen: set[str] = {OWNER_WA_ID}
    for order_id in sorted(boxes.wix.order_ids()):
        order = parse_order(boxes.wix.order(order_id))
        e164 = phones.recipient_for(order, "IN").e164
        if order.status == "APPROVED" and e164 and e164[1:] not in seen:
            seen.add(e164[1:])
            picked.append((order_id, e164[1:]))
    return picked


def settle(run: DemoRun, timeout: float = 15.0) -> None:
    """Wait until every status webhook was posted and the web worker processed every receipt."""
    assert run.boxes.whatsapp.wait_for_webhooks(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with run.runtime.engine.connect() as conn:
            if not inbox.unprocessed_receipts(conn, limit=1):
                return
        time.sleep(0.05)
    raise AssertionError("the webhook worker did not catch up")


def drain(runtime: Runtime) -> None:
    """Dispatch until nothing due is left."""
    while True:
        step = runtime.dispatch()
        if step.sent + step.failed + step.skipped + step.retried == 0:
            return


def run_demo_pipeline(
    boxes: Sandboxes, engine: Engine, clock: Clock, tmp_path: Path, *, token: str | None = TOKEN
) -> DemoRun:
    """Baseline 61 orders, then a week of changes, two failures, a question and its reply."""
    boxes.wix.add_orders(
        [*generate_orders(random.Random(1023), now=clock() - timedelta(days=1), count=60)]
    )
    boxes.wix.add_orders([seed_1023()])
    card = tmp_path / "rates.toml"
    card.write_text(RATE_CARD, "utf-8")
    settings = sandbox_settings(boxes, str(engine.url), store_name=STORE, rate_card_path=card)
    settings = replace(
        settings, web=replace(settings.web, ops_token=Secret(token) if token else None)
    )
    runtime = build(settings, clock=clock, engine=engine, rng=random.Random(7))
    runtime.refresh_templates()
    webhooks = serve_in_thread(create_app(runtime))
    boxes.whatsapp.webhook_url = webhooks.url + "/webhooks/whatsapp"
    reachable = _reachable_orders(boxes)
    undeliverable, rejected = reachable[5][1], reachable[12][1]
    run = DemoRun(runtime, boxes, webhooks, clock)
    runtime.sync_all()  # the baseline: nothing is sent
    boxes.whatsapp.mark_undeliverable(undeliverable)  # fails by status webhook (131026)
    boxes.whatsapp.fail_next(131049, to="+" + rejected)  # refused at send time
    cuts = (0, 4, 7, 12, 14, 19, 23, len(reachable))
    for day in range(len(cuts) - 1):
        clock.advance(days=2 if day == 4 else 1, minutes=day * 7)  # one quiet day, no sends
        if day == len(cuts) - 2:  # Priya asks about #1023: a free reply, then a free update
            boxes.whatsapp.post_inbound_text(OWNER_WA_ID, "Where is my order #1023?", name="Priya")
            settle(run)
            boxes.wix.set_fulfillment(boxes.wix.order_id_by_number("1023"), "FULFILLED", TRACKING)
        batch = reachable[cuts[day] : cuts[day + 1]]
        for order_id, _ in batch:
            _next_change(boxes.wix, order_id)
        runtime.sync_all()
        drain(runtime)
        clock.advance(seconds=30)  # past the spacing between two sends to one customer
        drain(runtime)
        settle(run)
    return run


@contextlib.contextmanager
def demo_database(backend: str, folder: Path) -> Iterator[DemoRun]:
    """A fresh database on ``backend`` filled by ``run_demo_pipeline``; everything torn down."""
    url, extra = new_database_url(backend, folder)
    schema = extra.pop("schema", None)
    engine = make_engine(url, **extra)
    upgrade(engine)
    clock = Clock(datetime(2026, 6, 20, 12, 0, tzinfo=UTC))
    try:
        with start_sandboxes(clock) as boxes:
            run = run_demo_pipeline(boxes, engine, clock, folder)
            try:
                yield run
            finally:
                run.close()
    finally:
        engine.dispose()
        if schema:
            drop_schema(str(schema))


def ops_app(runtime: Runtime) -> Starlette:
    """The ops and metrics routes alone, as the coordinator mounts them in the daemon's app."""
    return Starlette(routes=[*ops_routes(runtime), metrics_route(runtime)])


# The pipeline takes seconds; its tests only read, so one run per backend serves the module.
@pytest.fixture(scope="module", params=BACKENDS)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoRun]:
    with demo_database(str(request.param), tmp_path_factory.mktemp("demo")) as run:
        yield run


@pytest.fixture(scope="module")
def ops(demo: DemoRun) -> Iterator[httpx.Client]:
    with (
        serve_in_thread(ops_app(demo.runtime)) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
    ):
        yield client


def _recipients(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(messages.c.recipient).where(messages.c.recipient.is_not(None)))
        return [str(r) for (r,) in rows]


def _log_ids(html: str) -> list[str]:
    return [part.split("</td>")[0] for part in html.split('<td class="mid">')[1:]]


# -- auth ---------------------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_accept_bearer_and_basic_with_any_user() -> None:
    """The token works as a bearer token and as the basic-auth password whatever the user name."""
    assert credentials_match(f"Bearer {TOKEN}", TOKEN)
    assert credentials_match(f"bearer   {TOKEN} ", TOKEN)
    assert credentials_match(_basic("ops", TOKEN), TOKEN)
    assert credentials_match(_basic("", TOKEN), TOKEN)
    assert not credentials_match(_basic(TOKEN, "x"), TOKEN)
    assert not credentials_match(f"Token {TOKEN}", TOKEN)
    assert not credentials_match("Basic !!!not-base64", TOKEN)
    assert not credentials_match(f"Bearer {TOKEN}", "")
    assert not credentials_match(None, TOKEN)


@given(st.text(max_size=60))
def test_credentials_never_match_a_different_secret(guess: str) -> None:
    """Any header built from a guess other than the token is refused, bearer or basic."""
    if guess.strip() == TOKEN:
        return
    assert not credentials_match(f"Bearer {guess}", TOKEN)
    assert not credentials_match(_basic("ops", guess), TOKEN)
    assert not credentials_match(guess, TOKEN)


def test_ops_without_a_configured_token_is_404(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """No ops_token in the config: /ops and its CSV are 404 even to a caller sending a token."""
    settings = sandbox_settings(boxes, str(engine.url))
    runtime = build(settings, clock=clock, engine=engine)
    try:
        with serve_in_thread(ops_app(runtime)) as server:
            for path in ("/ops", "/ops/messages.csv"):
                for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
                    assert httpx.get(server.url + path, headers=headers).status_code == 404
    finally:
        runtime.close()


def test_ops_refuses_missing_or_wrong_credentials_and_prompts_for_basic(
    ops: httpx.Client,
) -> None:
    """401 with a Basic challenge without or with a wrong token; 200 with bearer or basic."""
    for path in ("/ops", "/ops/messages.csv"):
        for auth in (None, "Bearer wrong-token-0123456789", _basic("ops", "nope")):
            headers = {"Authorization": auth} if auth else {}
            answer = httpx.get(str(ops.base_url) + path, headers=headers)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"].startswith('Basic realm="notifier ops"')
            assert "Not Found" not in answer.text
        assert ops.get(path).status_code == 200
        basic = httpx.get(str(ops.base_url) + path, headers={"Authorization": _basic("x", TOKEN)})
        assert basic.status_code == 200


# -- the page -----------------------------------------------------------------------------------


def test_page_shows_chart_per_currency_log_and_never_a_raw_phone(
    ops: httpx.Client, demo: DemoRun
) -> None:
    """One SVG per currency, every message in the log, masked phones only (page and CSV)."""
    page = ops.get("/ops")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "no-store" in page.headers["cache-control"]
    html = page.text
    for currency in ("INR", "EUR", "USD"):
        assert f'data-currency="{currency}"' in html
    assert html.count("<svg") == 3
    with demo.runtime.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(messages)).scalar_one()
        masked = {row.recipient_masked for row in ledger.rows(conn) if row.recipient_masked}
    assert 20 < total <= PAGE_SIZE
    assert html.count('<tr class="msg"') == total
    assert all(phone in html for phone in masked)
    export = ops.get("/ops/messages.csv").text
    for recipient in _recipients(demo.runtime.engine):
        digits = phones.digits(recipient)
        assert digits not in html
        assert digits not in export


def test_filter_by_status_shows_only_failures_with_their_reasons(ops: httpx.Client) -> None:
    """status=failed lists exactly the two failed sends, each with its Meta code and title."""
    html = ops.get("/ops", params={"status": "failed"}).text
    assert html.count('<tr class="msg"') == 2
    assert "131026" in html
    assert "131049" in html
    assert html.count('class="badge s-failed"') == 2
    assert '<option value="failed" selected>' in html


def test_filters_by_store_template_and_dates(ops: httpx.Client, demo: DemoRun) -> None:
    """Each filter narrows the log; a day outside the data empties it; until bounds it."""
    everything = ops.get("/ops").text.count('<tr class="msg"')
    shipped = ops.get("/ops", params={"template": "order_shipped"}).text
    assert 0 < shipped.count('<tr class="msg"') < everything
    assert "order_payment_received" not in shipped.split('id="log"')[1]
    assert ops.get("/ops", params={"store": "elsewhere"}).text.count('<tr class="msg"') == 0
    today = demo.clock().date()
    only_today = ops.get("/ops", params={"since": today.isoformat(), "until": ""}).text
    assert 0 < only_today.count('<tr class="msg"') < everything
    before = ops.get(
        "/ops", params={"since": "", "until": (today - timedelta(days=10)).isoformat()}
    )
    assert "No messages match these filters." in before.text


def test_totals_equal_the_ledger_per_currency(ops: httpx.Client, demo: DemoRun) -> None:
    """The totals table shows, per currency, the ledger's own sums and the free reasons."""
    with demo.runtime.engine.connect() as conn:
        rows = ledger.rows(conn)
    summaries = {s.currency: s for s in summarize(rows)}
    inr = [r for r in rows if r.currency == "INR"]
    assert summaries["INR"].messages == len(inr)
    assert summaries["INR"].estimated == sum(
        (r.estimated_cost for r in inr if r.estimated_cost is not None), Decimal(0)
    )
    assert summaries["INR"].free_reasons  # the in-window update and the reply are free
    assert summaries[None].unknown > 0  # Argentina and Brazil have no rate in the card
    html = ops.get("/ops").text
    totals = html.split("<h2>Totals</h2>")[1].split("</section>")[0]
    for currency in ("INR", "EUR", "USD"):
        assert money(summaries[currency].estimated, currency) in totals
        assert money(summaries[currency].confirmed, currency) in totals


def test_csv_export_keeps_the_filters(ops: httpx.Client) -> None:
    """The page's export link carries its filters; the CSV holds exactly the filtered rows."""
    html = ops.get("/ops", params={"status": "failed", "since": "", "until": ""}).text
    link = html.split('href="/ops/messages.csv?')[1].split('"')[0].replace("&amp;", "&")
    assert "status=failed" in link
    answer = ops.get("/ops/messages.csv?" + link)
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(lines) == 2
    assert {line["status"] for line in lines} == {"failed"}
    assert all(line["recipient_masked"].startswith("'+") for line in lines)


def test_paging_shows_100_newest_first_then_the_rest(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """230 messages: page 1 holds the 100 newest, page 3 the oldest 30; links keep the filters."""
    with engine.begin() as conn:
        for n in range(230):
            outbox.insert_message_row(
                conn, store=STORE, dedupe_key=f"k{n}", kind="text", payload={}, status="queued",
                attempts=0, created_at=clock.advance(seconds=1), updated_at=clock(),
            )  # fmt: skip
    settings = sandbox_settings(boxes, str(engine.url))
    settings = replace(settings, web=replace(settings.web, ops_token=Secret(TOKEN)))
    runtime = build(settings, clock=clock, engine=engine)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with serve_in_thread(ops_app(runtime)) as server:
            first = httpx.get(server.url + "/ops", params={"status": "queued"}, headers=auth).text
            third = httpx.get(
                server.url + "/ops", params={"status": "queued", "page": "3"}, headers=auth
            ).text
    finally:
        runtime.close()
    ids = [int(i) for i in _log_ids(first)]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == PAGE_SIZE
    assert len(_log_ids(third)) == 30
    assert max(int(i) for i in _log_ids(third)) < min(ids)
    assert "Page 1 of 3 · 230 message(s)" in first
    older = first.split("Older →")[0].rsplit("href=", 1)[1]
    assert "status=queued" in older
    assert "page=2" in older


def test_bad_query_parameters_are_400(ops: httpx.Client) -> None:
    """A malformed date, or a page that is negative or absurdly far, is refused with a message
    naming the parameter."""
    assert ops.get("/ops", params={"since": "yesterday"}).status_code == 400
    answer = ops.get("/ops/messages.csv", params={"page": "-1"})
    assert answer.status_code == 400
    assert "page" in answer.text
    huge = ops.get("/ops", params={"page": "9" * 23})  # overflowed SQLite's INTEGER: was a 500
    assert huge.status_code == 400
    assert "page" in huge.text


def test_default_period_is_the_last_30_days_and_empty_dates_mean_unbounded() -> None:
    """No date params: the 30 days up to today; present but empty: no bound at all."""
    today = date(2026, 6, 20)
    default = parse_request({}, today=today).where
    assert (default.since, default.until) == (date(2026, 5, 22), today)
    open_ended = parse_request({"since": "", "until": ""}, today=today).where
    assert (open_ended.since, open_ended.until) == (None, None)


# -- rendering (pure) ---------------------------------------------------------------------------


def _entry(text: str) -> LogEntry:
    return LogEntry(
        1, datetime(2026, 6, 20, tzinfo=UTC), text, text, "template", text, text, "failed", 1,
        131026, text, text, "utility", "INR", Decimal("0.115"), None, text,
    )  # fmt: skip


@given(
    st.tuples(st.text(max_size=20), st.sampled_from("<>&\"'"), st.text(max_size=20)).map("".join)
)
def test_every_database_value_is_escaped_in_the_page(raw: str) -> None:
    """Store, order, template, error title, phone and reason text never reach the HTML raw."""
    text = f"«{raw}»"  # markers, so the check cannot match the page's own markup
    request = parse_request({"store": text, "template": text}, today=date(2026, 6, 20))
    html = render_page(
        request,
        choices=FilterChoices((text,), ("failed",), (text,)),
        ledger_rows=[],
        entries=[_entry(text)],
        total=1,
    )
    assert escape(text) in html
    assert text not in html


@given(st.text(max_size=30))
def test_csv_cells_never_start_a_spreadsheet_formula(text: str) -> None:
    """A cell starting with = + - @ (or tab/CR) is quoted with ' unless it is a plain number."""
    rows = list(csv.reader(io.StringIO(rows_to_csv([_entry(text)]), newline="")))
    assert rows[0][0] == "message_id"
    for cell in rows[1]:
        if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
            Decimal(cell)  # only a number may start like a formula


@given(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**9), places=4))
def test_chart_scale_is_a_round_number_at_most_twice_the_peak(amount: Decimal) -> None:
    """The y axis top is 1, 2, 2.5 or 5 × 10ⁿ, at or above the peak and at most twice it."""
    top = nice_ceiling(amount)
    assert amount <= top <= 2 * amount
    assert top.normalize().as_tuple().digits[:2] in ((1,), (2,), (2, 5), (5,))


def test_chart_draws_one_stacked_bar_segment_per_day_and_category(demo: DemoRun) -> None:
    """Heights are proportional to each day's per-category cost; free rows draw nothing."""
    with demo.runtime.engine.connect() as conn:
        inr = [r for r in ledger.rows(conn) if r.currency == "INR"]
    svg = cost_chart(inr, "INR", since=None, until=None)
    charged = {(r.priced_on, r.category) for r in inr if r.cost}
    assert svg.count('class="bar"') == len(charged)
    assert svg.count('class="legend-item"') == len({r.category for r in inr})
    assert "Daily cost in INR" in svg
