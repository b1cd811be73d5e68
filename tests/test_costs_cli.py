"""`notifier costs` against a real database: every flag of the issue works, and the JSON totals equal
the sums of the ledger rows (read straight from the table) for every grouping and filter.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from notifier.cli import main
from notifier.costs import GROUP_BYS
from notifier.domain import Price
from notifier.store import ledger, outbox
from notifier.store.tables import ledger as ledger_table
from tests.conftest import POSTGRES_URL

# (store, day, template, category, market, currency, estimated, confirmed, status, free_reason)
LEDGER = [
    ("india", 1, "order_shipped", "utility", "IN", "INR", "0.115", "0.115", "delivered", None),
    ("india", 1, "order_shipped", "utility", "IN", "INR", "0.115", "0", "read", "service_window"),
    ("india", 2, "order_paid", "utility", "IN", "INR", "0.115", None, "sent", None),
    ("india", 2, "order_paid", "marketing", "IN", "INR", "0.8631", "0.8631", "delivered", None),
    ("india", 3, "order_paid", "utility", "IN", "INR", "0", None, "failed", "failed"),
    ("india", 3, "order_paid", "utility", "IN", "INR", "0", None, "skipped", "opted_out"),
    ("europe", 1, "order_shipped", "utility", "DE", "EUR", "0.0456", "0.0456", "delivered", None),
    ("europe", 2, "order_paid", "utility", "DE", "EUR", "0.0456", None, "accepted", None),
    ("europe", 3, "order_paid", "utility", "ZZ", None, None, None, "sent", None),
    ("europe", 3, "order_cancelled", "utility", "DE", "EUR", "0.0456", "0.05", "read", None),
]


def cli_url(engine: Engine) -> str:
    """The URL the command can open: the test's PostgreSQL schema travels as a libpq option."""
    if engine.dialect.name != "postgresql":
        return str(engine.url)
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def fill(engine: Engine) -> None:
    now = datetime(2026, 6, 20, tzinfo=UTC)
    with engine.begin() as conn:
        for index, row in enumerate(LEDGER):
            store, day, template, category, market, currency, est, conf, status, free = row
            message_id = outbox.insert_message_row(
                conn,
                store=store,
                dedupe_key=f"costs-{index}",
                kind="template",
                template=template,
                payload={},
                status=status,
                created_at=now,
                updated_at=now,
            )
            amount = None if est is None else Decimal(est)
            price = Price(amount, currency, amount, category, market, free)
            ledger.record_estimate(
                conn,
                message_id=message_id,
                store=store,
                order_id=None,
                order_number=str(10500 + index),
                template=template,
                price=price,
                status=status,
                recipient_masked="+91•••••0001",
                priced_on=date(2026, 6, day),
                now=now,
            )
            if conf is not None:
                confirmed = Price(Decimal(conf), currency, None, category, market, free)
                ledger.confirm(conn, message_id, confirmed, now=now, pricing_raw=None)


def table_sums(
    engine: Engine, *, store: str | None = None, days: Iterable[int] = (1, 2, 3)
) -> dict[str | None, dict[str, Any]]:
    """Per currency: messages, estimated, confirmed and best sums, read straight from the table."""
    wanted = {date(2026, 6, d) for d in days}
    sums: dict[str | None, dict[str, Any]] = {}
    with engine.connect() as conn:
        for r in conn.execute(select(ledger_table)):
            if r.priced_on not in wanted or (store is not None and r.store != store):
                continue
            total = sums.setdefault(
                r.currency,
                {
                    "messages": 0,
                    "estimated": Decimal(0),
                    "confirmed": Decimal(0),
                    "best": Decimal(0),
                },
            )
            total["messages"] += 1
            total["estimated"] += r.estimated_cost or 0
            total["confirmed"] += r.confirmed_cost or 0
            best = r.confirmed_cost if r.confirmed_cost is not None else r.estimated_cost
            total["best"] += best or 0
    return sums


def costs_json(capsys: pytest.CaptureFixture[str], url: str, *flags: str) -> dict[str, Any]:
    assert main(["costs", "--database-url", url, "--format", "json", *flags], environ={}) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def assert_totals_match(
    document: dict[str, Any], expected: dict[str | None, dict[str, Any]]
) -> None:
    totals = {t["currency"]: t for t in document["totals"]}
    assert set(totals) == set(expected)
    for currency, want in expected.items():
        got = totals[currency]
        assert got["messages"] == want["messages"], currency
        for amount in ("estimated", "confirmed", "best"):
            assert Decimal(got[amount]) == want[amount], (currency, amount)
            in_groups = sum(
                (Decimal(g[amount]) for g in document["groups"] if g["currency"] == currency),
                Decimal(0),
            )
            assert in_groups == want[amount], (document["group_by"], currency, amount)


def test_json_totals_equal_the_ledger_sums_for_every_grouping(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """For day, store, template, category, market and status: totals and groups sum to the table."""
    fill(engine)
    url = cli_url(engine)
    expected = table_sums(engine)
    assert expected["INR"]["best"] == Decimal("1.0931")  # the fixture is what we think it is

    for group_by in GROUP_BYS:
        document = costs_json(capsys, url, "--group-by", group_by)
        assert document["group_by"] == group_by
        assert_totals_match(document, expected)


def test_since_until_and_store_filter_the_rows_summed(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """--since/--until are inclusive days and --store one store; totals follow the filter."""
    fill(engine)
    url = cli_url(engine)

    window = costs_json(capsys, url, "--since", "2026-06-02", "--until", "2026-06-02")
    assert_totals_match(window, table_sums(engine, days=[2]))
    europe = costs_json(capsys, url, "--store", "europe", "--group-by", "market")
    assert_totals_match(europe, table_sums(engine, store="europe"))
    assert {g["key"] for g in europe["groups"]} == {"DE", "ZZ"}


def test_json_counts_free_reasons_unknowns_and_top_failures(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Free reasons, unknown costs (never 0), failed/skipped, and the top failure reasons."""
    fill(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE messages SET error_code = 131026, error_title = 'Message undeliverable'"
                " WHERE status = 'failed'"
            )
        )
    counts = costs_json(capsys, cli_url(engine), "--group-by", "status")["counts"]

    assert counts["by_free_reason"] == {"failed": 1, "opted_out": 1, "service_window": 1}
    assert counts["unknown_cost"] == 1
    assert (counts["failed"], counts["skipped"]) == (1, 1)
    assert counts["top_failures"] == [{"reason": "131026 Message undeliverable", "messages": 1}]


def test_table_and_csv_render_every_grouping(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format table and csv work for every --group-by; CSV parses back; --messages lists rows."""
    fill(engine)
    url = cli_url(engine)
    for group_by in GROUP_BYS:
        assert main(["costs", "--database-url", url, "--group-by", group_by], environ={}) == 0
        table = capsys.readouterr().out
        assert "INR" in table, group_by
        assert "EUR" in table, group_by
        assert (
            main(
                ["costs", "--database-url", url, "--group-by", group_by, "--format", "csv"],
                environ={},
            )
            == 0
        )
        rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
        assert len(rows) > 2, group_by
    assert main(["costs", "--database-url", url, "--messages"], environ={}) == 0
    lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(lines) == len(LEDGER)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--messages", "--format", "json"], "--messages writes CSV"),
        (["--since", "2026-06-05", "--until", "2026-06-01"], "is after --until"),
    ],
)
def test_contradictory_flags_are_refused_before_reading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    """Flags that cannot all hold get one clear line and exit 2 (they printed CSV, or an empty
    report, as if nothing were wrong); the database is not even opened, so none is created."""
    url = f"sqlite:///{tmp_path / 'never.db'}"
    assert main(["costs", "--database-url", url, *flags], environ={}) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "never.db").exists()


def test_a_malformed_day_names_the_flag_and_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    """--since 2026-13-01 says which flag and what shape a day has, not Python's parser jargon."""
    with pytest.raises(SystemExit) as exited:
        main(["costs", "--since", "2026-13-01"], environ={})
    assert exited.value.code == 2
    assert "--since: expected a day as YYYY-MM-DD, got '2026-13-01'" in capsys.readouterr().err
