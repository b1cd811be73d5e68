"""The log of a whole demo-like run (sync, dispatch, status webhooks, lookups, ops page, failures)
is JSON on every line, even stdlib loggers', and holds no secret and no unmasked phone number.

The run is the real daemon (``prepare`` + ``daemon_app``) against the sandboxes on loopback, with
logging configured as ``notifier run`` does when standard error is not a terminal.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from notifier import logs, phones
from notifier.config import Secret
from notifier.daemon import daemon_app, prepare
from notifier.domain import Tracking
from notifier.sandbox.harness import VERIFY_TOKEN, Sandboxes, sandbox_settings, start_sandboxes
from notifier.serving import serve_in_thread
from tests.conftest import Clock
from tests.test_dispatch import wait_for
from tests.test_sync import drain, india_phone, order_guid, wix_order

OPS_TOKEN = "ops-token-0123456789abcdef"
STRANGER = "+91 98111 22233"
ORDERS = (10401, 10402, 10403, 10404)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged during the test, configured like ``notifier run`` off a terminal."""
    stream = io.StringIO()
    logs.configure(stream=stream, json=True)
    yield stream
    logs.configure()


def demo_like_run(boxes: Sandboxes, engine: Engine, clock: Clock) -> None:
    """Baseline, payments, a shipment, an undeliverable number, lookups, the ops page, a bad POST."""
    settings = sandbox_settings(boxes, str(engine.url))
    settings = dataclasses.replace(
        settings, web=dataclasses.replace(settings.web, ops_token=Secret(OPS_TOKEN))
    )
    runtime = prepare(settings, engine=engine, clock=clock)
    server = serve_in_thread(daemon_app(runtime, "web"))
    boxes.whatsapp.webhook_url = f"{server.url}/webhooks/whatsapp"
    try:
        boxes.wix.add_orders([wix_order(n, created=clock()) for n in ORDERS])
        runtime.sync_all()
        clock.advance(seconds=30)
        for number in ORDERS[:3]:
            boxes.wix.set_payment(order_guid(number), "PAID")
        boxes.wix.set_fulfillment(order_guid(ORDERS[3]), "FULFILLED", Tracking("TRK9", "DHL", None))
        boxes.whatsapp.mark_undeliverable(india_phone(ORDERS[2]))
        runtime.sync_all()
        drain(runtime)
        boxes.whatsapp.wait_for_webhooks()
        boxes.whatsapp.post_inbound_text(india_phone(ORDERS[0]), f"where is order {ORDERS[0]}?")
        boxes.whatsapp.post_inbound_text(STRANGER, f"order {ORDERS[1]}")
        wait_for(lambda: sum(m.type == "text" for m in boxes.whatsapp.sent_messages()) == 2)
        with httpx.Client(base_url=server.url) as client:
            auth = {"Authorization": f"Bearer {OPS_TOKEN}"}
            assert client.get("/ops", headers=auth).status_code == 200
            verify = {
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "7",
            }
            assert client.get("/webhooks/whatsapp", params=verify).text == "7"
            wrong = {**verify, "hub.verify_token": VERIFY_TOKEN[:-1]}  # a near miss must not echo
            assert client.get("/webhooks/whatsapp", params=wrong).status_code == 403
            near = {"Authorization": f"Bearer {OPS_TOKEN[:-1]}"}
            assert client.get("/ops", headers=near).status_code == 401
            bad = client.post(
                "/webhooks/whatsapp", content=b"{}", headers={"X-Hub-Signature-256": "sha256=00"}
            )
            assert bad.status_code in (401, 403)
        boxes.wix.set_permission(False)
        clock.advance(seconds=30)
        runtime.sync_all()  # a failed poll logs the Wix error
        logging.getLogger("apscheduler.scheduler").warning("a stdlib warning")
    finally:
        boxes.whatsapp.webhook_url = None
        server.stop()
        runtime.close()


def phones_of_the_run() -> list[str]:
    return [india_phone(n) for n in ORDERS] + [STRANGER]


def test_demo_like_run_logs_json_without_secrets_or_phone_numbers(
    captured: io.StringIO, engine: Engine, clock: Clock
) -> None:
    """Every line parses as JSON; no API key, token, secret or full phone number appears anywhere."""
    with start_sandboxes(clock) as boxes:
        demo_like_run(boxes, engine, clock)
        secrets = {
            "wix api key": boxes.wix.api_key,
            "access token": boxes.whatsapp.access_token,
            "app secret": boxes.whatsapp.app_secret,
            "verify token": VERIFY_TOKEN,
            "ops token": OPS_TOKEN,
        }

    text = captured.getvalue()
    lines = text.splitlines()
    events = [json.loads(line) for line in lines]  # raises on any plain-text line
    names = {e.get("event") for e in events}
    assert {"poll.finished", "message.sent", "message.failed", "a stdlib warning"} <= names
    assert any(e.get("event") == "message.sent" and "•" in e.get("to", "") for e in events)
    leaked = [name for name, value in secrets.items() if value in text]
    assert leaked == []
    for phone in phones_of_the_run():
        national = phones.digits(phone)[2:]  # the ten digits after +91
        assert national not in text, f"{phones.mask(phone)} appears unmasked"
    assert re.search(r"\+\d{8,}", text) is None  # no E.164 number of anybody else either
