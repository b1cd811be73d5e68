"""The Starlette app: WhatsApp webhooks (verify, record, acknowledge) and health.

A POST is answered as soon as its raw bytes are stored; a worker thread processes stored receipts
(``Runtime.process_webhooks``), so Meta never waits on Wix or on our own sends.
"""

from __future__ import annotations

import contextlib
import hmac
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from notifier import signatures
from notifier.bootstrap import Runtime
from notifier.metrics import metrics_route
from notifier.ops import ops_routes
from notifier.store import inbox, orders

log = structlog.get_logger("notifier.web")

# Meta batches up to 1,000 changes a POST; this is far above any real one. The body must be read
# before its signature can be checked, so without a cap anyone could make us buffer gigabytes.
MAX_WEBHOOK_BODY_BYTES = 32 * 1024 * 1024


class WebhookWorker:
    """Processes stored receipts in a background thread, woken by each POST (and every second)."""

    def __init__(self, process: Callable[[], int]) -> None:
        self._process = process
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                while self._process() and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("webhook_worker.crashed")


def create_app(
    runtime: Runtime,
    *,
    start_background: Callable[[], Callable[[], None]] | None = None,
) -> Starlette:
    """The web app; ``start_background`` starts the scheduler (role all/poller) and returns its stopper."""
    worker = WebhookWorker(runtime.process_webhooks)
    settings = runtime.settings

    async def verify(request: Request) -> Response:
        params = request.query_params
        expected = settings.whatsapp.verify_token.reveal()
        if (
            params.get("hub.mode") == "subscribe"
            and expected
            and signatures_equal(params.get("hub.verify_token"), expected)
        ):
            return PlainTextResponse(params.get("hub.challenge", ""))
        return PlainTextResponse("forbidden", status_code=403)

    async def receive(request: Request) -> Response:
        body = await read_body(request, MAX_WEBHOOK_BODY_BYTES)
        if body is None:
            log.warning("webhook.too_large", limit=MAX_WEBHOOK_BODY_BYTES)
            return PlainTextResponse("payload too large", status_code=413)
        header = request.headers.get("x-hub-signature-256")
        if not signatures.is_valid(settings.whatsapp.app_secret.reveal(), body, header):
            log.warning("webhook.bad_signature", has_header=header is not None)
            return PlainTextResponse("invalid signature", status_code=403 if header else 401)
        await run_in_threadpool(_store, runtime, body)
        worker.wake()
        return PlainTextResponse("ok")

    async def healthz(_: Request) -> Response:
        problems = await run_in_threadpool(stale_stores, runtime, runtime.clock())
        status = 200 if not problems else 503
        return JSONResponse({"ok": not problems, "problems": problems}, status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        worker.start()
        stop_background = start_background() if start_background else None
        try:
            yield
        finally:
            if stop_background:
                stop_background()
            worker.stop()

    return Starlette(
        routes=[
            Route("/webhooks/whatsapp", verify, methods=["GET"]),
            Route("/webhooks/whatsapp", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            *ops_routes(runtime),
            metrics_route(runtime),
        ],
        lifespan=lifespan,
    )


async def read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None (read no further) once it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def signatures_equal(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _store(runtime: Runtime, body: bytes) -> None:
    # PostgreSQL text cannot hold NUL, and valid JSON never has a raw one (it must be escaped):
    # such a body is junk either way, so keep it with U+FFFD instead of answering 500 forever.
    storable = body.replace(b"\x00", "\N{REPLACEMENT CHARACTER}".encode())
    with runtime.engine.begin() as conn:
        inbox.store_receipt(conn, storable, now=runtime.clock())


def stale_stores(runtime: Runtime, now: datetime) -> list[str]:
    """Stores whose last successful poll is older than three poll intervals."""
    problems = []
    with runtime.engine.connect() as conn:
        for store in runtime.stores:
            state = orders.get_store_state(conn, store.settings.name)
            limit = timedelta(seconds=3 * store.settings.poll_interval_seconds)
            last_ok = state.last_poll_ok_at if state else None
            if last_ok is None or now - last_ok > limit:
                seen = last_ok.isoformat() if last_ok else "never"
                problems.append(f"store {store.settings.name!r}: last successful poll {seen}")
    return problems
