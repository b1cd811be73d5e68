"""The ops page: what was sent, to whom (masked), what it cost, what was free and why, what failed.

``GET /ops`` renders one server-side HTML page (inline CSS and SVG, no script, no CDN);
``GET /ops/messages.csv`` exports the filtered log. Both need the configured ops token, as a
bearer token or as the password of HTTP basic auth (any user name) so a browser prompt works.
Without a token in the config everything under ``/ops`` is 404: the page is off.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hmac
import io
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from html import escape
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.bootstrap import Runtime
from notifier.costs import money, plain_amount
from notifier.ops_chart import cost_chart
from notifier.store import reports
from notifier.store.ledger import LedgerRow
from notifier.store.reports import LogEntry, MessageFilter

PAGE_SIZE = 100
MAX_PAGE = 1_000_000  # past it the offset overflows SQLite's INTEGER; nobody pages that far
DEFAULT_PERIOD_DAYS = 30
FILTER_NAMES = ("store", "status", "template", "since", "until")
REALM = "notifier ops"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}
CSV_COLUMNS = (
    "message_id", "created_at", "store", "order_number", "kind", "event", "template", "status",
    "attempts", "recipient_masked", "category", "currency", "estimated_cost", "confirmed_cost",
    "free_reason", "error_code", "error_title",
)  # fmt: skip


# --- auth --------------------------------------------------------------------------------------


def credentials_match(authorization: str | None, token: str) -> bool:
    """``Bearer <token>``, or ``Basic`` with any user and the token as password; constant-time."""
    if not authorization or not token:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    given = value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(given, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, colon, given = decoded.partition(":")
        if not colon:
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def _unauthorized() -> Response:
    headers = {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"', **SECURITY_HEADERS}
    return PlainTextResponse("ops token required", status_code=401, headers=headers)


# --- filters -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Parsed query parameters; ``echo`` holds the filter values to keep in links and the form."""

    where: MessageFilter
    page: int
    echo: Mapping[str, str]


def _date_param(params: Mapping[str, str], name: str) -> date | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: expected a date like 2026-06-20, got {text!r}") from None


def parse_request(params: Mapping[str, str], *, today: date) -> PageRequest:
    """Filters from query params; with neither date given, the last 30 days up to ``today``."""
    since, until = _date_param(params, "since"), _date_param(params, "until")
    if "since" not in params and "until" not in params:
        since, until = today - timedelta(days=DEFAULT_PERIOD_DAYS - 1), today
    page_text = params.get("page", "1").strip() or "1"
    if not page_text.isdigit() or not 1 <= int(page_text) <= MAX_PAGE:
        raise ValueError(f"page: expected a whole number from 1 to {MAX_PAGE:,}, got {page_text!r}")
    where = MessageFilter(
        store=params.get("store") or None,
        status=params.get("status") or None,
        template=params.get("template") or None,
        since=since,
        until=until,
    )
    echo = {
        "store": where.store or "",
        "status": where.status or "",
        "template": where.template or "",
        "since": since.isoformat() if since else "",
        "until": until.isoformat() if until else "",
    }
    return PageRequest(where, int(page_text), echo)


def _link(path: str, echo: Mapping[str, str], **extra: str) -> str:
    return f"{path}?{urlencode({**echo, **extra})}"


# --- totals ------------------------------------------------------------------------------------


@dataclass
class CurrencySummary:
    """Totals of one currency over the period (``None``: rows whose cost is unknown)."""

    currency: str | None
    messages: int = 0
    estimated: Decimal = Decimal(0)
    confirmed: Decimal = Decimal(0)
    free_reasons: Counter[str] = field(default_factory=Counter)
    unknown: int = 0

    @property
    def free(self) -> int:
        return sum(self.free_reasons.values())


def summarize(rows: Iterable[LedgerRow]) -> list[CurrencySummary]:
    """One summary per currency, known currencies first, alphabetically."""
    by_currency: dict[str | None, CurrencySummary] = {}
    for row in rows:
        summary = by_currency.setdefault(row.currency, CurrencySummary(row.currency))
        summary.messages += 1
        summary.estimated += row.estimated_cost or Decimal(0)
        summary.confirmed += row.confirmed_cost or Decimal(0)
        if row.cost is None:
            summary.unknown += 1
        elif row.free_reason:
            summary.free_reasons[row.free_reason] += 1
    return [by_currency[c] for c in sorted(by_currency, key=lambda c: (c is None, c or ""))]


# --- HTML --------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2937;
background:#f3f4f6}header{background:#111827;color:#f9fafb;padding:12px 24px}
header h1{font-size:18px;margin:0}header p{margin:2px 0 0;color:#9ca3af;font-size:12px}
main{padding:16px 24px;max-width:1560px}section{background:#fff;border:1px solid #e5e7eb;
border-radius:8px;padding:12px 16px;margin-bottom:16px}h2{font-size:15px;margin:0 0 8px}
form{display:flex;flex-wrap:wrap;gap:10px;align-items:end}label{display:flex;flex-direction:column;
font-size:12px;color:#4b5563}select,input{font:inherit;padding:4px 6px;border:1px solid #d1d5db;
border-radius:4px}button{font:inherit;padding:5px 14px;background:#2563eb;color:#fff;border:0;
border-radius:4px}a{color:#2563eb}table{border-collapse:collapse;width:100%}table.totals{width:auto}
th,td{padding:5px 8px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top;
white-space:nowrap}td.wrap{white-space:normal;min-width:180px}.scroll{overflow-x:auto}
th{background:#f9fafb;font-size:12px;color:#4b5563}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums}.badge{display:inline-block;padding:0 6px;border-radius:9px;
font-size:12px;background:#e5e7eb}.s-delivered,.s-read{background:#dcfce7;color:#166534}
.s-sent,.s-accepted{background:#dbeafe;color:#1e40af}.s-failed{background:#fee2e2;color:#991b1b}
.s-skipped{background:#fef3c7;color:#92400e}.s-queued,.s-sending,.s-ambiguous{background:#ede9fe;
color:#5b21b6}.err{color:#991b1b}.muted{color:#6b7280}.charts{display:flex;flex-wrap:wrap;gap:16px}
.charts svg{flex:1 1 360px;max-width:560px;height:auto}
.pager{display:flex;gap:16px;align-items:center;margin-top:8px}.error{color:#991b1b}
"""


def _options(name: str, label: str, choices: Sequence[str], selected: str) -> str:
    options = [f'<option value=""{"" if selected else " selected"}>any</option>']
    for choice in choices:
        mark = " selected" if choice == selected else ""
        options.append(f'<option value="{escape(choice)}"{mark}>{escape(choice)}</option>')
    return f'<label>{label}<select name="{name}">{"".join(options)}</select></label>'


def _filter_form(request: PageRequest, choices: reports.FilterChoices) -> str:
    echo = request.echo
    dates = "".join(
        f'<label>{label}<input type="date" name="{name}" value="{escape(echo[name])}"></label>'
        for name, label in (("since", "From (UTC)"), ("until", "To (UTC)"))
    )
    return (
        '<section><form method="get" action="/ops">'
        + _options("store", "Store", choices.stores, echo["store"])
        + _options("status", "Status", choices.statuses, echo["status"])
        + _options("template", "Template", choices.templates, echo["template"])
        + dates
        + '<button type="submit">Apply</button><a href="/ops">Reset</a>'
        + f'<a href="{escape(_link("/ops/messages.csv", echo))}">Export CSV</a>'
        + "</form></section>"
    )


def _reasons(counter: Counter[str]) -> str:
    return ", ".join(f"{escape(reason)} {n}" for reason, n in sorted(counter.items())) or "—"


def _summary_row(s: CurrencySummary) -> str:
    # Rows with no currency have no price at all: a sum of nothing would read as "0".
    estimated = money(s.estimated, s.currency) if s.currency else "—"
    confirmed = money(s.confirmed, s.currency) if s.currency else "—"
    return (
        f"<tr><td>{escape(s.currency or 'unknown')}</td><td class=num>{s.messages}</td>"
        f"<td class=num>{escape(estimated)}</td><td class=num>{escape(confirmed)}</td>"
        f"<td class=num>{s.free}</td><td class=muted>{_reasons(s.free_reasons)}</td>"
        f"<td class=num>{s.unknown}</td></tr>"
    )


def _totals(summaries: Sequence[CurrencySummary]) -> str:
    if not summaries:
        return "<section><h2>Totals</h2><p class=muted>No messages priced in this period.</p></section>"
    titles = ("Currency", "Messages", "Estimated", "Confirmed", "Free", "Free because", "Unknown")
    head = "".join(
        f"<th>{title}</th>"
        if title in ("Currency", "Free because")
        else f'<th class="num">{title}</th>'
        for title in titles
    )
    rows = "".join(_summary_row(s) for s in summaries)
    return f'<section><h2>Totals</h2><table class="totals"><tr>{head}</tr>{rows}</table></section>'


def _charts(rows: Sequence[LedgerRow], where: MessageFilter) -> str:
    currencies = sorted({row.currency for row in rows if row.currency is not None})
    svgs = [
        cost_chart([r for r in rows if r.currency == c], c, since=where.since, until=where.until)
        for c in currencies
    ]
    body = "".join(svgs) or "<p class=muted>No priced messages in this period.</p>"
    return f'<section><h2>Daily cost by category</h2><div class="charts">{body}</div></section>'


def _cost_cell(entry: LogEntry) -> str:
    if entry.confirmed_cost is not None:
        return escape(money(entry.confirmed_cost, entry.currency))
    if entry.estimated_cost is not None:
        estimate = escape(money(entry.estimated_cost, entry.currency))
        return f'<span class=muted title="estimate">≈ {estimate}</span>'
    return "—" if entry.category is None else '<span class="muted">unknown</span>'


def _log_row(entry: LogEntry) -> str:
    failure = ""
    if entry.error_code is not None or entry.error_title:
        code = f"{entry.error_code}: " if entry.error_code is not None else ""
        failure = f'<span class="err">{escape(code + (entry.error_title or ""))}</span>'
    cells = (
        escape(entry.created_at.strftime("%Y-%m-%d %H:%M")),
        escape(entry.store),
        escape(entry.order_number or "—"),
        escape(entry.template or entry.kind),
        escape(entry.recipient_masked or "—"),
        f'<span class="badge s-{escape(entry.status)}">{escape(entry.status)}</span>',
        f"{escape(entry.category or '—')}",
        _cost_cell(entry),
        escape(entry.free_reason or ""),
        failure,
    )
    row = "".join(f"<td>{cell}</td>" for cell in cells[:-1]) + f'<td class="wrap">{cells[-1]}</td>'
    return f'<tr class="msg"><td class="mid">{entry.message_id}</td>{row}</tr>'


def _log(entries: Sequence[LogEntry], request: PageRequest, total: int) -> str:
    titles = "#|Created (UTC)|Store|Order|Template|Phone|Status|Category|Cost|Free reason|Failure"
    head = "".join(f"<th>{title}</th>" for title in titles.split("|"))
    rows = "".join(_log_row(entry) for entry in entries) or (
        '<tr><td colspan="11" class="muted">No messages match these filters.</td></tr>'
    )
    pages = max(1, -(-total // PAGE_SIZE))
    links = []
    if request.page > 1:
        links.append(_page_link(request, request.page - 1, "← Newer"))
    if request.page < pages:
        links.append(_page_link(request, request.page + 1, "Older →"))
    pager = f"<span>Page {request.page} of {pages} · {total} message(s)</span>" + "".join(links)
    return (
        f'<section><h2>Messages</h2><div class="scroll"><table id="log"><tr>{head}</tr>{rows}</table></div>'
        f'<div class="pager">{pager}</div></section>'
    )


def _page_link(request: PageRequest, page: int, text: str) -> str:
    return f'<a href="{escape(_link("/ops", request.echo, page=str(page)))}">{text}</a>'


def render_page(
    request: PageRequest,
    *,
    choices: reports.FilterChoices,
    ledger_rows: Sequence[LedgerRow],
    entries: Sequence[LogEntry],
    total: int,
) -> str:
    """The whole page as HTML; every value from the database is escaped."""
    period = f"{request.echo['since'] or 'the beginning'} to {request.echo['until'] or 'now'}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>notifier ops</title><style>{STYLE}</style></head><body>"
        f"<header><h1>notifier — messages and costs</h1><p>{escape(period)} (UTC)</p></header>"
        "<main>"
        + _filter_form(request, choices)
        + _totals(summarize(ledger_rows))
        + _charts(ledger_rows, request.where)
        + _log(entries, request, total)
        + "</main></body></html>"
    )


# --- CSV ---------------------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(value: object) -> str:
    """Text a spreadsheet will not run as a formula (a masked phone's ``+`` included)."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def rows_to_csv(entries: Iterable[LogEntry]) -> str:
    """The filtered log as CSV; amounts exact, unknown amounts empty, never 0."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        amounts = [
            None if a is None else plain_amount(a) for a in (e.estimated_cost, e.confirmed_cost)
        ]
        values = (
            e.message_id, e.created_at.isoformat(), e.store, e.order_number, e.kind, e.event,
            e.template, e.status, e.attempts, e.recipient_masked, e.category, e.currency,
            *amounts, e.free_reason, e.error_code, e.error_title,
        )  # fmt: skip
        writer.writerow([_csv_safe(value) for value in values])
    return out.getvalue()


# --- routes ------------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def ops_routes(runtime: Runtime) -> list[BaseRoute]:
    """``/ops`` and ``/ops/messages.csv``, guarded by ``[web] ops_token`` (404 when unset)."""
    secret = runtime.settings.web.ops_token
    token = secret.reveal() if secret is not None else ""

    def guarded(handler: Handler) -> Handler:
        async def guard(request: Request) -> Response:
            if not token:
                return PlainTextResponse("Not Found", status_code=404)
            if not credentials_match(request.headers.get("authorization"), token):
                return _unauthorized()
            try:
                parsed = parse_request(request.query_params, today=runtime.clock().date())
            except ValueError as problem:
                return PlainTextResponse(str(problem), status_code=400, headers=SECURITY_HEADERS)
            request.state.ops = parsed
            return await handler(request)

        return guard

    async def page(request: Request) -> Response:
        html = await run_in_threadpool(_page_html, runtime, request.state.ops)
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    async def export(request: Request) -> Response:
        parsed: PageRequest = request.state.ops
        text = await run_in_threadpool(_export_csv, runtime, parsed.where)
        span = f"{parsed.echo['since'] or 'start'}_{parsed.echo['until'] or 'now'}"
        disposition = f'attachment; filename="notifier-messages-{span}.csv"'
        headers = {**SECURITY_HEADERS, "Content-Disposition": disposition}
        return Response(text, media_type="text/csv; charset=utf-8", headers=headers)

    return [
        Route("/ops", guarded(page), methods=["GET"]),
        Route("/ops/messages.csv", guarded(export), methods=["GET"]),
    ]


def _page_html(runtime: Runtime, request: PageRequest) -> str:
    offset = (request.page - 1) * PAGE_SIZE
    with runtime.engine.connect() as conn:
        choices = reports.filter_choices(conn, [s.settings.name for s in runtime.stores])
        rows = reports.ledger_rows(conn, request.where)
        entries = reports.message_log(conn, request.where, offset=offset, limit=PAGE_SIZE)
        total = reports.count_messages(conn, request.where)
    return render_page(request, choices=choices, ledger_rows=rows, entries=entries, total=total)


def _export_csv(runtime: Runtime, where: MessageFilter) -> str:
    with runtime.engine.connect() as conn:
        return rows_to_csv(reports.message_log(conn, where))
