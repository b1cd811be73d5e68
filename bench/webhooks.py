"""4. Webhook ingest at 500 requests/s: our daemon (role "web") beside a pywa + FastAPI receiver.

Signed status webhooks (sent, delivered, read: 3x the outbound messages) for messages already in
our outbox, plus inbound texts, from the same open-loop generator at the same rate, same run. Each
server runs in its own process under uvicorn. Ours stores every body (once: a repeat is dropped)
before the 200, bodies arriving together in one transaction, and processes them in a worker thread
(statuses applied, inbound answered); the peer stores nothing.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select

from bench._common import (
    STORE,
    Row,
    child_server,
    emit,
    header,
    migrated,
    sqlite_url,
    utc_now,
    work_dir,
)
from bench._load import LoadResult, http_post, run_load
from bench._servers import WEBHOOK_PATH
from notifier.sandbox import whatsapp_templates as meta
from notifier.signatures import sign
from notifier.store.tables import ledger, messages, webhook_receipts

APP_SECRET = "sandbox-app-secret"
PHONE_ID = "100000000000001"
WABA_ID = "200000000000002"
RATE = 500.0
LIGHT_RATE = 100.0
INBOUND_EVERY = 10  # one request in ten is an inbound message, the rest are statuses
P50_TARGET_MS = 3.0
P99_TARGET_MS = 10.0


def run(quick: bool) -> list[Row]:
    seconds = 5.0 if quick else 20.0
    # A light step first: on a busy machine 500/s saturates both servers and hides the difference.
    steps = [(LIGHT_RATE, 3.0 if quick else 5.0), (RATE, seconds)]
    sizes = [int(rate * (length + 1)) for rate, length in steps]
    described = ", then ".join(f"{r:g} req/s for {t:g} s (+1 s warm-up)" for r, t in steps)
    header("webhooks", quick, f"{described}; {sum(sizes):,} requests per server")
    folder = work_dir("webhooks")
    url = sqlite_url(folder)
    engine = migrated(url)
    message_count = sum(sizes) // 3 + 1
    seed_outbox(engine, message_count)
    requests = build_requests(sum(sizes), message_count)
    batches = [requests[: sizes[0]], requests[sizes[0] :]]
    with child_server(
        "daemon-web", "--db", url, "--log", str(folder / "daemon.log"), log=folder / "daemon.out"
    ) as daemon:
        started_cpu = cpu_seconds(daemon.process.pid)
        ours = [
            run_load(daemon.port, b, r, int(r)) for b, (r, _) in zip(batches, steps, strict=True)
        ]
        ours_cpu = cpu_seconds(daemon.process.pid) - started_cpu
        drained = wait_for_drain(engine, timeout=30)
    with child_server("pywa", log=folder / "pywa.out") as peer_server:
        started_cpu = cpu_seconds(peer_server.process.pid)
        peer = [
            run_load(peer_server.port, b, r, int(r))
            for b, (r, _) in zip(batches, steps, strict=True)
        ]
        peer_cpu = cpu_seconds(peer_server.process.pid) - started_cpu
    stored = count(engine, webhook_receipts)
    engine.dispose()
    print(
        f"  ours: {stored:,} bodies stored, worker backlog drained {drained} after the load; "
        f"achieved {ours[1].achieved_rate:.0f} req/s, peer {peer[1].achieved_rate:.0f} req/s"
    )
    # CPU per request is steadier than latency on a shared machine (ours includes the worker).
    total = sum(sizes)
    print(
        f"  server CPU per request during the load: ours {ours_cpu / total * 1000:.2f} ms, "
        f"peer {peer_cpu / total * 1000:.2f} ms"
    )
    rows = rows_for(ours[0], peer[0], LIGHT_RATE, targets=False)
    return rows + rows_for(ours[1], peer[1], RATE, targets=True)


def rows_for(ours: LoadResult, peer: LoadResult, rate: float, *, targets: bool) -> list[Row]:
    rows: list[Row] = []
    for pct, target in ((50, P50_TARGET_MS), (99, P99_TARGET_MS)):
        mine, theirs = ours.p(pct) * 1000, peer.p(pct) * 1000
        emit(
            rows,
            Row(
                "webhooks",
                f"p{pct} latency at {rate:g} req/s",
                mine,
                "ms",
                f"<= {target:g} ms" if targets else "",
                mine <= target if targets else None,
                theirs,
                "pywa + FastAPI (stores nothing)",
                higher_is_better=False,
                note=(
                    f"from schedule: ours {ours.p_from_schedule(pct) * 1000:.1f} ms, "
                    f"peer {peer.p_from_schedule(pct) * 1000:.1f} ms"
                ),
            ),
        )
    emit(
        rows,
        Row(
            "webhooks",
            f"errors at {rate:g} req/s (non-200 or no answer in 10 s)",
            ours.errors,
            "req",
            "0" if targets else "",
            ours.errors == 0 if targets else None,
            peer.errors,
            "pywa + FastAPI",
            higher_is_better=False,
        ),
    )
    return rows


def seed_outbox(engine: Engine, count: int) -> None:
    """Messages the dispatcher has handed to WhatsApp (accepted, with a wamid and a ledger row)."""
    now = utc_now() - timedelta(minutes=5)
    payload: dict[str, Any] = {
        "name": "order_payment_received",
        "language": "en",
        "body": [],
        "button": None,
    }
    message_rows = [
        {
            "id": i + 1,
            "store": STORE,
            "order_id": f"order-{i}",
            "order_number": str(10_000 + i),
            "dedupe_key": f"bench:{i}",
            "kind": "template",
            "event": "payment_status:PAID",
            "urgency": "normal",
            "template": "order_payment_received",
            "language": "en",
            "payload": payload,
            "recipient": f"+9198{i:08d}",
            "status": "accepted",
            "attempts": 1,
            "wamid": wamid(i),
            "created_at": now,
            "updated_at": now,
            "sent_at": now,
        }
        for i in range(count)
    ]
    ledger_rows = [
        {
            "message_id": i + 1,
            "store": STORE,
            "order_id": f"order-{i}",
            "template": "order_payment_received",
            "category": "utility",
            "market": "IN",
            "status": "accepted",
            "priced_on": now.date(),
            "created_at": now,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(messages), message_rows)
        conn.execute(insert(ledger), ledger_rows)


def wamid(index: int) -> str:
    return f"wamid.BENCH.{index}"


def build_requests(total: int, message_count: int) -> list[bytes]:
    """Signed POSTs: statuses sent/delivered/read per message, one inbound text in ten."""
    now = utc_now()
    requests, status_index, inbound_index = [], 0, 0
    for index in range(total):
        if index % INBOUND_EVERY == INBOUND_EVERY - 1:
            value = inbound_value(inbound_index, now)
            inbound_index += 1
        else:
            value = status_value(status_index % (3 * message_count), now)
            status_index += 1
        body = meta.meta_json(meta.envelope(WABA_ID, PHONE_ID, value, "15550001111"))
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(APP_SECRET, body),
        }
        requests.append(http_post(WEBHOOK_PATH, body, headers))
    return requests


def status_value(index: int, now: Any) -> dict[str, Any]:
    message, step = divmod(index, 3)
    target = meta.StatusTarget(wamid(message), f"9198{message:08d}", str(message + 1))
    steps = ["sent", "delivered", "read"]
    statuses = meta.progress_statuses(target, meta.pricing("utility", False), steps, now)
    return {"statuses": [statuses[step]]}


def inbound_value(index: int, now: Any) -> dict[str, Any]:
    wa_id = f"9197{index:08d}"
    message = meta.inbound_text_message(wa_id, f"wamid.IN.BENCH.{index}", now, "hi")
    return {"contacts": meta.contacts_for([message]), "messages": [message]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc), 0.0 where that is unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def wait_for_drain(engine: Engine, *, timeout: float) -> str:
    """How long the worker needed, after the load stopped, to process every stored body."""
    start = time.monotonic()
    pending = webhook_receipts.c.processed_at.is_(None)
    while time.monotonic() - start < timeout:
        if count(engine, webhook_receipts, pending) == 0:
            return f"in {time.monotonic() - start:.1f} s"
        time.sleep(0.5)
    left = count(engine, webhook_receipts, pending)
    return f"NOT within {timeout:g} s ({left:,} bodies still unprocessed)"
