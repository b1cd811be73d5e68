"""3. Dispatch: messages/s to the WhatsApp sandbox, outbox claim and ledger writes included.

Beside it, in the same run and against the same sandbox process: pywa's bare send loop (the peer)
and a bare httpx loop (the sandbox's own ceiling). Then the 80/s limit: achieved rate over a window
and the most sends in any 1-second window.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import time
from datetime import timedelta
from typing import Any

import httpx
from pywa.client import WhatsApp
from pywa.types.templates import TemplateLanguage
from sqlalchemy import Engine

from bench._common import (
    STORE,
    ChildServer,
    Row,
    child_server,
    emit,
    header,
    max_in_window,
    migrated,
    quiet_logs,
    sqlite_url,
    utc_now,
    work_dir,
)
from notifier.bootstrap import load_rate_card
from notifier.config import Secret, Settings, StoreSettings, WhatsAppSettings
from notifier.dispatch import Dispatcher
from notifier.ratelimit import SlidingWindow
from notifier.store import outbox, registry
from notifier.whatsapp import WhatsAppClient

TOKEN = "sandbox-wa-token"
PHONE_ID = "100000000000001"
WABA_ID = "200000000000002"
API_VERSION = "v24.0"
TEMPLATE = "order_payment_received"
PARAMS = ("Priya", "10023", "Rs. 1,299.00")
TARGET_PER_SECOND = 1300.0
LIMIT_PER_SECOND = 80


def recipient(index: int) -> str:
    return f"+9198{index:08d}"


def run(quick: bool) -> list[Row]:
    count = 600 if quick else 3000
    budget = 5.0 if quick else 20.0
    limited_seconds = 10.0 if quick else 60.0
    header(
        "dispatch",
        quick,
        f"up to {count:,} messages or {budget:g} s per loop, then {limited_seconds:g} s at 80/s",
    )
    folder = work_dir("dispatch")
    quiet_logs(folder)
    rows: list[Row] = []
    with child_server("whatsapp", log=folder / "whatsapp-sandbox.log") as sandbox:
        bare = bare_httpx_rate(sandbox.url, count, budget)
        peer = pywa_rate(sandbox.url, count, budget)
        engine = migrated(sqlite_url(folder))
        ours = dispatcher_rate(engine, sandbox.url, count, budget)
        one_sender = dispatcher_rate(engine, sandbox.url, count, budget, concurrent_sends=1)
        emit(rows, _row("sandbox alone (bare httpx loop)", bare, note="the server's ceiling"))
        emit(
            rows,
            Row(
                "dispatch",
                "ours: claim + send + ledger (SQLite)",
                ours,
                "msg/s",
                f">= {TARGET_PER_SECOND:,.0f}/s and >= pywa",
                ours >= TARGET_PER_SECOND and ours >= peer,
                peer,
                "pywa bare send loop",
            ),
        )
        emit(rows, _row("pywa bare send loop", peer))
        emit(rows, _row("ours, one sender (concurrent_sends = 1)", one_sender))
        rows.extend(limited(engine, sandbox, limited_seconds))
    return rows


def _row(metric: str, value: float, note: str = "") -> Row:
    return Row("dispatch", metric, value, "msg/s", note=note)


# -- the three loops ---------------------------------------------------------------------------


def bare_httpx_rate(base_url: str, count: int, budget: float) -> float:
    """The sandbox alone: prebuilt JSON posted in a tight loop on one keep-alive connection."""
    url = f"{base_url}/{API_VERSION}/{PHONE_ID}/messages"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    bodies = [json.dumps(_send_payload(recipient(i))).encode() for i in range(count + 50)]
    with httpx.Client(headers=headers) as client:
        for body in bodies[:50]:  # warm-up
            client.post(url, content=body).raise_for_status()
        loop = Budget(budget)
        for body in bodies[50:]:
            client.post(url, content=body).raise_for_status()
            if loop.tick():
                break
    return loop.rate()


def _send_payload(to: str) -> dict[str, Any]:
    parameters = [{"type": "text", "text": text} for text in PARAMS]
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": TEMPLATE,
            "language": {"code": "en"},
            "components": [{"type": "body", "parameters": parameters}],
        },
        "biz_opaque_callback_data": "1",
    }


def pywa_rate(base_url: str, count: int, budget: float) -> float:
    """pywa's plain loop: ``WhatsApp.send_template`` per message, pointed at the sandbox.

    pywa fixes its session's base URL to graph.facebook.com when it is built; we hand it our own
    ``httpx.Client`` and re-point that client at the sandbox afterwards (no pywa internals touched).
    """
    session = httpx.Client()
    wa = WhatsApp(phone_id=PHONE_ID, token=TOKEN, session=session, api_version=24.0)
    session.base_url = httpx.URL(f"{base_url}/{API_VERSION}")
    params = [{"type": "body", "parameters": [{"type": "text", "text": t} for t in PARAMS]}]

    def send(index: int) -> None:
        wa.send_template(
            to=recipient(index),
            name=TEMPLATE,
            language=TemplateLanguage.ENGLISH,
            params=params,
            tracker=str(index),
        )

    for index in range(50):
        send(index)
    loop = Budget(budget)
    for index in range(50, 50 + count):
        send(index)
        if loop.tick():
            break
    session.close()
    return loop.rate()


def dispatcher_rate(
    engine: Engine, base_url: str, count: int, budget: float, **overrides: Any
) -> float:
    """Ours: ``Dispatcher.dispatch_due`` until the queue is empty (claim, checks, send, ledger)."""
    client = _client(base_url)
    dispatcher = _dispatcher(engine, client, **overrides)
    with engine.begin() as conn:
        registry.replace_templates(conn, client.list_templates(), now=utc_now())
    offset = next(_batches) * 1_000_000
    queue_messages(engine, 50, offset=10_000_000 + offset)
    while dispatcher.dispatch_due().sent:  # warm-up
        pass
    queue_messages(engine, count, offset=offset)
    loop = Budget(budget)
    while True:
        result = dispatcher.dispatch_due()
        done = result.sent + result.failed + result.skipped + result.retried
        if result.failed + result.skipped + result.retried:
            print(f"  warning: {vars(result)}")
        if done == 0 or loop.tick(result.sent):
            break
    client.close()
    print(f"  ours sent {loop.count:,} in {loop.elapsed():.1f} s")
    return loop.rate()


_batches = itertools.count()


class Budget:
    """Counts work and says when the time budget is spent (benchmarks are bounded in time)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.count = 0
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def tick(self, done: int = 1) -> bool:
        self.count += done
        return self.elapsed() >= self.seconds

    def rate(self) -> float:
        return self.count / self.elapsed()


def _client(base_url: str) -> WhatsAppClient:
    return WhatsAppClient(
        base_url=base_url,
        api_version=API_VERSION,
        phone_number_id=PHONE_ID,
        waba_id=WABA_ID,
        access_token=TOKEN,
    )


def _dispatcher(engine: Engine, client: WhatsAppClient, **overrides: Any) -> Dispatcher:
    store = StoreSettings(name=STORE, site_id="bench", api_key=Secret("bench"))
    settings = Settings(
        stores=(store,),
        whatsapp=WhatsAppSettings(
            phone_number_id=PHONE_ID,
            waba_id=WABA_ID,
            access_token=Secret(TOKEN),
            app_secret=Secret("x"),
            verify_token=Secret("x"),
        ),
    )
    return Dispatcher(
        engine=engine,
        sender=client,
        rate_cards={STORE: load_rate_card(settings, store)},
        default_languages={STORE: "en"},
        clock=utc_now,
        rng=random.Random(7),
        recipient_spacing=timedelta(0),
        **{**throughput(0.0), **overrides},  # rate limiting off unless the caller sets it
    )


def queue_messages(engine: Engine, count: int, *, offset: int) -> None:
    now = utc_now()
    payload = {"name": TEMPLATE, "language": "en", "body": [[None, t] for t in PARAMS]}
    with engine.begin() as conn:
        for i in range(offset, offset + count):
            outbox.enqueue(
                conn,
                store=STORE,
                dedupe_key=f"bench:{i}",
                kind="template",
                payload={**payload, "button": None},
                now=now,
                recipient=recipient(i),
                order_id=f"order-{i}",
                order_number=str(10_000 + i),
                event="payment_status:PAID",
            )


# -- the 80/s limit ----------------------------------------------------------------------------


def limited(engine: Engine, sandbox: ChildServer, seconds: float) -> list[Row]:
    """The limit as the daemon can express it today, and what Meta would see."""
    rows: list[Row] = []
    client = _client(sandbox.url)
    limit = throughput(float(LIMIT_PER_SECOND))
    if limit:
        how = f"Dispatcher.{next(iter(limit))} = SlidingWindow(rate={LIMIT_PER_SECOND})"
        dispatcher = _dispatcher(engine, client, **limit)
        tick = 0.1  # the limiter paces the sends; the job only has to come round often
    else:
        how = "no global limit exists: emulated as batch_size=80 per 1 s dispatch tick"
        dispatcher = _dispatcher(engine, client, batch_size=LIMIT_PER_SECOND)
        tick = 1.0
    queue_messages(engine, int(LIMIT_PER_SECOND * seconds * 1.5) + 200, offset=20_000_000)
    start = time.time()
    _tick(dispatcher, start, seconds, tick)
    stamps = _sent_since(sandbox.url, start)
    client.close()
    in_run = [s for s in stamps if s < start + seconds]
    achieved = len(in_run) / seconds
    per_second = max_in_window(in_run, 1.0)
    per_100ms = max_in_window(in_run, 0.1)
    within = abs(achieved - LIMIT_PER_SECOND) <= 0.02 * LIMIT_PER_SECOND
    print(f"  80/s limit: {how}")
    emit(
        rows,
        Row(
            "dispatch",
            f"achieved rate over {seconds:g} s at limit 80/s",
            achieved,
            "msg/s",
            "within 2 % of 80",
            within,
            note=how,
        ),
    )
    emit(
        rows,
        Row(
            "dispatch",
            "max sends in any 1 s window",
            per_second,
            "msg",
            "<= 80",
            per_second <= LIMIT_PER_SECOND,
            higher_is_better=False,
        ),
    )
    emit(
        rows,
        Row(
            "dispatch",
            "max sends in any 100 ms window",
            per_100ms,
            "msg",
            higher_is_better=False,
            note="a smooth 80/s would be 8" + ("" if limit else "; a batch leaves at full speed"),
        ),
    )
    return rows


def throughput(rate: float) -> dict[str, Any]:
    """The Dispatcher keyword that sets the global send rate (0 = unlimited), if it has one."""
    for item in dataclasses.fields(Dispatcher):
        if "SlidingWindow" in str(item.type):
            return {item.name: SlidingWindow(rate=rate)}
        if any(word in item.name for word in ("per_second", "rate_limit")):
            return {item.name: rate}
    return {}


def _tick(dispatcher: Dispatcher, start: float, seconds: float, interval: float) -> None:
    """The scheduler's dispatch job on a fixed grid (as APScheduler keeps it), never overlapping."""
    tick = 0
    while True:
        due = start + tick * interval
        if due >= start + seconds:
            return
        time.sleep(max(0.0, due - time.time()))
        dispatcher.dispatch_due()
        tick = max(tick + 1, int((time.time() - start) / interval) + 1)


def _sent_since(base_url: str, since: float) -> list[float]:
    response = httpx.get(f"{base_url}/_bench/sent", params={"since": since}, timeout=30)
    response.raise_for_status()
    stamps: list[float] = response.json()
    return stamps
