"""The WhatsApp adapter at its wire: recorded Meta payloads replayed through httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain import RenderedTemplate, TemplateParam
from notifier.errors import WhatsAppErrorKind, WhatsAppPermanentError, WhatsAppTransientError
from notifier.sandbox.whatsapp_server import WhatsAppSandbox
from notifier.serving import RunningServer, serve_in_thread
from notifier.whatsapp import WhatsAppClient, template_payload

DATA = Path(__file__).parent / "data" / "whatsapp"
BASE = "https://graph.facebook.com"
PHONE_ID = "106540352242922"
WABA_ID = "102290129340398"
TOKEN = "test-token"

Handler = Callable[[httpx.Request], httpx.Response]


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def replay(name: str, headers: dict[str, str] | None = None) -> httpx.Response:
    recorded = load(name)
    return httpx.Response(recorded["http"]["status"], json=recorded["body"], headers=headers)


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response

    def json(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


def client_for(handler: Handler) -> WhatsAppClient:
    return WhatsAppClient(
        base_url=BASE,
        api_version="v24.0",
        phone_number_id=PHONE_ID,
        waba_id=WABA_ID,
        access_token=TOKEN,
        transport=httpx.MockTransport(handler),
    )


NAMED = RenderedTemplate(
    name="order_shipped",
    language="en",
    body=(
        TemplateParam("Priya", "customer_name"),
        TemplateParam("#10042", "order_id"),
        TemplateParam("Delhivery", "carrier"),
        TemplateParam("DL123456789IN", "tracking_number"),
    ),
    button_url_suffix="DL123456789IN",
)
POSITIONAL = RenderedTemplate(
    name="order_payment_update",
    language="en",
    body=tuple(
        TemplateParam(text)
        for text in ("Priya", "₹1,299.00", "#10042", "https://shop.example.com/orders/10042")
    ),
)


def test_named_template_request_matches_meta_example() -> None:
    """A named template is POSTed exactly as Meta's example, to the messages URL, with the token."""
    recorder = Recorder(replay("send-response-template"))
    with client_for(recorder) as client:
        client.send_template(
            "+919876543210", NAMED, callback_data="wix-order:10042:fulfillment:FULFILLED"
        )
    request = recorder.requests[0]
    assert str(request.url) == f"{BASE}/v24.0/{PHONE_ID}/messages"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert recorder.json() == load("send-template-request-named")["body"]


def test_positional_template_request_matches_meta_example_body_and_omits_header() -> None:
    """A positional template sends Meta's example body params; header params are not modelled."""
    recorder = Recorder(replay("send-response-template"))
    with client_for(recorder) as client:
        client.send_template(
            "919876543210", POSITIONAL, callback_data="wix-order:10042:payment:PAID"
        )
    expected = load("send-template-request-positional")["body"]
    components = expected["template"]["components"]
    expected["template"]["components"] = [c for c in components if c["type"] != "header"]
    assert recorder.json() == expected


def test_template_without_parameters_sends_no_components() -> None:
    """A template with no body params and no button has no components at all."""
    payload = template_payload(RenderedTemplate(name="hello", language="en"))
    assert payload == {"name": "hello", "language": {"code": "en"}}


def test_text_reply_request_matches_meta_example() -> None:
    """A free-form reply is POSTed exactly as Meta's contextual-reply example."""
    expected = load("send-text-reply-request")["body"]
    recorder = Recorder(replay("send-response-text"))
    with client_for(recorder) as client:
        result = client.send_text(
            "919876543210", expected["text"]["body"], reply_to=expected["context"]["message_id"]
        )
    assert recorder.json() == expected
    assert result.message_status == "accepted"
    assert result.wamid.startswith("wamid.HBgMOTE5")


def test_text_body_is_capped_at_4096_characters() -> None:
    """A longer text body is cut to Meta's 4,096-character limit."""
    recorder = Recorder(replay("send-response-text"))
    with client_for(recorder) as client:
        client.send_text("+491511234567", "x" * 5000)
    assert recorder.json()["text"]["body"] == "x" * 4096
    assert "context" not in recorder.json()


def test_recipient_that_is_not_a_number_is_refused_before_sending() -> None:
    """A recipient that is neither '+digits' nor digits raises ValueError and sends nothing."""
    recorder = Recorder()
    with client_for(recorder) as client, pytest.raises(ValueError, match=r"E\.164"):
        client.send_text("call me", "hi")
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("send-response-template", "accepted"),
        ("send-response-template-held-by-pacing", "held_for_quality_assessment"),
    ],
)
def test_send_result_reads_wamid_status_and_wa_id(fixture: str, status: str) -> None:
    """The send response gives the wamid, Meta's message_status and the digits-only wa_id."""
    with client_for(Recorder(replay(fixture))) as client:
        result = client.send_template("+919876543210", POSITIONAL, callback_data="x")
    assert result.wamid == load(fixture)["body"]["messages"][0]["id"]
    assert result.message_status == status
    assert result.wa_id == "919876543210"


def test_200_without_a_wamid_is_ambiguous() -> None:
    """A 200 that names no message may still have gone out: ambiguous, not success."""
    with (
        client_for(Recorder(httpx.Response(200, json={"messages": []}))) as client,
        pytest.raises(WhatsAppTransientError) as caught,
    ):
        client.send_text("+491511234567", "hi")
    assert caught.value.kind is WhatsAppErrorKind.AMBIGUOUS


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("error-response-130429-throughput", WhatsAppErrorKind.RETRY),
        ("error-response-131056-pair-rate-limit", WhatsAppErrorKind.RECIPIENT_LATER),
    ],
)
def test_transient_error_fixtures_map_to_transient(fixture: str, kind: WhatsAppErrorKind) -> None:
    """Throughput and pair-rate errors are transient, with the code and its kind."""
    with (
        client_for(Recorder(replay(fixture))) as client,
        pytest.raises(WhatsAppTransientError) as caught,
    ):
        client.send_template("+919876543210", POSITIONAL, callback_data="x")
    assert caught.value.code == load(fixture)["body"]["error"]["code"]
    assert caught.value.kind is kind


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("error-response-131047-reengagement", WhatsAppErrorKind.RECIPIENT),
        ("error-response-132000-param-count", WhatsAppErrorKind.TEMPLATE),
    ],
)
def test_permanent_error_fixtures_keep_code_title_and_details(
    fixture: str, kind: WhatsAppErrorKind
) -> None:
    """Recipient and template errors are permanent and carry code, kind, title and details."""
    error = load(fixture)["body"]["error"]
    with (
        client_for(Recorder(replay(fixture))) as client,
        pytest.raises(WhatsAppPermanentError) as caught,
    ):
        client.send_template("+919876543210", POSITIONAL, callback_data="x")
    assert (caught.value.code, caught.value.kind) == (error["code"], kind)
    assert caught.value.title == error["message"]
    assert caught.value.details == error["error_data"]["details"]


def test_error_kind_is_decided_by_code_not_http_status() -> None:
    """132000 behind HTTP 500 is permanent (template); 131056 behind 403 is transient."""
    body_132000 = load("error-response-132000-param-count")["body"]
    body_131056 = load("error-response-131056-pair-rate-limit")["body"]
    recorder = Recorder(
        httpx.Response(500, json=body_132000), httpx.Response(403, json=body_131056)
    )
    with client_for(recorder) as client:
        with pytest.raises(WhatsAppPermanentError) as permanent:
            client.send_text("+491511234567", "a")
        with pytest.raises(WhatsAppTransientError) as transient:
            client.send_text("+491511234567", "b")
    assert permanent.value.kind is WhatsAppErrorKind.TEMPLATE
    assert transient.value.kind is WhatsAppErrorKind.RECIPIENT_LATER


def test_retry_after_header_is_honoured() -> None:
    """A 429 with Retry-After: 2 becomes a transient error with retry_after 2.0 (BR-12a)."""
    response = replay("error-response-130429-throughput", headers={"Retry-After": "2"})
    with client_for(Recorder(response)) as client, pytest.raises(WhatsAppTransientError) as caught:
        client.send_text("+491511234567", "hi")
    assert caught.value.retry_after == 2.0


def test_token_error_stops_everything() -> None:
    """Code 190 (bad token) is a permanent STOP error."""
    body = {
        "error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}
    }
    with (
        client_for(Recorder(httpx.Response(401, json=body))) as client,
        pytest.raises(WhatsAppPermanentError) as caught,
    ):
        client.send_text("+491511234567", "hi")
    assert caught.value.kind is WhatsAppErrorKind.STOP


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_error_status_without_a_body_is_transient(status: int) -> None:
    """A 5xx or 429 with no Meta error body is retried later."""
    with (
        client_for(Recorder(httpx.Response(status, text="<html>oops</html>"))) as client,
        pytest.raises(WhatsAppTransientError) as caught,
    ):
        client.send_text("+491511234567", "hi")
    assert caught.value.kind is WhatsAppErrorKind.RETRY
    assert caught.value.code is None


def test_bare_4xx_without_code_stops_everything() -> None:
    """A 404 with no Meta error body means a wrong URL/version: permanent STOP."""
    with (
        client_for(Recorder(httpx.Response(404, text="not found"))) as client,
        pytest.raises(WhatsAppPermanentError) as caught,
    ):
        client.send_text("+491511234567", "hi")
    assert caught.value.kind is WhatsAppErrorKind.STOP


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), WhatsAppErrorKind.RETRY),
        (httpx.ConnectTimeout("slow connect"), WhatsAppErrorKind.RETRY),
        (httpx.ReadTimeout("no answer"), WhatsAppErrorKind.AMBIGUOUS),
        (httpx.RemoteProtocolError("hung up"), WhatsAppErrorKind.AMBIGUOUS),
        (httpx.ReadError("reset"), WhatsAppErrorKind.AMBIGUOUS),
    ],
)
def test_network_failures_split_into_unsent_and_ambiguous(
    exc: Exception, kind: WhatsAppErrorKind
) -> None:
    """Failures before the request left are RETRY; failures after it left are AMBIGUOUS."""
    with client_for(Recorder(exc)) as client, pytest.raises(WhatsAppTransientError) as caught:
        client.send_template("+919876543210", POSITIONAL, callback_data="x")
    assert caught.value.kind is kind
    assert client.request_count == 1


def test_read_timeout_on_template_list_is_plain_retry() -> None:
    """Listing templates is idempotent, so a read timeout there is simply retryable."""
    with (
        client_for(Recorder(httpx.ReadTimeout("slow"))) as client,
        pytest.raises(WhatsAppTransientError) as caught,
    ):
        client.list_templates()
    assert caught.value.kind is WhatsAppErrorKind.RETRY


def test_template_list_parses_meta_example() -> None:
    """order_shipped is NAMED with 4 body params and a URL button; order_payment_update has 4."""
    recorder = Recorder(replay_body("template-list-response"))
    with client_for(recorder) as client:
        shipped, payment = client.list_templates()
    request = recorder.requests[0]
    assert request.url.path == f"/v24.0/{WABA_ID}/message_templates"
    assert (
        request.url.params["fields"] == "name,language,status,category,components,parameter_format"
    )
    assert request.url.params["limit"] == "100"
    assert (shipped.name, shipped.language, shipped.status, shipped.category) == (
        "order_shipped",
        "en",
        "APPROVED",
        "UTILITY",
    )
    assert shipped.parameter_format == "NAMED"
    assert shipped.body_param_count == 4
    assert shipped.body_param_names == ("customer_name", "order_id", "carrier", "tracking_number")
    assert shipped.url_button_param_count == 1
    assert payment.parameter_format == "POSITIONAL"
    assert (payment.body_param_count, payment.body_param_names) == (4, ())
    assert payment.url_button_param_count == 0


def replay_body(name: str) -> httpx.Response:
    return httpx.Response(200, json=load(name)["body"])


def test_template_list_follows_paging_next() -> None:
    """Every page is read by following paging.next until it is absent."""
    page_one = load("template-list-response")["body"]
    next_url = f"{BASE}/v24.0/{WABA_ID}/message_templates?after=CURSOR&limit=100"
    first = {"data": page_one["data"][:1], "paging": {"next": next_url}}
    second = {"data": page_one["data"][1:], "paging": {"cursors": {"before": "a", "after": "b"}}}
    recorder = Recorder(httpx.Response(200, json=first), httpx.Response(200, json=second))
    with client_for(recorder) as client:
        names = [t.name for t in client.list_templates()]
    assert names == ["order_shipped", "order_payment_update"]
    assert str(recorder.requests[1].url) == next_url
    assert client.request_count == 2


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=6))
def test_body_parameters_keep_order_and_text(texts: list[str]) -> None:
    """Whatever the texts, body parameters go out in order, unchanged, all of type text."""
    template = RenderedTemplate("t", "en", tuple(TemplateParam(t) for t in texts))
    (body,) = template_payload(template)["components"]
    assert body["type"] == "body"
    assert [p["text"] for p in body["parameters"]] == texts
    assert all(p == {"type": "text", "text": p["text"]} for p in body["parameters"])


# --- against the sandbox over loopback -------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[tuple[WhatsAppSandbox, RunningServer]]:
    sandbox = WhatsAppSandbox()
    with serve_in_thread(sandbox.app) as server:
        yield sandbox, server
    sandbox.close()


def sandbox_client(
    server: RunningServer, sandbox: WhatsAppSandbox, access_token: str | None = None
) -> WhatsAppClient:
    return WhatsAppClient(
        base_url=server.url,
        api_version="v24.0",
        phone_number_id=sandbox.phone_number_id,
        waba_id=sandbox.waba_id,
        access_token=access_token or sandbox.access_token,
    )


def test_sandbox_accepts_a_rendered_default_template(
    sandbox_server: tuple[WhatsAppSandbox, RunningServer],
) -> None:
    """A correctly rendered order_shipped send is accepted and recorded by the sandbox."""
    sandbox, server = sandbox_server
    template = RenderedTemplate(
        "order_shipped", "en", (TemplateParam("Noa"), TemplateParam("10126")), "TRK123"
    )
    with sandbox_client(server, sandbox) as client:
        result = client.send_template("4915123456789", template, callback_data="outbox:1")
    assert result.wa_id == "4915123456789"
    assert result.wamid.startswith("wamid.SBX.")
    recorded = next(m for m in sandbox.sent_messages() if m.wamid == result.wamid)
    assert (recorded.to, recorded.body_params, recorded.button_suffix) == (
        "+4915123456789",
        ("Noa", "10126"),
        "TRK123",
    )
    assert recorded.callback_data == "outbox:1"


def test_sandbox_templates_parse_into_template_info(
    sandbox_server: tuple[WhatsAppSandbox, RunningServer],
) -> None:
    """The sandbox's default templates parse: order_shipped has 2 body params + 1 button."""
    sandbox, server = sandbox_server
    with sandbox_client(server, sandbox) as client:
        infos = {(t.name, t.language): t for t in client.list_templates()}
    shipped = infos[("order_shipped", "en")]
    assert (shipped.body_param_count, shipped.url_button_param_count) == (2, 1)
    assert infos[("order_status_update", "en")].body_param_count == 4
    assert {t.category for t in infos.values()} == {"UTILITY"}


def test_sandbox_rejects_a_wrong_token_with_stop(
    sandbox_server: tuple[WhatsAppSandbox, RunningServer],
) -> None:
    """A wrong access token gets code 190, which the client maps to STOP."""
    sandbox, server = sandbox_server
    with (
        sandbox_client(server, sandbox, access_token="wrong") as client,
        pytest.raises(WhatsAppPermanentError) as caught,
    ):
        client.send_text("+4915123456789", "hi")
    assert (caught.value.code, caught.value.kind) == (190, WhatsAppErrorKind.STOP)


def test_connection_refused_is_retryable() -> None:
    """Nothing listening on the port: the request never left, so it is plain RETRY."""
    with serve_in_thread(WhatsAppSandbox().app) as server:
        url = server.url
    client = WhatsAppClient(
        base_url=url,
        api_version="v24.0",
        phone_number_id="1",
        waba_id="2",
        access_token="t",
        timeout=2.0,
    )
    with client, pytest.raises(WhatsAppTransientError) as caught:
        client.send_text("+4915123456789", "hi")
    assert caught.value.kind is WhatsAppErrorKind.RETRY
