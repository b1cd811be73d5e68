"""The cost report behind ``notifier costs``: ledger rows in, totals and exports out.

Pure: no I/O, no clock. Money is summed per currency only — a group is one (key, currency) pair
and every total belongs to one currency. A row whose cost is unknown (no rate for its market or
category) is counted as unknown and never folded in as zero.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from notifier.store.ledger import LedgerRow

NO_VALUE = "(none)"
UNKNOWN = "unknown"
TOTAL_KEY = "TOTAL"
FAILED = "failed"
SKIPPED = "skipped"

_GROUP_KEYS: Mapping[str, Callable[[LedgerRow], str | None]] = {
    "day": lambda row: row.priced_on.isoformat(),
    "store": lambda row: row.store,
    "template": lambda row: row.template,
    "category": lambda row: row.category,
    "market": lambda row: row.market,
    "status": lambda row: row.status,
}
GROUP_BYS: tuple[str, ...] = tuple(_GROUP_KEYS)

ROW_EXPORT_COLUMNS = (
    "message_id",
    "priced_on",
    "store",
    "order_number",
    "template",
    "category",
    "market",
    "recipient_masked",
    "status",
    "currency",
    "rate",
    "estimated_cost",
    "confirmed_cost",
    "free_reason",
)

_TABLE_GROUP_COLUMNS = (
    "currency",
    "messages",
    "charged",
    "free",
    "unknown",
    "estimated",
    "confirmed",
)
_TABLE_TOTAL_COLUMNS = ("currency", "messages", "unknown", "estimated", "confirmed", "best")
_CSV_COLUMNS = (*_TABLE_GROUP_COLUMNS, "best")


@dataclass(frozen=True, slots=True)
class CostGroup:
    """Messages sharing one group key and one currency (``None``: the currency is unknown).

    ``messages == charged_messages + free_messages + unknown``. ``best`` sums each row's best
    figure (confirmed if known, else the estimate); unknown rows add nothing to any amount.
    """

    key: str
    currency: str | None
    messages: int
    estimated: Decimal
    confirmed: Decimal
    charged_messages: int
    free_messages: int
    unknown: int
    best: Decimal


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    """Every message priced in one currency; ``unknown`` counts rows whose cost is unknown."""

    currency: str | None
    messages: int
    estimated: Decimal
    confirmed: Decimal
    best: Decimal
    unknown: int


@dataclass(frozen=True, slots=True)
class CostReport:
    """Groups, per-currency totals and counts; count pairs are sorted by name."""

    group_by: str
    groups: tuple[CostGroup, ...]
    totals: tuple[CurrencyTotal, ...]
    status_counts: tuple[tuple[str, int], ...]
    free_reason_counts: tuple[tuple[str, int], ...]
    unknown_cost_count: int
    failed_count: int
    skipped_count: int
    top_failures: tuple[tuple[str, int], ...] = ()  # filled by the caller that can read errors


# --- building ----------------------------------------------------------------------------------


def build_report(rows: Sequence[LedgerRow], *, group_by: str) -> CostReport:
    """Group ``rows`` by ``group_by`` (one of ``GROUP_BYS``) and currency; total per currency."""
    key_of = _GROUP_KEYS.get(group_by)
    if key_of is None:
        raise ValueError(f"unknown group_by {group_by!r}; valid: {', '.join(GROUP_BYS)}")
    by_group: dict[tuple[str, str | None], list[LedgerRow]] = {}
    by_currency: dict[str | None, list[LedgerRow]] = {}
    for row in rows:
        key = key_of(row) or NO_VALUE
        by_group.setdefault((key, row.currency), []).append(row)
        by_currency.setdefault(row.currency, []).append(row)
    statuses = Counter(row.status for row in rows)
    return CostReport(
        group_by=group_by,
        groups=tuple(
            _group(key, currency, by_group[key, currency])
            for key, currency in sorted(by_group, key=lambda kc: (kc[0], *_currency_order(kc[1])))
        ),
        totals=tuple(
            _total(currency, by_currency[currency])
            for currency in sorted(by_currency, key=_currency_order)
        ),
        status_counts=tuple(sorted(statuses.items())),
        free_reason_counts=tuple(
            sorted(Counter(row.free_reason for row in rows if row.free_reason).items())
        ),
        unknown_cost_count=sum(1 for row in rows if row.cost is None),
        failed_count=statuses[FAILED],
        skipped_count=statuses[SKIPPED],
    )


def _currency_order(currency: str | None) -> tuple[bool, str]:
    return (currency is None, currency or "")


def _sum(amounts: Iterable[Decimal | None]) -> Decimal:
    return sum((amount for amount in amounts if amount is not None), Decimal(0))


def _group(key: str, currency: str | None, rows: Sequence[LedgerRow]) -> CostGroup:
    unknown = sum(1 for row in rows if row.cost is None)
    free = sum(1 for row in rows if row.cost is not None and row.free_reason is not None)
    return CostGroup(
        key=key,
        currency=currency,
        messages=len(rows),
        estimated=_sum(row.estimated_cost for row in rows),
        confirmed=_sum(row.confirmed_cost for row in rows),
        charged_messages=len(rows) - free - unknown,
        free_messages=free,
        unknown=unknown,
        best=_sum(row.cost for row in rows),
    )


def _total(currency: str | None, rows: Sequence[LedgerRow]) -> CurrencyTotal:
    return CurrencyTotal(
        currency=currency,
        messages=len(rows),
        estimated=_sum(row.estimated_cost for row in rows),
        confirmed=_sum(row.confirmed_cost for row in rows),
        best=_sum(row.cost for row in rows),
        unknown=sum(1 for row in rows if row.cost is None),
    )


# --- amounts as text ---------------------------------------------------------------------------


def plain_amount(amount: Decimal) -> str:
    """Every digit of ``amount`` in positional notation (no exponent), trailing zeros dropped."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def money(amount: Decimal, currency: str | None) -> str:
    """``0.115 INR``; an amount whose currency is unknown prints bare."""
    return f"{plain_amount(amount)} {currency}" if currency else plain_amount(amount)


def _exact(amount: Decimal) -> str:
    return format(amount, "f")


# --- terminal table ----------------------------------------------------------------------------


def to_table(report: CostReport) -> str:
    """A fixed-width report: one line per group, then totals per currency, then counts."""
    if not report.groups:
        return "No messages in the ledger for this period.\n"
    sections = [
        _grid(
            [report.group_by, *_TABLE_GROUP_COLUMNS],
            [_group_cells(group) for group in report.groups],
        ),
        "Totals per currency (never summed across currencies)",
        _grid(
            _TABLE_TOTAL_COLUMNS,
            [_total_cells(total) for total in report.totals],
        ),
        _counts_text(report),
    ]
    return "\n\n".join(sections) + "\n"


def _amount_cell(amount: Decimal, currency: str | None, *, all_unknown: bool) -> str:
    return UNKNOWN if all_unknown else money(amount, currency)


def _group_cells(group: CostGroup) -> list[str]:
    all_unknown = group.unknown == group.messages
    return [
        group.key,
        group.currency or UNKNOWN,
        str(group.messages),
        str(group.charged_messages),
        str(group.free_messages),
        str(group.unknown),
        _amount_cell(group.estimated, group.currency, all_unknown=all_unknown),
        _amount_cell(group.confirmed, group.currency, all_unknown=all_unknown),
    ]


def _total_cells(total: CurrencyTotal) -> list[str]:
    all_unknown = total.unknown == total.messages
    return [
        total.currency or UNKNOWN,
        str(total.messages),
        str(total.unknown),
        _amount_cell(total.estimated, total.currency, all_unknown=all_unknown),
        _amount_cell(total.confirmed, total.currency, all_unknown=all_unknown),
        _amount_cell(total.best, total.currency, all_unknown=all_unknown),
    ]


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        # The first column is a label (left-aligned); the rest are figures (right-aligned).
        padded = [cells[0].ljust(widths[0])]
        padded += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(cells) for cells in rows)])


def _pairs(pairs: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {count}" for name, count in pairs) or "none"


def _counts_text(report: CostReport) -> str:
    return "\n".join(
        [
            f"By status: {_pairs(report.status_counts)}",
            f"Free, by reason: {_pairs(report.free_reason_counts)}",
            f"Unknown cost: {report.unknown_cost_count} message(s)",
            f"Failed: {report.failed_count}  Skipped: {report.skipped_count}",
            f"Top failure reasons: {_pairs(report.top_failures)}",
        ]
    )


# --- machine formats ---------------------------------------------------------------------------


def to_csv(report: CostReport) -> str:
    """A header, one line per group, then one ``TOTAL`` line per currency; amounts exact."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report.group_by, *_CSV_COLUMNS])
    for group in report.groups:
        writer.writerow(
            [
                group.key,
                group.currency or "",
                group.messages,
                group.charged_messages,
                group.free_messages,
                group.unknown,
                _exact(group.estimated),
                _exact(group.confirmed),
                _exact(group.best),
            ]
        )
    for total in report.totals:
        charged, free = _total_split(report, total.currency)
        writer.writerow(
            [
                TOTAL_KEY,
                total.currency or "",
                total.messages,
                charged,
                free,
                total.unknown,
                _exact(total.estimated),
                _exact(total.confirmed),
                _exact(total.best),
            ]
        )
    return out.getvalue()


def _total_split(report: CostReport, currency: str | None) -> tuple[int, int]:
    groups = [group for group in report.groups if group.currency == currency]
    return (
        sum(group.charged_messages for group in groups),
        sum(group.free_messages for group in groups),
    )


def to_json(report: CostReport) -> str:
    """The report as JSON; amounts are exact decimal strings, an unknown currency is null."""
    document = {
        "group_by": report.group_by,
        "groups": [_group_json(group) for group in report.groups],
        "totals": [_total_json(total) for total in report.totals],
        "counts": {
            "by_status": dict(report.status_counts),
            "by_free_reason": dict(report.free_reason_counts),
            "unknown_cost": report.unknown_cost_count,
            "failed": report.failed_count,
            "skipped": report.skipped_count,
            "top_failures": [
                {"reason": reason, "messages": count} for reason, count in report.top_failures
            ],
        },
    }
    return json.dumps(document, indent=2)


def _group_json(group: CostGroup) -> dict[str, object]:
    return {
        "key": group.key,
        "currency": group.currency,
        "messages": group.messages,
        "charged_messages": group.charged_messages,
        "free_messages": group.free_messages,
        "unknown": group.unknown,
        "estimated": _exact(group.estimated),
        "confirmed": _exact(group.confirmed),
        "best": _exact(group.best),
    }


def _total_json(total: CurrencyTotal) -> dict[str, object]:
    return {
        "currency": total.currency,
        "messages": total.messages,
        "unknown": total.unknown,
        "estimated": _exact(total.estimated),
        "confirmed": _exact(total.confirmed),
        "best": _exact(total.best),
    }


def rows_to_csv(rows: Iterable[LedgerRow]) -> str:
    """One line per message; an unknown amount is an empty cell, never 0."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ROW_EXPORT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.message_id,
                row.priced_on.isoformat(),
                row.store,
                row.order_number or "",
                row.template or "",
                row.category,
                row.market or "",
                row.recipient_masked or "",
                row.status,
                row.currency or "",
                _optional(row.rate),
                _optional(row.estimated_cost),
                _optional(row.confirmed_cost),
                row.free_reason or "",
            ]
        )
    return out.getvalue()


def _optional(amount: Decimal | None) -> str:
    return "" if amount is None else _exact(amount)
