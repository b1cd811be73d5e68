"""The webhook endpoint over HTTP: signature checks (BR-16), verification, durable dedupe (BR-15).

Also home of ``LiveDaemon``: the real daemon (``daemon.prepare`` + ``daemon_app`` role "web")
served on loopback between the Wix and WhatsApp sandboxes, shared by the lookup and webhook tests.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, RowMapping, Table, func, select

from notifier.bootstrap import Runtime
from notifier.config import LookupSettings, Settings
from notifier.daemon import daemon_app, prepare
from notifier.domain import RenderedTemplate, TemplateParam
from notifier.sandbox import whatsapp_templates as meta
from notifier.sandbox.harness import (
    VERIFY_TOKEN,
    Sandboxes,
    free_port,
    sandbox_settings,
    start_sandboxes,
)
from notifier.sandbox.whatsapp_server import SentMessage, WhatsAppSandbox
from notifier.sandbox.wix_seed import seed_1023
from notifier.sandbox.wix_server import WixSandbox
from notifier.serving import RunningServer, serve_in_thread
from notifier.signatures import sign
from notifier.store import outbox
from notifier.store.tables import inbound_messages, messages, webhook_receipts
from notifier.web import MAX_WEBHOOK_BODY_BYTES
from tests.conftest import Clock

DATA = Path(__file__).parent / "data" / "whatsapp"
WEBHOOK_PATH = "/webhooks/whatsapp"
OWNER = "919820000001"
NOA = "4915123456789"
SEED_GUID = "a1b2c3d4-5e6f-4a1b-8c2d-0123456789ab"
NOA_ORDER_ID = "b2c3d4e5-6f70-4b2c-9d3e-1234567890bc"
SEED_REPLY = (
    "Hi Priya, here is your order update:\n"
    "Order #1023\n"
    "Payment: Paid\n"
    "Fulfilment: Preparing for dispatch\n"
    "Item: Classic Cotton Kurta (x2)\n"
    "Total: Rs. 1,299.00"
)
NOA_REPLY = SEED_REPLY.replace("Priya", "Noa").replace("#1023", "#10126")
BR16_SECRET = "test_app_secret"  # the field case's published test secret
BR16_SIGNATURE = "sha256=de95c12917d2b31ef4d1e82685607d094abb9615d68a697113fb654fa2ede4fe"
BR16_TEXT = "Café 😀 order #10126 / noa@example.com"
BR16_SENT_AT = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)  # the body's timestamp 1735725600


def br16_body() -> bytes:
    return (DATA / "br16-inbound-text-body.json").read_bytes()


def order_10126() -> dict[str, Any]:
    """The seed order cloned as #10126, bought by Noa with the German number 4915123456789."""
    order = copy.deepcopy(seed_1023())
    order["id"] = NOA_ORDER_ID
    order["number"] = "10126"
    order["buyerInfo"]["contactDetails"] = {
        "firstName": "Noa",
        "lastName": "Becker",
        "phone": "+49 151 23456789",
    }
    return order


def sent_status_bodies(whatsapp: WhatsAppSandbox, prefix: str, count: int) -> list[bytes]:
    """``count`` different webhook bodies as Meta sends them, each one "sent" status of
    ``{prefix}.{i}``."""
    return [
        meta.meta_json(
            meta.envelope(
                whatsapp.waba_id,
                whatsapp.phone_number_id,
                {"statuses": [{"id": f"{prefix}.{i}", "status": "sent"}]},
                "15550001111",
            )
        )
        for i in range(count)
    ]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` every 10 ms; fail the test if it is still false after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


@dataclass
class LiveDaemon:
    """The daemon serving on ``port`` with the sandboxes; tests drive the clock by hand."""

    engine: Engine
    clock: Clock
    boxes: Sandboxes
    settings: Settings
    port: int
    runtime: Runtime
    server: RunningServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    @property
    def whatsapp(self) -> WhatsAppSandbox:
        return self.boxes.whatsapp

    @property
    def wix(self) -> WixSandbox:
        return self.boxes.wix

    @property
    def store(self) -> str:
        return self.settings.stores[0].name

    def restart(self) -> None:
        """A daemon restart: the old app and runtime stop, new ones start on the same DB."""
        self.server.stop()
        self.runtime.close()
        self.runtime = prepare(self.settings, engine=self.engine, clock=self.clock)
        self.server = serve_in_thread(daemon_app(self.runtime, "web"), port=self.port)

    def stop(self) -> None:
        self.server.stop()
        self.boxes.stop()
        self.runtime.close()

    def ask(self, wa_id: str, text: str, **kwargs: Any) -> list[SentMessage]:
        """Post a signed inbound text, wait until everything settles, return the new sends to it."""
        before = len(self.sent_to(wa_id))
        self.whatsapp.post_inbound_text(wa_id, text, **kwargs)
        self.settle()
        return self.sent_to(wa_id)[before:]

    def sent_to(self, wa_id: str) -> list[SentMessage]:
        return [m for m in self.whatsapp.sent_messages() if m.to == f"+{wa_id}"]

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until every receipt is processed and the sandbox has no webhook left to post."""
        deadline = time.monotonic() + timeout
        previous: tuple[int, int] | None = None
        while True:
            idle = self.whatsapp.wait_for_webhooks(max(0.0, deadline - time.monotonic()))
            state = (self.count(webhook_receipts), self.unprocessed())
            if idle and state[1] == 0 and state == previous:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the daemon did not settle: {state[1]} receipts unprocessed")
            previous = state
            time.sleep(0.03)

    def unprocessed(self) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).where(webhook_receipts.c.processed_at.is_(None))
            return int(conn.execute(query).scalar_one())

    def count(self, table: Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def rows(self, table: Table) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(table)).mappings())

    def message(self, **where: Any) -> RowMapping:
        """The single outbox row matching ``where`` (column=value)."""
        found = [r for r in self.rows(messages) if all(r[k] == v for k, v in where.items())]
        assert len(found) == 1, found
        return found[0]

    def queue_template(self, wa_id: str, key: str) -> int:
        """Queue a proactive order_status_update template to ``wa_id`` (as a poll would)."""
        params = ("Noa", "10126", "Paid", "Preparing for dispatch")
        rendered = RenderedTemplate(
            "order_status_update", "en", tuple(TemplateParam(p) for p in params)
        )
        with self.engine.begin() as conn:
            message_id = outbox.enqueue(
                conn,
                store=self.store,
                dedupe_key=key,
                kind="template",
                payload=outbox.template_payload(rendered),
                now=self.clock(),
                recipient=f"+{wa_id}",
                order_id=NOA_ORDER_ID,
                order_number="10126",
                event=key,
            )
        assert message_id is not None
        return message_id

    def post_signed(self, body: dict[str, Any] | bytes) -> int:
        """POST ``body`` (a ``messages`` change value, or raw bytes) signed like Meta, straight to
        the daemon: unlike the sandbox's ``post_inbound`` it opens no window on the sandbox side."""
        if isinstance(body, dict):
            envelope = meta.envelope(
                self.whatsapp.waba_id, self.whatsapp.phone_number_id, body, "15550001111"
            )
            body = meta.meta_json(envelope)
        headers = {"X-Hub-Signature-256": sign(self.whatsapp.app_secret, body)}
        return httpx.post(self.url, content=body, headers=headers, timeout=5).status_code


def _start_sandboxes(clock: Clock, webhook_url: str, app_secret: str | None) -> Sandboxes:
    if app_secret is None:
        return start_sandboxes(clock, webhook_url=webhook_url)
    wix = WixSandbox(clock=clock)
    whatsapp = WhatsAppSandbox(clock=clock, webhook_url=webhook_url, app_secret=app_secret)
    return Sandboxes(wix, whatsapp, serve_in_thread(wix.app), serve_in_thread(whatsapp.app))


@contextmanager
def live_daemon(
    engine: Engine,
    clock: Clock,
    *,
    app_secret: str | None = None,
    lookup: LookupSettings | None = None,
    **store_overrides: Any,
) -> Iterator[LiveDaemon]:
    """Sandboxes seeded with orders 1023 (Priya) and 10126 (Noa), and the daemon between them."""
    port = free_port()
    boxes = _start_sandboxes(clock, f"http://127.0.0.1:{port}{WEBHOOK_PATH}", app_secret)
    boxes.wix.add_orders([seed_1023(), order_10126()])
    url = engine.url.render_as_string(hide_password=False)
    settings = sandbox_settings(boxes, url, web_port=port, **store_overrides)
    if lookup is not None:
        settings = replace(settings, lookup=lookup)
    runtime = prepare(settings, engine=engine, clock=clock)
    server = serve_in_thread(daemon_app(runtime, "web"), port=port)
    daemon = LiveDaemon(engine, clock, boxes, settings, port, runtime, server)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def br16_daemon(engine: Engine, clock: Clock) -> Iterator[LiveDaemon]:
    """The daemon with the BR-16 app secret, its clock a minute after the BR-16 message."""
    clock.now = datetime(2025, 1, 1, 10, 1, tzinfo=UTC)
    with live_daemon(engine, clock, app_secret=BR16_SECRET) as daemon:
        daemon.whatsapp.open_window(NOA, BR16_SENT_AT)
        yield daemon


@pytest.fixture
def daemon(engine: Engine, clock: Clock) -> Iterator[LiveDaemon]:
    with live_daemon(engine, clock) as running:
        yield running


# --- BR-16: the signature covers the exact raw bytes -------------------------------------------


def test_br16_fixture_is_the_published_475_byte_body() -> None:
    """The stored body is byte-for-byte the case's: 475 bytes that hash to the published header."""
    body = br16_body()
    assert len(body) == 475
    assert sign(BR16_SECRET, body) == BR16_SIGNATURE


def test_br16_meta_escaped_body_is_accepted_and_processed(br16_daemon: LiveDaemon) -> None:
    """The exact Meta-escaped body with its header gets 200, and the text is stored decoded."""
    status = br16_daemon.whatsapp.post_raw(br16_body(), BR16_SIGNATURE)
    br16_daemon.settle()
    assert status == 200
    inbound = br16_daemon.rows(inbound_messages)
    assert [(r["id"], r["from_wa_id"], r["text"]) for r in inbound] == [
        ("wamid.TEST.IN.0001", NOA, BR16_TEXT)
    ]
    assert [m.text for m in br16_daemon.sent_to(NOA)] == [NOA_REPLY]


def test_br16_altered_body_is_refused_and_nothing_stored(br16_daemon: LiveDaemon) -> None:
    """10126 → 10127 under the original header: 403 (or 401) and no receipt, no inbound row."""
    altered = br16_body().replace(b"10126", b"10127")
    assert len(altered) == 475
    status = br16_daemon.whatsapp.post_raw(altered, BR16_SIGNATURE)
    assert status in (401, 403)
    assert br16_daemon.count(webhook_receipts) == 0
    assert br16_daemon.count(inbound_messages) == 0
    assert br16_daemon.whatsapp.sent_messages() == []


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + BR16_SIGNATURE.removeprefix("sha256="),
        "sha256=" + "0" * 64,
        BR16_SIGNATURE[:-1],
        sign("sandbox-app-secret", br16_body()),
        sign(BR16_SECRET, br16_body() + b"\n"),
        "sha256=ünïcödé",
    ],
    ids=[
        "none",
        "empty",
        "no-digest",
        "sha1",
        "zeros",
        "truncated",
        "other-secret",
        "other-body",
        "non-ascii",
    ],
)
def test_br16_missing_or_wrong_signature_is_refused_and_nothing_stored(
    br16_daemon: LiveDaemon, header: str | None
) -> None:
    """No header, or any header that does not sign these bytes: 401/403 and nothing stored."""
    raw_header = None if header is None else header.encode("utf-8")
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=5) as client:
        request = client.build_request(
            "POST", br16_daemon.url, content=br16_body(), headers=headers
        )
        if raw_header is not None:
            request.headers["X-Hub-Signature-256"] = raw_header.decode("latin-1")
        response = client.send(request)
    assert response.status_code in (401, 403)
    assert br16_daemon.count(webhook_receipts) == 0
    assert br16_daemon.count(inbound_messages) == 0


def test_br16_verification_echoes_the_challenge(br16_daemon: LiveDaemon) -> None:
    """GET with the configured token and challenge 1158201444 → 200 with exactly that body."""
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    response = httpx.get(br16_daemon.url, params=params, timeout=5)
    assert response.status_code == 200
    assert response.content == b"1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong-token", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.challenge": "1158201444"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN + "x", "hub.challenge": "1"},
    ],
    ids=["wrong-token", "no-token", "wrong-mode", "token-prefix"],
)
def test_br16_verification_with_wrong_token_is_refused(
    br16_daemon: LiveDaemon, params: dict[str, str]
) -> None:
    """A wrong or missing token (or mode) gets 403 and the challenge is not echoed."""
    response = httpx.get(br16_daemon.url, params=params, timeout=5)
    assert response.status_code == 403
    assert b"1158201444" not in response.content


# --- BR-15: a redelivered inbound message gets one reply ---------------------------------------


def _assert_one_reply_and_one_inbound(daemon: LiveDaemon) -> None:
    assert [m.text for m in daemon.sent_to(NOA)] == [NOA_REPLY]
    assert daemon.count(inbound_messages) == 1
    replies = [r for r in daemon.rows(messages) if r["kind"] == "text"]
    assert len(replies) == 1
    assert _receipts_of(daemon, br16_body()) == 1  # deduplicated before the 200, not after


def _receipts_of(daemon: LiveDaemon, body: bytes) -> int:
    return sum(1 for r in daemon.rows(webhook_receipts) if r["body"] == body.decode())


def test_br15_sequential_redelivery_gets_one_reply(br16_daemon: LiveDaemon) -> None:
    """The same signed body twice, 50 ms apart: both 200, one inbound row, one reply sent."""
    first = br16_daemon.whatsapp.post_raw(br16_body(), BR16_SIGNATURE)
    time.sleep(0.05)
    second = br16_daemon.whatsapp.post_raw(br16_body(), BR16_SIGNATURE)
    br16_daemon.settle()
    assert (first, second) == (200, 200)
    _assert_one_reply_and_one_inbound(br16_daemon)


def test_br15_concurrent_redelivery_gets_one_reply(br16_daemon: LiveDaemon) -> None:
    """The same signed body from two threads at once: both 200, one inbound row, one reply."""
    barrier = threading.Barrier(2)
    statuses: list[int | None] = []

    def post() -> None:
        barrier.wait()
        statuses.append(br16_daemon.whatsapp.post_raw(br16_body(), BR16_SIGNATURE))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    br16_daemon.settle()
    assert statuses == [200, 200]
    _assert_one_reply_and_one_inbound(br16_daemon)


def test_br15_redelivery_after_restart_gets_no_second_reply(br16_daemon: LiveDaemon) -> None:
    """Posted, answered, daemon restarted (new runtime and app, same DB), posted again: still one."""
    assert br16_daemon.whatsapp.post_raw(br16_body(), BR16_SIGNATURE) == 200
    br16_daemon.settle()
    br16_daemon.restart()
    assert br16_daemon.whatsapp.post_raw(br16_body(), BR16_SIGNATURE) == 200
    br16_daemon.settle()
    _assert_one_reply_and_one_inbound(br16_daemon)


# --- the endpoint answers fast and processes asynchronously -------------------------------------


def test_post_is_answered_while_the_lookup_is_still_waiting_on_wix(daemon: LiveDaemon) -> None:
    """With Wix hanging, the webhook POST still gets 200 at once; the reply follows later."""
    daemon.wix.hang_next(1)
    try:
        started = time.monotonic()
        daemon.whatsapp.post_inbound_text(OWNER, "1023")
        answered_in = time.monotonic() - started
        wait_until(lambda: daemon.wix.request_count > 0, what="the lookup to reach Wix")
        assert daemon.sent_to(OWNER) == []
    finally:
        daemon.wix.release()
    daemon.settle()
    assert answered_in < 1.0
    assert [m.text for m in daemon.sent_to(OWNER)] == [SEED_REPLY]


def test_bodies_posted_at_once_are_each_stored_before_their_200(daemon: LiveDaemon) -> None:
    """Forty different bodies from twenty threads (committed together): all 200, all stored."""
    daemon.whatsapp.webhook_url = None  # only these posts arrive
    bodies = sent_status_bodies(daemon.whatsapp, "wamid.UNKNOWN", 40)
    answers: list[int] = []
    barrier = threading.Barrier(20)

    def post(mine: list[bytes]) -> None:
        barrier.wait()
        answers.extend(daemon.post_signed(body) for body in mine)

    threads = [threading.Thread(target=post, args=(bodies[i::20],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [200] * 40
    stored = {r["body"] for r in daemon.rows(webhook_receipts)}
    assert stored == {body.decode() for body in bodies}
    daemon.settle()
    assert daemon.unprocessed() == 0


def test_post_the_database_cannot_store_gets_503_and_its_retry_is_kept(
    daemon: LiveDaemon,
) -> None:
    """While the receipts table cannot be written the POST is 503 (Meta retries); the retry is
    200 and stored once, so nothing is lost."""
    body = br16_body()
    with daemon.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE webhook_receipts RENAME TO webhook_receipts_away")
    try:
        assert daemon.post_signed(body) == 503
    finally:
        with daemon.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE webhook_receipts_away RENAME TO webhook_receipts")
    assert daemon.post_signed(body) == 200
    assert _receipts_of(daemon, body) == 1


def test_healthz_reports_a_store_that_never_polled(daemon: LiveDaemon) -> None:
    """/healthz is 503 naming the store before its first poll, 200 once a poll succeeded."""
    health = f"http://127.0.0.1:{daemon.port}/healthz"
    before = httpx.get(health, timeout=5)
    assert before.status_code == 503
    assert "never" in before.json()["problems"][0]
    assert all(result.ok for result in daemon.runtime.sync_all())
    after = httpx.get(health, timeout=5)
    assert (after.status_code, after.json()) == (200, {"ok": True, "problems": []})


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_is_refused_unread_and_nothing_stored(
    daemon: LiveDaemon, chunked: bool
) -> None:
    """A body over MAX_WEBHOOK_BODY_BYTES gets 413 (not a 5xx), whatever its signature."""
    body = b" " * (MAX_WEBHOOK_BODY_BYTES + 1)
    headers = {"X-Hub-Signature-256": sign(daemon.whatsapp.app_secret, body)}
    content: bytes | Iterator[bytes] = (
        (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    )
    response = httpx.post(daemon.url, content=content, headers=headers, timeout=30)
    assert response.status_code == 413
    assert daemon.count(webhook_receipts) == 0
    assert daemon.post_signed(br16_body()) == 200  # the server still answers afterwards


def test_signed_body_with_a_raw_nul_byte_is_stored_not_a_500(daemon: LiveDaemon) -> None:
    """A raw NUL (never valid JSON, refused by PostgreSQL text) is kept as U+FFFD and answered 200."""
    assert daemon.post_signed(b'{"object":"whatsapp_business_account"\x00,"entry":[]}') == 200
    daemon.settle()
    [receipt] = daemon.rows(webhook_receipts)
    assert "\x00" not in receipt["body"]
    assert "\N{REPLACEMENT CHARACTER}" in receipt["body"]
    assert receipt["processed_at"] is not None
