"""``GET /metrics``: Prometheus text exposition (format 0.0.4), computed from the database per scrape.

Unauthenticated on purpose: Prometheus scrapes from inside the network. The figures are counts,
cost totals and store names, never a phone number or a secret; bind the web server to a private
interface (``[web] host``) or filter ``/metrics`` at the proxy if it must not be public.

Written by hand rather than with prometheus-client: every value is a fresh read of the database,
so there is no in-process registry to keep, and the text format is a few lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.bootstrap import Runtime
from notifier.costs import plain_amount
from notifier.store import reports

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


@dataclass
class Family:
    """One metric: its HELP and TYPE lines, then one sample per label set."""

    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[tuple[Labels, str]] = field(default_factory=list)

    def add(self, value: str | float, **labels: str) -> None:
        self.samples.append((labels, value if isinstance(value, str) else _number(value)))

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.samples:
            yield f"{self.name}{_label_text(labels)} {value}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape_label(value)}"' for name, value in sorted(labels.items()))
    return "{" + inner + "}"


def render(families: Iterable[Family]) -> str:
    """The exposition text: every family, each line ending in a newline."""
    return "".join(f"{line}\n" for family in families for line in family.lines())


def collect(runtime: Runtime, now: datetime) -> list[Family]:
    """Read every metric from the database (a handful of grouped queries)."""
    with runtime.engine.connect() as conn:
        polls = reports.poll_counts(conn)
        message_counts = reports.message_counts(conn)
        costs = reports.cost_totals(conn)
        depth = reports.outbox_depth(conn)
        last_ok = reports.last_successful_polls(conn)
        errors = reports.error_counts(conn)
    configured = [store.settings.name for store in runtime.stores]
    return [
        _polls(polls),
        _orders_diffed(polls),
        _messages(message_counts),
        *_costs(costs),
        Family(
            "notifier_outbox_depth", "gauge", "Messages queued or being sent.", [({}, str(depth))]
        ),
        _since_last_poll(last_ok, configured, now),
        _api_errors(errors),
    ]


def _polls(polls: list[tuple[str, bool, int, int]]) -> Family:
    family = Family("notifier_polls_total", "counter", "Finished polls per store and outcome.")
    for store, ok, runs, _ in sorted(polls):
        family.add(runs, store=store, ok="true" if ok else "false")
    return family


def _orders_diffed(polls: list[tuple[str, bool, int, int]]) -> Family:
    family = Family(
        "notifier_orders_diffed_total", "counter", "Orders read and diffed by polls, per store."
    )
    per_store: dict[str, int] = {}
    for store, _, _, seen in polls:
        per_store[store] = per_store.get(store, 0) + seen
    for store, seen in sorted(per_store.items()):
        family.add(seen, store=store)
    return family


def _messages(counts: list[tuple[str, str | None, int]]) -> Family:
    family = Family(
        "notifier_messages",
        "gauge",
        'Messages in the outbox per status and template (template="" for free-text replies).',
    )
    for status, template, n in sorted(counts, key=lambda c: (c[0], c[1] or "")):
        family.add(n, status=status, template=template or "")
    return family


def _costs(totals: Mapping[str, tuple[Decimal, Decimal]]) -> list[Family]:
    estimated = Family(
        "notifier_cost_estimated", "gauge", "Estimated cost of every ledger row, per currency."
    )
    confirmed = Family(
        "notifier_cost_confirmed",
        "gauge",
        "Cost confirmed by WhatsApp status webhooks, per currency.",
    )
    for currency in sorted(totals):
        # Positional decimal text keeps the amount exact up to Prometheus's own float parse.
        estimated.add(plain_amount(totals[currency][0]), currency=currency)
        confirmed.add(plain_amount(totals[currency][1]), currency=currency)
    return [estimated, confirmed]


def _since_last_poll(
    last_ok: Mapping[str, datetime | None], configured: list[str], now: datetime
) -> Family:
    family = Family(
        "notifier_seconds_since_last_successful_poll",
        "gauge",
        "Seconds since each store's last successful poll (+Inf: never).",
    )
    for store in sorted(set(configured) | set(last_ok)):
        at = last_ok.get(store)
        family.add(math.inf if at is None else max(0.0, (now - at).total_seconds()), store=store)
    return family


def _api_errors(errors: list[tuple[int, int]]) -> Family:
    family = Family(
        "notifier_api_errors_total",
        "counter",
        "Messages whose last WhatsApp API error had this code.",
    )
    for code, n in sorted(errors):
        family.add(n, code=str(code))
    return family


def metrics_route(runtime: Runtime) -> BaseRoute:
    """``GET /metrics`` for ``runtime``; "now" comes from ``runtime.clock``."""

    async def metrics(_: Request) -> Response:
        families = await run_in_threadpool(collect, runtime, runtime.clock())
        return PlainTextResponse(render(families), media_type=CONTENT_TYPE)

    return Route("/metrics", metrics, methods=["GET"])
