"""The Starlette app: WhatsApp webhooks (verify, record, acknowledge) and health.

A POST is answered as soon as its raw bytes are stored (once: a body we already hold is not kept
again); a worker thread processes stored receipts (``Runtime.process_webhooks``), so Meta never
waits on Wix or on our own sends. Bodies are stored by one writer thread, every body waiting in
one transaction (group commit), so a burst costs one write lock and one commit, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import queue
import threading
from collections.abc import AsyncIterator, Callable, Sequence
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
from notifier.store.engine import begin_promptly
from notifier.webhooks import WriteTurns

log = structlog.get_logger("notifier.web")

# Meta batches up to 1,000 changes a POST; this is far above any real one. The body must be read
# before its signature can be checked, so without a cap anyone could make us buffer gigabytes.
MAX_WEBHOOK_BODY_BYTES = 32 * 1024 * 1024
# Bodies stored per transaction at most (a backlog is written in several, so none grows huge).
MAX_BODIES_PER_COMMIT = 500


class ReceiptNotStored(Exception):  # noqa: N818 - answered 503, so Meta retries the POST
    """The database did not take the body; nothing was stored."""


_Pending = tuple[bytes, "asyncio.Future[None]"]


class ReceiptWriter:
    """Group commit: one thread stores every body waiting, in one transaction, then answers them.

    ``store`` (awaited by the route) returns once the body is committed, or raises
    ``ReceiptNotStored``. When a batch fails, its bodies are retried one by one, so one body the
    database refuses fails only its own request.
    """

    def __init__(
        self, store: Callable[[Sequence[bytes]], None], on_stored: Callable[[], None]
    ) -> None:
        self._store_batch = store
        self._on_stored = on_stored
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="receipt-writer", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)
        self._thread.join(10)

    async def store(self, body: bytes) -> None:
        if self._stopped:
            raise ReceiptNotStored("the receipt writer has stopped")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((body, future))
        await future

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, stop = self._drain(first)
            self._write(batch)
            if stop:
                return

    def _drain(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch = [first]
        while len(batch) < MAX_BODIES_PER_COMMIT:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, batch: list[_Pending]) -> None:
        try:
            self._store_batch([body for body, _ in batch])
            failed: set[int] = set()
        except Exception:
            log.exception("webhook.store_failed", bodies=len(batch))
            failed = self._write_one_by_one(batch) if len(batch) > 1 else {0}
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], bool]]] = {}
        for index, (_, future) in enumerate(batch):
            by_loop.setdefault(future.get_loop(), []).append((future, index not in failed))
        for loop, outcomes in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, outcomes)
        if len(failed) < len(batch):
            self._on_stored()

    def _write_one_by_one(self, batch: list[_Pending]) -> set[int]:
        failed = set()
        for index, (body, _) in enumerate(batch):
            try:
                self._store_batch([body])
            except Exception:
                failed.add(index)
        return failed


def _settle(outcomes: list[tuple[asyncio.Future[None], bool]]) -> None:
    for future, stored in outcomes:
        if future.done():  # the client went away and its request was cancelled
            continue
        if stored:
            future.set_result(None)
        else:
            future.set_exception(ReceiptNotStored("the database refused the body"))


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
    turns = WriteTurns()
    worker = WebhookWorker(lambda: runtime.process_webhooks(turns))
    writer = ReceiptWriter(lambda bodies: _store(runtime, bodies, turns), worker.wake)
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
        try:
            await writer.store(body)
        except ReceiptNotStored:
            return PlainTextResponse("not stored, please retry", status_code=503)
        return PlainTextResponse("ok")

    async def healthz(_: Request) -> Response:
        problems = await run_in_threadpool(stale_stores, runtime, runtime.clock())
        status = 200 if not problems else 503
        return JSONResponse({"ok": not problems, "problems": problems}, status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        worker.start()
        writer.start()
        stop_background = start_background() if start_background else None
        try:
            yield
        finally:
            if stop_background:
                stop_background()
            writer.stop()
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


def _store(runtime: Runtime, bodies: Sequence[bytes], turns: WriteTurns) -> None:
    with turns.ingest(), begin_promptly(runtime.engine) as conn:
        inbox.store_receipts(conn, bodies, now=runtime.clock())


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
