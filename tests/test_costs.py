"""The cost report: per-currency totals, unknown never as zero, and exact table/CSV/JSON exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.costs import (
    GROUP_BYS,
    ROW_EXPORT_COLUMNS,
    CostReport,
    build_report,
    money,
    plain_amount,
    rows_to_csv,
    to_csv,
    to_json,
    to_table,
)
from notifier.store.ledger import LedgerRow

CREATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
UTILITY_INR = Decimal("0.115")


def _row(
    message_id: int = 1,
    *,
    store: str = "shop",
    template: str | None = "order_shipped",
    category: str = "utility",
    market: str | None = "IN",
    currency: str | None = "INR",
    estimated: Decimal | None = UTILITY_INR,
    confirmed: Decimal | None = None,
    free_reason: str | None = None,
    status: str = "delivered",
    priced_on: date = date(2026, 1, 5),
) -> LedgerRow:
    return LedgerRow(
        message_id=message_id,
        store=store,
        order_number="1023",
        template=template,
        category=category,
        market=market,
        recipient_masked="+91••••••0001",
        rate=estimated,
        currency=currency,
        estimated_cost=estimated,
        confirmed_cost=confirmed,
        free_reason=free_reason,
        status=status,
        priced_on=priced_on,
        created_at=CREATED,
    )


def _mixed_rows() -> list[LedgerRow]:
    return [
        _row(1, confirmed=UTILITY_INR),
        _row(2, estimated=UTILITY_INR, confirmed=Decimal(0), free_reason="service_window"),
        _row(3, market="DE", currency="EUR", estimated=Decimal("0.0456"), status="sent"),
        _row(4, market="ZZ", currency=None, estimated=None, status="failed"),
        _row(5, status="skipped", priced_on=date(2026, 1, 6)),
    ]


# --- building ----------------------------------------------------------------------------------

amounts = st.one_of(
    st.none(),
    st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False),
)


@st.composite
def ledger_rows(draw: st.DrawFn) -> list[LedgerRow]:
    count = draw(st.integers(min_value=0, max_value=25))
    return [
        _row(
            index,
            store=draw(st.sampled_from(["a", "b"])),
            template=draw(st.sampled_from([None, "order_shipped", "order_paid"])),
            category=draw(st.sampled_from(["utility", "marketing"])),
            market=draw(st.sampled_from([None, "IN", "DE"])),
            currency=draw(st.sampled_from([None, "INR", "EUR"])),
            estimated=draw(amounts),
            confirmed=draw(amounts),
            free_reason=draw(st.sampled_from([None, "service_window", "failed"])),
            status=draw(st.sampled_from(["sent", "delivered", "failed", "skipped"])),
            priced_on=draw(st.dates(min_value=date(2025, 7, 1), max_value=date(2025, 7, 4))),
        )
        for index in range(count)
    ]


def _row_sum(rows: list[LedgerRow], currency: str | None, field: str) -> Decimal:
    values = (getattr(row, field) for row in rows if row.currency == currency)
    return sum((value for value in values if value is not None), Decimal(0))


@settings(max_examples=60, deadline=None)
@given(rows=ledger_rows())
def test_totals_equal_row_sums_per_currency_for_every_group_by(rows: list[LedgerRow]) -> None:
    """For every group_by, each currency's total and its groups both equal the sum of its rows."""
    for group_by in GROUP_BYS:
        report = build_report(rows, group_by=group_by)
        assert {total.currency for total in report.totals} == {row.currency for row in rows}
        for total in report.totals:
            mine = [row for row in rows if row.currency == total.currency]
            groups = [group for group in report.groups if group.currency == total.currency]
            assert total.messages == len(mine) == sum(group.messages for group in groups)
            assert total.estimated == _row_sum(rows, total.currency, "estimated_cost")
            assert total.confirmed == _row_sum(rows, total.currency, "confirmed_cost")
            assert total.best == _row_sum(rows, total.currency, "cost")
            assert total.unknown == sum(1 for row in mine if row.cost is None)
            assert sum((group.best for group in groups), Decimal(0)) == total.best
            assert sum((group.estimated for group in groups), Decimal(0)) == total.estimated
            assert sum((group.confirmed for group in groups), Decimal(0)) == total.confirmed


@settings(max_examples=60, deadline=None)
@given(rows=ledger_rows())
def test_group_message_counts_partition_into_charged_free_unknown(rows: list[LedgerRow]) -> None:
    """Every group's messages split exactly into charged, free and unknown; keys are unique."""
    report = build_report(rows, group_by="template")
    for group in report.groups:
        assert group.messages == group.charged_messages + group.free_messages + group.unknown
    pairs = [(group.key, group.currency) for group in report.groups]
    assert len(pairs) == len(set(pairs))
    assert report.unknown_cost_count == sum(1 for row in rows if row.cost is None)


def test_two_currencies_in_one_group_key_stay_apart() -> None:
    """An INR row and an EUR row on the same day make two groups and two totals, never one sum."""
    rows = [_row(1), _row(2, currency="EUR", market="DE", estimated=Decimal("0.0456"))]
    report = build_report(rows, group_by="day")
    assert [(g.key, g.currency, g.estimated) for g in report.groups] == [
        ("2026-01-05", "EUR", Decimal("0.0456")),
        ("2026-01-05", "INR", UTILITY_INR),
    ]
    assert [(t.currency, t.best) for t in report.totals] == [
        ("EUR", Decimal("0.0456")),
        ("INR", UTILITY_INR),
    ]


def test_unknown_cost_row_counts_as_unknown_not_zero() -> None:
    """A row with no amount is counted as unknown, and shown as "unknown" rather than "0"."""
    report = build_report([_row(1, market="ZZ", currency=None, estimated=None)], group_by="market")
    (group,) = report.groups
    assert (group.unknown, group.charged_messages, group.free_messages) == (1, 0, 0)
    assert report.unknown_cost_count == 1
    assert report.totals[0].unknown == 1
    assert _total_lines(to_table(report)) == [
        ["unknown", "1", "1", "unknown", "unknown", "unknown"]
    ]


def test_free_row_is_free_and_charged_row_is_charged() -> None:
    """A confirmed free row counts as free, with its reason; a priced row without one is charged."""
    report = build_report(_mixed_rows(), group_by="store")
    inr = next(group for group in report.groups if group.currency == "INR")
    assert (inr.messages, inr.charged_messages, inr.free_messages, inr.unknown) == (3, 2, 1, 0)
    assert inr.confirmed == UTILITY_INR
    assert inr.best == UTILITY_INR * 2  # row 1 confirmed, row 2 free (0), row 5 estimated
    assert report.free_reason_counts == (("service_window", 1),)


def test_counts_by_status_and_failures() -> None:
    """Statuses are counted by name, with failed and skipped rows singled out."""
    report = build_report(_mixed_rows(), group_by="status")
    assert report.status_counts == (("delivered", 2), ("failed", 1), ("sent", 1), ("skipped", 1))
    assert (report.failed_count, report.skipped_count) == (1, 1)


def test_day_groups_use_the_iso_priced_on_date_in_order() -> None:
    """group_by=day keys are ISO dates of priced_on, oldest first."""
    report = build_report(_mixed_rows(), group_by="day")
    assert [group.key for group in report.groups if group.currency == "INR"] == [
        "2026-01-05",
        "2026-01-06",
    ]


def test_missing_key_value_gets_a_visible_label() -> None:
    """A row without a template is grouped under "(none)" instead of vanishing."""
    report = build_report([_row(1, template=None)], group_by="template")
    assert report.groups[0].key == "(none)"


def test_unknown_group_by_lists_the_valid_ones() -> None:
    """An unsupported group_by raises ValueError naming every valid choice."""
    with pytest.raises(ValueError, match="unknown group_by 'week'") as raised:
        build_report([_row()], group_by="week")
    for name in ("day", "store", "template", "category", "market", "status"):
        assert name in str(raised.value)


# --- amounts and formats -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("0.1150"), "0.115"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.000"), "0"),
        (Decimal("12"), "12"),
        (Decimal("0.00000001"), "0.00000001"),
    ],
)
def test_plain_amount_drops_trailing_zeros_and_exponents(amount: Decimal, text: str) -> None:
    """Amounts print positionally with every significant digit and no trailing zeros."""
    assert plain_amount(amount) == text
    assert Decimal(text) == amount


def test_money_carries_its_currency_code() -> None:
    """An amount prints with its currency code, e.g. "0.115 INR"."""
    assert money(Decimal("0.1150"), "INR") == "0.115 INR"


def _total_lines(table: str) -> list[list[str]]:
    """The cells of each totals line: the grid after the totals title, header and rule skipped."""
    sections = table.split("\n\n")
    title = sections.index("Totals per currency (never summed across currencies)")
    return [line.split() for line in sections[title + 1].splitlines()[2:]]


def test_table_shows_groups_totals_and_counts() -> None:
    """The table lists each group and a totals line per currency with codes and exact amounts."""
    table = to_table(build_report(_mixed_rows(), group_by="store"))
    lines = table.splitlines()
    assert lines[0].split() == [
        "store", "currency", "messages", "charged", "free", "unknown", "estimated", "confirmed",
    ]  # fmt: skip
    assert _total_lines(table) == [
        ["EUR", "1", "0", "0.0456", "EUR", "0", "EUR", "0.0456", "EUR"],
        ["INR", "3", "0", "0.345", "INR", "0.115", "INR", "0.23", "INR"],
        ["unknown", "1", "1", "unknown", "unknown", "unknown"],
    ]
    assert "Unknown cost: 1 message(s)" in lines
    assert "Failed: 1  Skipped: 1" in lines


def test_table_columns_line_up() -> None:
    """Every line of the groups grid has the header's width, so columns align."""
    lines = to_table(build_report(_mixed_rows(), group_by="template")).splitlines()
    grid = lines[: lines.index("")]
    assert len({len(line) for line in grid}) == 1


def test_empty_report_says_so() -> None:
    """No rows gives a one-line message rather than an empty grid."""
    assert to_table(build_report([], group_by="day")) == (
        "No messages in the ledger for this period.\n"
    )


def test_csv_parses_back_with_groups_then_totals() -> None:
    """The CSV has a header, one line per group and a TOTAL line per currency, amounts exact."""
    report = build_report(_mixed_rows(), group_by="day")
    parsed = list(csv.DictReader(io.StringIO(to_csv(report))))
    groups = [line for line in parsed if line["day"] != "TOTAL"]
    totals = [line for line in parsed if line["day"] == "TOTAL"]
    assert len(groups) == len(report.groups)
    assert [(line["currency"], line["best"], line["unknown"]) for line in totals] == [
        ("EUR", "0.0456", "0"),
        ("INR", "0.230", "0"),
        ("", "0", "1"),
    ]
    inr_total = totals[1]
    assert (inr_total["messages"], inr_total["charged"], inr_total["free"]) == ("3", "2", "1")


@settings(max_examples=60, deadline=None)
@given(rows=ledger_rows())
def test_json_round_trips_decimal_strings_exactly(rows: list[LedgerRow]) -> None:
    """Every amount in the JSON parses back to exactly the report's Decimal."""
    report = build_report(rows, group_by="category")
    document = json.loads(to_json(report))
    assert document["group_by"] == "category"
    for group, parsed in zip(report.groups, document["groups"], strict=True):
        assert (parsed["key"], parsed["currency"]) == (group.key, group.currency)
        for field in ("estimated", "confirmed", "best"):
            assert isinstance(parsed[field], str)
            assert Decimal(parsed[field]) == getattr(group, field)
    for total, parsed in zip(report.totals, document["totals"], strict=True):
        assert Decimal(parsed["best"]) == total.best
        assert parsed["unknown"] == total.unknown
    assert document["counts"]["unknown_cost"] == report.unknown_cost_count


def test_json_counts_section() -> None:
    """The JSON counts hold statuses, free reasons, unknown, failed, skipped and top failures."""
    counts = json.loads(to_json(build_report(_mixed_rows(), group_by="market")))["counts"]
    assert counts == {
        "by_status": {"delivered": 2, "failed": 1, "sent": 1, "skipped": 1},
        "by_free_reason": {"service_window": 1},
        "unknown_cost": 1,
        "failed": 1,
        "skipped": 1,
        "top_failures": [],
    }


def test_rows_to_csv_exports_each_message_with_empty_unknowns() -> None:
    """The per-message export has the documented columns; an unknown cost is empty, not 0."""
    parsed = list(csv.reader(io.StringIO(rows_to_csv(_mixed_rows()))))
    assert tuple(parsed[0]) == ROW_EXPORT_COLUMNS
    by_id = {line[0]: dict(zip(ROW_EXPORT_COLUMNS, line, strict=True)) for line in parsed[1:]}
    assert by_id["1"]["confirmed_cost"] == "0.115"
    assert by_id["1"]["recipient_masked"] == "+91••••••0001"
    assert by_id["2"]["free_reason"] == "service_window"
    assert (by_id["4"]["estimated_cost"], by_id["4"]["currency"]) == ("", "")
    assert by_id["5"]["priced_on"] == "2026-01-06"


def test_report_is_frozen() -> None:
    """A built report cannot be altered after the fact."""
    report: CostReport = build_report([_row()], group_by="day")
    with pytest.raises(AttributeError):
        report.group_by = "store"  # type: ignore[misc]
