"""The WhatsApp sandbox over loopback: Meta-like validation, scripted failures, signed webhooks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from notifier.domain import RenderedTemplate, TemplateParam
from notifier.errors import WhatsAppErrorKind, WhatsAppPermanentError, WhatsAppTransientError
from notifier.sandbox import whatsapp_server, whatsapp_webhooks
from notifier.sandbox.whatsapp_server import WhatsAppSandbox
from notifier.sandbox.whatsapp_templates import (
    DEFAULT_TEMPLATES,
    SandboxError,
    check_template_send,
)
from notifier.serving import RunningServer, serve_in_thread
from notifier.signatures import is_valid
from notifier.whatsapp import WhatsAppClient

DATA = Path(__file__).parent / "data" / "whatsapp"
START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
CUSTOMER = "4915123456789"
SECRET = "receiver-test-secret"


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Switch:
    """An ASGI app forwarding to ``target``, so one server can host a fresh sandbox per test."""

    def __init__(self, target: ASGIApp) -> None:
        self.target = target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.target(scope, receive, send)


@dataclass
class Receiver:
    """The daemon's webhook endpoint, reduced to: check the signature, record, answer."""

    status: int = 200
    received: list[tuple[bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def endpoint(self, request: Request) -> Response:
        raw = await request.body()
        valid = is_valid(SECRET, raw, request.headers.get("X-Hub-Signature-256"))
        with self.lock:
            self.received.append((raw, valid))
        return Response(status_code=self.status if valid else 403)

    def statuses(self) -> list[dict[str, Any]]:
        with self.lock:
            bodies = [json.loads(raw) for raw, valid in self.received if valid]
        return [
            status
            for body in bodies
            for status in body["entry"][0]["changes"][0]["value"].get("statuses", [])
        ]


def receiver_app(receiver: Receiver) -> Starlette:
    return Starlette(routes=[Route("/", receiver.endpoint, methods=["POST"])])


@pytest.fixture(scope="module")
def switch_server() -> Iterator[tuple[Switch, RunningServer]]:
    switch = Switch(WhatsAppSandbox().app)
    with serve_in_thread(switch) as server:
        yield switch, server


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[Switch, RunningServer]]:
    switch = Switch(receiver_app(Receiver()))
    with serve_in_thread(switch) as server:
        yield switch, server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def receiver(receiver_server: tuple[Switch, RunningServer]) -> Receiver:
    fresh = Receiver()
    receiver_server[0].target = receiver_app(fresh)
    return fresh


@pytest.fixture
def sandbox(
    switch_server: tuple[Switch, RunningServer],
    receiver_server: tuple[Switch, RunningServer],
    receiver: Receiver,
    clock: FakeClock,
) -> Iterator[WhatsAppSandbox]:
    fresh = WhatsAppSandbox(
        app_secret=SECRET, webhook_url=receiver_server[1].url + "/", clock=clock, status_delay=0
    )
    switch_server[0].target = fresh.app
    yield fresh
    fresh.close()


def client_of(server: RunningServer, sandbox: WhatsAppSandbox) -> WhatsAppClient:
    return WhatsAppClient(
        base_url=server.url,
        api_version="v24.0",
        phone_number_id=sandbox.phone_number_id,
        waba_id=sandbox.waba_id,
        access_token=sandbox.access_token,
    )


@pytest.fixture
def client(
    switch_server: tuple[Switch, RunningServer], sandbox: WhatsAppSandbox
) -> Iterator[WhatsAppClient]:
    with client_of(switch_server[1], sandbox) as wa:
        yield wa


def shipped(
    name: str = "Noa", number: str = "10126", suffix: str | None = "TRK123"
) -> RenderedTemplate:
    return RenderedTemplate(
        "order_shipped", "en", (TemplateParam(name), TemplateParam(number)), suffix
    )


def raw_send(
    server: RunningServer, sandbox: WhatsAppSandbox, payload: dict[str, Any]
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v24.0/{sandbox.phone_number_id}/messages",
        json=payload,
        headers={"Authorization": f"Bearer {sandbox.access_token}"},
    )


def template_payload(template: dict[str, Any], to: str = "+" + CUSTOMER) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "template", "template": template}


def permanent(client: WhatsAppClient, template: RenderedTemplate) -> WhatsAppPermanentError:
    with pytest.raises(WhatsAppPermanentError) as caught:
        client.send_template(CUSTOMER, template, callback_data="cb")
    return caught.value


# --- sending -------------------------------------------------------------------------------


def test_success_response_has_meta_shape(
    switch_server: tuple[Switch, RunningServer], sandbox: WhatsAppSandbox
) -> None:
    """An accepted template answers exactly like Meta's example, with wamid.SBX.1."""
    body = {"type": "body", "parameters": [{"type": "text", "text": t} for t in ("A", "1")]}
    button = {
        "type": "button",
        "sub_type": "url",
        "index": "0",
        "parameters": [{"type": "text", "text": "T"}],
    }
    template = {"name": "order_shipped", "language": {"code": "en"}, "components": [body, button]}
    response = raw_send(switch_server[1], sandbox, template_payload(template))
    expected = json.loads((DATA / "send-response-template.json").read_text())["body"]
    expected["contacts"] = [{"input": "+" + CUSTOMER, "wa_id": CUSTOMER}]
    expected["messages"][0]["id"] = "wamid.SBX.1"
    assert (response.status_code, response.json()) == (200, expected)


def test_accepted_messages_are_recorded_with_the_clock(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, clock: FakeClock
) -> None:
    """Every accepted send is recorded: template, language, params, button, callback, time."""
    result = client.send_template(CUSTOMER, shipped(), callback_data="outbox:7")
    (message,) = sandbox.sent_messages()
    assert message.wamid == result.wamid
    assert (message.template, message.language, message.type) == ("order_shipped", "en", "template")
    assert (message.body_params, message.button_suffix) == (("Noa", "10126"), "TRK123")
    assert (message.callback_data, message.at) == ("outbox:7", clock.now)


def test_recipient_without_plus_is_invalid_parameter(
    switch_server: tuple[Switch, RunningServer], sandbox: WhatsAppSandbox
) -> None:
    """A `to` without the leading '+' is refused with #100 and not recorded."""
    response = raw_send(switch_server[1], sandbox, template_payload({"name": "x"}, to=CUSTOMER))
    assert (response.status_code, response.json()["error"]["code"]) == (400, 100)
    assert sandbox.sent_messages() == []


def test_br10_language_without_translation_is_132001(client: WhatsAppClient) -> None:
    """order_shipped exists in en, not en_US: 132001 naming the pair, a template error (BR-10)."""
    error = permanent(client, RenderedTemplate("order_shipped", "en_US", shipped().body, "T"))
    assert (error.code, error.kind) == (132001, WhatsAppErrorKind.TEMPLATE)
    assert error.details == "template name (order_shipped) does not exist in en_US"


@pytest.mark.parametrize(
    ("status", "code"), [("PAUSED", 132015), ("DISABLED", 132016), ("PENDING", 132001)]
)
def test_template_that_is_not_approved_is_refused(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, status: str, code: int
) -> None:
    """Only APPROVED templates send: paused 132015, disabled 132016, anything else 132001."""
    sandbox.set_template("order_shipped", "en", status=status)
    assert permanent(client, shipped()).code == code


def test_br06_tracking_code_in_body_is_132000(client: WhatsAppClient) -> None:
    """Three body params for a two-param template: 132000 with Meta's details text (BR-06)."""
    body = (TemplateParam("Noa"), TemplateParam("10126"), TemplateParam("TRK123"))
    error = permanent(client, RenderedTemplate("order_shipped", "en", body))
    assert (error.code, error.kind) == (132000, WhatsAppErrorKind.TEMPLATE)
    assert error.details == (
        "body: number of localizable_params (3) does not match the expected number of params (2)"
    )


def test_missing_url_button_param_is_132000(client: WhatsAppClient) -> None:
    """order_shipped without its URL button suffix is a parameter-count error."""
    error = permanent(client, shipped(suffix=None))
    assert error.code == 132000
    assert error.details is not None
    assert error.details.startswith("buttons:")


@pytest.mark.parametrize(
    "text", ["Gift Set\nRed", "Red\tLarge", "Leave at door     please", "Flat 2\r\nHigh St 5"]
)
def test_br08_newline_tab_or_five_spaces_is_132018(client: WhatsAppClient, text: str) -> None:
    """A parameter with a newline, tab or 5+ spaces is refused with 132018 (BR-08)."""
    assert permanent(client, shipped(name=text)).code == 132018


def test_four_spaces_are_still_allowed(client: WhatsAppClient) -> None:
    """Exactly four spaces in a row is within Meta's rule and is accepted."""
    assert client.send_template(CUSTOMER, shipped(name="Noa    B"), callback_data="cb").wamid


def test_br07_empty_parameter_is_invalid(client: WhatsAppClient) -> None:
    """An empty or blank parameter is refused with #100 (BR-07)."""
    assert permanent(client, shipped(name="  ")).code == 100


def test_named_template_takes_named_parameters_only(
    client: WhatsAppClient, sandbox: WhatsAppSandbox
) -> None:
    """A NAMED template accepts parameter_name params; positional or mixed params get #100."""
    fixture = json.loads((DATA / "template-list-response.json").read_text())["body"]["data"][0]
    sandbox.add_template({**fixture, "name": "order_shipped_named"})
    names = ("customer_name", "order_id", "carrier", "tracking_number")
    named = tuple(TemplateParam(f"v{i}", n) for i, n in enumerate(names))
    good = RenderedTemplate("order_shipped_named", "en", named, "DL1")
    assert client.send_template(CUSTOMER, good, callback_data="cb").wamid
    mixed = RenderedTemplate("order_shipped_named", "en", (*named[:3], TemplateParam("x")), "DL1")
    positional = RenderedTemplate(
        "order_shipped_named", "en", tuple(TemplateParam(p.text) for p in named), "DL1"
    )
    assert permanent(client, mixed).code == 100
    assert permanent(client, positional).code == 100


def test_recategorised_template_is_listed_as_marketing(
    client: WhatsAppClient, sandbox: WhatsAppSandbox
) -> None:
    """set_template can move a template to MARKETING; the list shows it."""
    sandbox.set_template("order_refunded", "en", category="MARKETING")
    categories = {t.name: t.category for t in client.list_templates() if t.language == "en"}
    assert categories["order_refunded"] == "MARKETING"
    assert categories["order_cancelled"] == "UTILITY"


def test_template_list_pages_with_limit_and_after(
    switch_server: tuple[Switch, RunningServer], sandbox: WhatsAppSandbox
) -> None:
    """limit=4 pages through every template via paging.next; fields are projected."""
    url: str | None = (
        f"{switch_server[1].url}/v24.0/{sandbox.waba_id}/message_templates?fields=name,language&limit=4"
    )
    headers = {"Authorization": f"Bearer {sandbox.access_token}"}
    seen: list[tuple[str, str]] = []
    pages = 0
    while url is not None:
        page = httpx.get(url, headers=headers).json()
        assert all(set(t) == {"id", "name", "language"} for t in page["data"])
        seen.extend((t["name"], t["language"]) for t in page["data"])
        url = page["paging"].get("next")
        pages += 1
    assert seen == [(t["name"], t["language"]) for t in DEFAULT_TEMPLATES]
    assert pages == 3


# --- scripted failures -----------------------------------------------------------------------


def test_br12a_429_with_retry_after_twice_then_success(
    client: WhatsAppClient, sandbox: WhatsAppSandbox
) -> None:
    """Two scripted 429s with Retry-After 2 fail transiently, then the send succeeds (BR-12a)."""
    sandbox.fail_next(130429, count=2, http_status=429, retry_after=2)
    for _ in range(2):
        with pytest.raises(WhatsAppTransientError) as caught:
            client.send_template(CUSTOMER, shipped(), callback_data="cb")
        assert (caught.value.code, caught.value.retry_after) == (130429, 2.0)
    client.send_template(CUSTOMER, shipped(), callback_data="cb")
    assert len(sandbox.sent_messages()) == 1


def test_scripted_failure_for_one_recipient_spares_others(
    client: WhatsAppClient, sandbox: WhatsAppSandbox
) -> None:
    """fail_next(to=...) only hits sends to that number."""
    sandbox.fail_next(131026, to="+919876543210")
    client.send_template(CUSTOMER, shipped(), callback_data="cb")
    with pytest.raises(WhatsAppPermanentError) as caught:
        client.send_template("919876543210", shipped(), callback_data="cb")
    assert caught.value.kind is WhatsAppErrorKind.RECIPIENT


def test_br12c_pair_rate_limit_by_sandbox_clock(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, clock: FakeClock
) -> None:
    """Two sends to one number < 6 s apart: the second is 131056; after 6 s it goes (BR-12c)."""
    sandbox.pair_rate_limit()
    client.send_template(CUSTOMER, shipped(), callback_data="paid")
    with pytest.raises(WhatsAppTransientError) as caught:
        client.send_template(CUSTOMER, shipped(), callback_data="fulfilled")
    assert caught.value.kind is WhatsAppErrorKind.RECIPIENT_LATER
    client.send_template("919876543210", shipped(), callback_data="other")
    clock.advance(seconds=6)
    client.send_template(CUSTOMER, shipped(), callback_data="fulfilled")
    assert [m.callback_data for m in sandbox.sent_messages()] == ["paid", "other", "fulfilled"]


def test_concurrent_sends_get_unique_wamids(
    switch_server: tuple[Switch, RunningServer], sandbox: WhatsAppSandbox
) -> None:
    """Sends from many threads are all recorded, each with its own wamid."""

    def send(i: int) -> None:
        with client_of(switch_server[1], sandbox) as own:
            own.send_template(f"+4915100000{i:03d}", shipped(), callback_data=str(i))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wamids = {m.wamid for m in sandbox.sent_messages()}
    assert len(wamids) == 20


@given(st.text(max_size=20))
def test_parameter_rule_matches_meta(text: str) -> None:
    """Any param text is accepted iff it is non-blank and has no newline, tab or 5+ spaces."""
    request = {
        "name": "order_shipped",
        "language": {"code": "en"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": text}, {"type": "text", "text": "1"}],
            },
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": "T"}],
            },
        ],
    }
    bad = not text.strip() or any(c in text for c in "\n\r\t") or "     " in text
    templates = [dict(t) for t in DEFAULT_TEMPLATES]
    if bad:
        with pytest.raises(SandboxError) as caught:
            check_template_send(templates, request)
        assert caught.value.code in (100, 132018)
    else:
        assert check_template_send(templates, request)["name"] == "order_shipped"


# --- webhooks ------------------------------------------------------------------------------


def test_template_send_posts_signed_sent_then_delivered(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """Outside any window a template gets signed sent + delivered webhooks priced regular."""
    result = client.send_template(CUSTOMER, shipped(), callback_data="outbox:9")
    assert sandbox.wait_for_webhooks(5)
    statuses = receiver.statuses()
    assert [s["status"] for s in statuses] == ["sent", "delivered"]
    assert all(valid for _, valid in receiver.received)
    for status in statuses:
        assert (status["id"], status["recipient_id"]) == (result.wamid, CUSTOMER)
        assert status["biz_opaque_callback_data"] == "outbox:9"
        assert status["pricing"] == {
            "billable": True,
            "pricing_model": "PMP",
            "category": "utility",
            "type": "regular",
        }
    assert statuses[0]["timestamp"] == str(int(START.timestamp()))
    assert [status for status, _ in sandbox.webhook_log] == [200, 200]


def test_webhook_bodies_escape_like_meta(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """Webhook bytes escape '/' and non-ASCII like Meta; the signature covers those exact bytes."""
    sandbox.post_inbound_text(CUSTOMER, "Café 😀 order #10126 / noa@example.com", name="Noa B")
    ((raw, valid),) = receiver.received
    assert valid
    assert b"\\/ noa@example.com" in raw
    assert b"Caf\\u00e9" in raw
    message = json.loads(raw)["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["text"]["body"] == "Café 😀 order #10126 / noa@example.com"


def test_inbound_text_has_meta_shape_and_opens_the_window(
    sandbox: WhatsAppSandbox, receiver: Receiver, clock: FakeClock
) -> None:
    """post_inbound_text posts inbound-text-webhook.json's shape and opens a 24 h window."""
    message_id = sandbox.post_inbound_text(CUSTOMER, "Where is my order #10126?", name="Noa")
    value = json.loads(receiver.received[0][0])["entry"][0]["changes"][0]["value"]
    expected = json.loads((DATA / "inbound-text-webhook.json").read_text())["body"]["entry"][0][
        "changes"
    ][0]["value"]
    assert set(value) == set(expected)
    assert value["contacts"] == [{"profile": {"name": "Noa"}, "wa_id": CUSTOMER}]
    assert value["messages"] == [
        {
            "from": CUSTOMER,
            "id": message_id,
            "timestamp": str(int(START.timestamp())),
            "type": "text",
            "text": {"body": "Where is my order #10126?"},
        }
    ]
    assert sandbox.window_open(CUSTOMER)
    clock.advance(hours=24)
    assert not sandbox.window_open(CUSTOMER)


def test_in_window_utility_template_is_free(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """Inside the customer's window a utility template is priced free_customer_service."""
    sandbox.open_window(CUSTOMER, START - timedelta(hours=1))
    client.send_template(CUSTOMER, shipped(), callback_data="cb")
    assert sandbox.wait_for_webhooks(5)
    assert {s["pricing"]["type"] for s in receiver.statuses()} == {"free_customer_service"}
    assert {s["pricing"]["billable"] for s in receiver.statuses()} == {False}


def test_in_window_text_is_a_free_service_message(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """A text reply inside the window is delivered with category service, free."""
    inbound = sandbox.post_inbound_text(CUSTOMER, "10126")
    result = client.send_text(CUSTOMER, "Order #10126 shipped", reply_to=inbound)
    assert sandbox.wait_for_webhooks(5)
    delivered = [s for s in receiver.statuses() if s["status"] == "delivered"]
    assert [s["id"] for s in delivered] == [result.wamid]
    assert delivered[0]["pricing"]["category"] == "service"
    assert sandbox.sent_messages()[0].reply_to == inbound


def test_br11_text_outside_window_is_accepted_then_fails_131047(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, receiver: Receiver, clock: FakeClock
) -> None:
    """24 h 5 min after the inbound, a text gets 200 and later a failed 131047 status (BR-11)."""
    sandbox.open_window(CUSTOMER, START)
    clock.advance(hours=24, minutes=5)
    result = client.send_text(CUSTOMER, "Order #10126 shipped")
    assert sandbox.wait_for_webhooks(5)
    (status,) = receiver.statuses()
    assert (status["id"], status["status"]) == (result.wamid, "failed")
    assert status["errors"][0]["code"] == 131047
    assert "pricing" not in status


def test_br13_undeliverable_number_fails_131026_after_200(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """mark_undeliverable: the send returns a wamid, then a failed 131026 status arrives (BR-13)."""
    sandbox.mark_undeliverable(CUSTOMER)
    result = client.send_template(CUSTOMER, shipped(), callback_data="cb")
    assert sandbox.wait_for_webhooks(5)
    (status,) = receiver.statuses()
    assert (status["id"], status["status"], status["errors"][0]["code"]) == (
        result.wamid,
        "failed",
        131026,
    )
    assert status["errors"][0]["title"] == "Message undeliverable"


def test_duplicated_shuffled_statuses_and_read(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """Options post each status twice, in reverse order, with a final read without pricing."""
    sandbox.duplicate_statuses = True
    sandbox.shuffle_statuses = True
    sandbox.send_read = True
    client.send_template(CUSTOMER, shipped(), callback_data="cb")
    assert sandbox.wait_for_webhooks(5)
    statuses = receiver.statuses()
    assert [s["status"] for s in statuses] == [
        "read",
        "read",
        "delivered",
        "delivered",
        "sent",
        "sent",
    ]
    assert "pricing" not in statuses[0]


def test_daemon_down_is_retried_then_dropped_without_blocking(
    switch_server: tuple[Switch, RunningServer], clock: FakeClock
) -> None:
    """With nothing listening, sends stay fast, each webhook is tried 3 times, then dropped."""
    with serve_in_thread(receiver_app(Receiver())) as gone:
        dead_url = gone.url
    sandbox = WhatsAppSandbox(webhook_url=dead_url, clock=clock, status_delay=0)
    switch_server[0].target = sandbox.app
    with client_of(switch_server[1], sandbox) as wa:
        started = time.monotonic()
        wa.send_template(CUSTOMER, shipped(), callback_data="cb")
        assert time.monotonic() - started < 1.0
    assert sandbox.wait_for_webhooks(10)
    assert [status for status, _ in sandbox.webhook_log] == [None] * 6
    sandbox.close()


def test_non_200_from_daemon_is_retried_and_logged(
    client: WhatsAppClient, sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """A daemon answering 500 gets each webhook three times; the log keeps every status."""
    receiver.status = 500
    client.send_template(CUSTOMER, shipped(), callback_data="cb")
    assert sandbox.wait_for_webhooks(10)
    assert [status for status, _ in sandbox.webhook_log] == [500] * 6


def test_post_raw_with_a_bad_signature_is_refused(
    sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """post_raw sends the bytes as given: a wrong or missing signature gets the daemon's 403."""
    assert sandbox.post_raw(b'{"object":"x"}', "sha256=" + "0" * 64) == 403
    assert sandbox.post_raw(b'{"object":"x"}', None) == 403
    assert [valid for _, valid in receiver.received] == [False] * 6


def test_close_stops_the_worker(clock: FakeClock) -> None:
    """close() ends the webhook thread promptly."""

    def workers() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "wa-sandbox-webhooks")

    before = workers()
    sandbox = WhatsAppSandbox(webhook_url="http://127.0.0.1:9/", clock=clock)
    assert workers() == before + 1
    started = time.monotonic()
    sandbox.close()
    assert workers() == before
    assert time.monotonic() - started < 1.0


# --- webhook control: url, hand-made inbound and statuses ---------------------------------


def values(receiver: Receiver) -> list[dict[str, Any]]:
    with receiver.lock:
        return [json.loads(raw)["entry"][0]["changes"][0]["value"] for raw, _ in receiver.received]


def test_webhook_url_can_be_unset_and_set_later(
    switch_server: tuple[Switch, RunningServer],
    receiver_server: tuple[Switch, RunningServer],
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    """webhook_url None posts nothing; set later, statuses flow for sends from then on only."""
    sandbox = WhatsAppSandbox(app_secret=SECRET, clock=clock, status_delay=0)
    switch_server[0].target = sandbox.app
    with client_of(switch_server[1], sandbox) as wa:
        before = wa.send_template(CUSTOMER, shipped(), callback_data="before")
        assert sandbox.webhook_url is None
        with pytest.raises(RuntimeError):
            sandbox.post_statuses([])
        sandbox.webhook_url = receiver_server[1].url + "/"
        after = wa.send_template(CUSTOMER, shipped(), callback_data="after")
        assert sandbox.wait_for_webhooks(5)
        sandbox.webhook_url = None
        wa.send_template(CUSTOMER, shipped(), callback_data="unset again")
    assert sandbox.wait_for_webhooks(5)
    assert [(s["id"], s["status"]) for s in receiver.statuses()] == [
        (after.wamid, "sent"),
        (after.wamid, "delivered"),
    ]
    assert before.wamid != after.wamid
    assert len(sandbox.webhook_log) == 2
    sandbox.close()


def test_webhook_log_entries_are_webhook_attempts(
    client: WhatsAppClient, sandbox: WhatsAppSandbox
) -> None:
    """The server module still exports WebhookAttempt, and webhook_log holds exactly those."""
    client.send_template(CUSTOMER, shipped(), callback_data="cb")
    assert sandbox.wait_for_webhooks(5)
    assert whatsapp_server.WebhookAttempt is whatsapp_webhooks.WebhookAttempt
    assert all(type(a) is whatsapp_server.WebhookAttempt for a in sandbox.webhook_log)
    assert len(sandbox.webhook_log) == 2


def test_post_inbound_sends_non_text_messages_as_given(
    sandbox: WhatsAppSandbox, receiver: Receiver, clock: FakeClock
) -> None:
    """post_inbound signs and posts any message types unchanged, one contact per sender."""
    fixture = json.loads((DATA / "inbound-quick-reply-button-webhook.json").read_text())
    button = fixture["body"]["entry"][0]["changes"][0]["value"]["messages"][0]
    unsupported = {
        "from": CUSTOMER,
        "id": "wamid.IN.2",
        "type": "unsupported",
        "errors": [{"code": 131051}],
    }
    assert sandbox.post_inbound([unsupported, button]) == 200
    assert [valid for _, valid in receiver.received] == [True]
    (value,) = values(receiver)
    assert value["messages"] == [unsupported, button]
    assert value["contacts"] == [
        {"profile": {"name": "Customer"}, "wa_id": CUSTOMER},
        {"profile": {"name": "Customer"}, "wa_id": "919876543210"},
    ]
    assert value["metadata"]["phone_number_id"] == sandbox.phone_number_id


def test_post_inbound_opens_windows_at_the_message_time(
    sandbox: WhatsAppSandbox, clock: FakeClock
) -> None:
    """Each sender's window opens at its message's timestamp (or now when it has none)."""
    yesterday = str(int((START - timedelta(hours=23)).timestamp()))
    older = str(int((START - timedelta(hours=25)).timestamp()))
    sandbox.post_inbound(
        [
            {"from": CUSTOMER, "id": "a", "timestamp": yesterday, "type": "unsupported"},
            {"from": "919876543210", "id": "b", "timestamp": older, "type": "button"},
            {"from": "4930123456", "id": "c", "type": "unsupported"},
        ]
    )
    assert sandbox.window_open(CUSTOMER)
    assert not sandbox.window_open("919876543210")
    clock.advance(hours=2)
    assert not sandbox.window_open(CUSTOMER)
    assert sandbox.window_open("4930123456")


def test_post_inbound_uses_given_contacts(sandbox: WhatsAppSandbox, receiver: Receiver) -> None:
    """Explicit contacts (e.g. a username-only sender) are posted instead of the default."""
    contacts = [{"profile": {"name": "adopter"}, "wa_id": "", "user_id": "US.123"}]
    message = {"from": "", "user_id": "US.123", "id": "x", "type": "text", "text": {"body": "hi"}}
    assert sandbox.post_inbound([message], contacts=contacts) == 200
    (value,) = values(receiver)
    assert (value["contacts"], value["messages"]) == (contacts, [message])


def test_post_statuses_sends_raw_items_in_metas_envelope(
    sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """post_statuses posts duplicated, out-of-order and orphan items exactly as given, signed."""
    delivered = {"id": "wamid.A", "status": "delivered", "timestamp": "2", "recipient_id": CUSTOMER}
    sent = {**delivered, "status": "sent", "timestamp": "1"}
    orphan = {**delivered, "id": "wamid.UNKNOWN", "status": "failed", "errors": [{"code": 131026}]}
    items: list[dict[str, Any]] = [delivered, delivered, sent, orphan]
    assert sandbox.post_statuses(items) == 200
    ((raw, valid),) = receiver.received
    body = json.loads(raw)
    assert valid
    assert (body["object"], body["entry"][0]["id"]) == (
        "whatsapp_business_account",
        sandbox.waba_id,
    )
    assert body["entry"][0]["changes"][0]["field"] == "messages"
    assert receiver.statuses() == items
    assert "contacts" not in values(receiver)[0]


def test_post_statuses_reports_the_daemons_answer(
    sandbox: WhatsAppSandbox, receiver: Receiver
) -> None:
    """A daemon answering 500 is retried and post_statuses returns that 500."""
    receiver.status = 500
    assert sandbox.post_statuses([{"id": "wamid.A", "status": "read"}]) == 500
    assert [status for status, _ in sandbox.webhook_log] == [500] * 3
