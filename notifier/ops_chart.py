"""The ops page's daily cost chart: stacked bars per UTC day, one colour per category, inline SVG.

Pure: ledger rows of one currency in, SVG text out. Amounts stay ``Decimal`` up to the pixel
coordinates; a row whose cost is unknown draws nothing (the totals table counts it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from html import escape

from notifier.costs import money, plain_amount
from notifier.store.ledger import LedgerRow

WIDTH, HEIGHT = 460, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 36, 80
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
MAX_DAY_LABELS = 6
Y_TICKS = 4
CATEGORY_COLOURS = {
    "utility": "#2563eb",
    "service": "#16a34a",
    "marketing": "#dc2626",
    "authentication": "#9333ea",
    "authentication_international": "#c026d3",
}
SPARE_COLOURS = ("#ea580c", "#0891b2", "#65a30d", "#db2777", "#78716c")


def _categories(rows: Sequence[LedgerRow]) -> list[str]:
    known = list(CATEGORY_COLOURS)
    present = {row.category for row in rows}
    return [c for c in known if c in present] + sorted(present - set(known))


def colour_of(category: str, categories: Sequence[str]) -> str:
    """The category's fixed colour, or a spare one by its place among the unknown categories."""
    if category in CATEGORY_COLOURS:
        return CATEGORY_COLOURS[category]
    spare = [c for c in categories if c not in CATEGORY_COLOURS]
    return SPARE_COLOURS[spare.index(category) % len(SPARE_COLOURS)]


def nice_ceiling(amount: Decimal) -> Decimal:
    """The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above ``amount`` (> 0), for round axis ticks."""
    exponent = amount.adjusted()
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        candidate = step.scaleb(exponent)
        if candidate >= amount:
            return candidate
    raise AssertionError("unreachable: 10 × 10ⁿ always exceeds a number with exponent n")


def _days(rows: Sequence[LedgerRow], since: date | None, until: date | None) -> list[date]:
    first = since or min(row.priced_on for row in rows)
    last = until or max(row.priced_on for row in rows)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def daily_amounts(rows: Sequence[LedgerRow]) -> dict[tuple[date, str], Decimal]:
    """Best known cost (confirmed, else estimated) per (day, category)."""
    amounts: dict[tuple[date, str], Decimal] = {}
    for row in rows:
        if row.cost is not None:
            key = (row.priced_on, row.category)
            amounts[key] = amounts.get(key, Decimal(0)) + row.cost
    return amounts


def _px(value: Decimal | float) -> str:
    return f"{value:.1f}"


def cost_chart(
    rows: Sequence[LedgerRow], currency: str, *, since: date | None, until: date | None
) -> str:
    """One SVG chart of ``rows`` (all in ``currency``) from ``since`` to ``until`` inclusive."""
    if not rows:
        return ""
    days, categories = _days(rows, since, until), _categories(rows)
    amounts = daily_amounts(rows)
    peak = max(
        (sum((amounts.get((d, c), Decimal(0)) for c in categories), Decimal(0)) for d in days),
        default=Decimal(0),
    )
    top = nice_ceiling(peak) if peak > 0 else Decimal(1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="cost-chart" '
        f'data-currency="{escape(currency)}" '
        f'aria-label="Daily cost by category in {escape(currency)}" '
        'font-family="system-ui,sans-serif" font-size="12">',
        f'<text x="{LEFT}" y="18" font-size="14" font-weight="600">'
        f"Daily cost in {escape(currency)}</text>",
        *_y_axis(top, currency),
        *_bars(days, categories, amounts, top, currency),
        *_x_axis(days),
        *_legend(rows, categories, currency),
    ]
    if peak == 0:
        parts.append(
            f'<text x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H / 2}" text-anchor="middle" '
            'fill="#6b7280">every message in this period was free</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _y_axis(top: Decimal, currency: str) -> list[str]:
    parts = []
    for i in range(Y_TICKS + 1):
        value = top * i / Y_TICKS
        y = TOP + PLOT_H - Decimal(PLOT_H) * i / Y_TICKS
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{_px(y)}" y2="{_px(y)}" '
            f'stroke="{"#9ca3af" if i == 0 else "#e5e7eb"}"/>'
            f'<text x="{LEFT - 6}" y="{_px(y + 4)}" text-anchor="end" fill="#4b5563">'
            f"{escape(plain_amount(value))}</text>"
        )
    middle = TOP + PLOT_H / 2
    parts.append(
        f'<text x="14" y="{_px(middle)}" text-anchor="middle" fill="#4b5563" '
        f'transform="rotate(-90 14 {_px(middle)})">{escape(currency)} per day</text>'
    )
    return parts


def _bars(
    days: Sequence[date],
    categories: Sequence[str],
    amounts: dict[tuple[date, str], Decimal],
    top: Decimal,
    currency: str,
) -> list[str]:
    slot = Decimal(PLOT_W) / len(days)
    width = max(Decimal(1), slot * Decimal("0.7"))
    parts = []
    for index, day in enumerate(days):
        x = LEFT + slot * index + (slot - width) / 2
        base = Decimal(TOP + PLOT_H)
        for category in categories:
            amount = amounts.get((day, category), Decimal(0))
            if amount <= 0:
                continue
            height = Decimal(PLOT_H) * amount / top
            base -= height
            tip = f"{day.isoformat()} {category}: {money(amount, currency)}"
            parts.append(
                f'<rect class="bar" x="{_px(x)}" y="{_px(base)}" width="{_px(width)}" '
                f'height="{_px(height)}" fill="{colour_of(category, categories)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    return parts


def _x_axis(days: Sequence[date]) -> list[str]:
    slot = Decimal(PLOT_W) / len(days)
    every = -(-len(days) // MAX_DAY_LABELS)
    parts = []
    for index in range(0, len(days), every):
        x = LEFT + slot * index + slot / 2
        parts.append(
            f'<text x="{_px(x)}" y="{TOP + PLOT_H + 16}" text-anchor="middle" fill="#4b5563">'
            f"{days[index].strftime('%b %d')}</text>"
        )
    parts.append(
        f'<text x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H + 34}" text-anchor="middle" '
        'fill="#4b5563">day (UTC)</text>'
    )
    return parts


def _legend(rows: Sequence[LedgerRow], categories: Sequence[str], currency: str) -> list[str]:
    parts = []
    x, y = LEFT, HEIGHT - 22
    for category in categories:
        in_category = [row for row in rows if row.category == category]
        total = sum((row.cost for row in in_category if row.cost is not None), Decimal(0))
        label = f"{category} {money(total, currency)} ({len(in_category)} msg)"
        parts.append(
            f'<g class="legend-item"><rect x="{x}" y="{y - 9}" width="10" height="10" '
            f'fill="{colour_of(category, categories)}"/>'
            f'<text x="{x + 14}" y="{y}">{escape(label)}</text></g>'
        )
        x += 24 + 6 * len(label)
        if x > WIDTH - 120:
            x, y = LEFT, y + 16
    return parts
