"""WixClient at its wire: recorded Wix payloads replayed through httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.domain import Tracking
from notifier.errors import WixPermanentError, WixTransientError
from notifier.wix import SEARCHED_STATUSES, WixClient

DATA = Path(__file__).parent / "data" / "wix"
BASE = "https://wix.test"
ORDER_ID = "58c9a790-27b7-463f-a865-c7cb494f7c29"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text("utf-8"))


class Recorder:
    """A MockTransport handler: answers from a queue and keeps every request."""

    def __init__(self, *responses: httpx.Response | Callable[[httpx.Request], httpx.Response]):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0)
        return answer(request) if callable(answer) else answer

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


@pytest.fixture
def client_for() -> Iterator[Callable[[Recorder], WixClient]]:
    clients: list[WixClient] = []

    def make(recorder: Recorder) -> WixClient:
        client = WixClient(
            base_url=BASE,
            api_key="key-123",
            site_id="site-9",
            transport=httpx.MockTransport(recorder),
            sleep=lambda seconds: None,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def ok(payload: Any) -> httpx.Response:
    return httpx.Response(200, json=payload)


def test_every_request_carries_the_raw_key_site_id_and_json_type(client_for: Any) -> None:
    """Authorization is the raw key (no Bearer), plus wix-site-id and Content-Type JSON."""
    recorder = Recorder(ok(load("get-order-rest.json")))
    client_for(recorder).get_order(ORDER_ID)
    headers = recorder.requests[0].headers
    assert headers["authorization"] == "key-123"
    assert headers["wix-site-id"] == "site-9"
    assert headers["content-type"] == "application/json"
    assert recorder.requests[0].url == f"{BASE}/ecom/v1/orders/{ORDER_ID}"


def test_br01_search_filters_by_watermark_sorts_ascending_and_follows_cursors(
    client_for: Any,
) -> None:
    """BR-01: updatedDate $gte mark + every status, updatedDate ASC, cursor-only follow-ups."""
    page1, page2 = load("search-orders-response.json"), load("search-orders-response-page2.json")
    page2["metadata"] = {"count": 2, "cursors": {}, "hasNext": False}
    recorder = Recorder(ok(page1), ok(page2))
    client = client_for(recorder)
    since = datetime(2025, 3, 10, 17, 28, 5, 7000, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    pages = list(client.search_pages(since))
    assert [o.number for p in pages for o in p.orders] == ["10126", "10125", "10135", "10134"]
    first, second = recorder.bodies()
    assert first == {
        "search": {
            "filter": {
                "$and": [
                    {"status": {"$in": list(SEARCHED_STATUSES)}},
                    {"updatedDate": {"$gte": "2025-03-10T11:58:05.007Z"}},
                ]
            },
            "sort": [{"fieldName": "updatedDate", "order": "ASC"}],
            "cursorPaging": {"limit": 100},
        }
    }
    assert second == {
        "search": {"cursorPaging": {"limit": 100, "cursor": page1["metadata"]["cursors"]["next"]}}
    }
    assert all(
        r.method == "POST" and r.url.path == "/ecom/v1/orders/search" for r in recorder.requests
    )
    assert client.request_count == 2


def test_search_without_watermark_filters_only_by_status(client_for: Any) -> None:
    """No mark yet: the filter still names every status so PENDING/REJECTED are not hidden."""
    recorder = Recorder(ok({"orders": [], "metadata": {"count": 0, "hasNext": False}}))
    assert [p.orders for p in client_for(recorder).search_pages(None)] == [()]
    assert recorder.bodies()[0]["search"]["filter"] == {
        "status": {"$in": ["APPROVED", "CANCELED", "PENDING", "REJECTED", "INITIALIZED"]}
    }


def test_search_yields_page_by_page_so_the_caller_can_commit_between(client_for: Any) -> None:
    """The second page is requested only when the caller asks for it."""
    recorder = Recorder(ok(load("search-orders-response.json")), ok({"orders": []}))
    pages = client_for(recorder).search_pages(None)
    next(pages)
    assert len(recorder.requests) == 1
    assert next(pages).orders == ()
    assert len(recorder.requests) == 2


def test_br01b_a_failing_second_page_raises_after_the_first_page_was_yielded(
    client_for: Any,
) -> None:
    """BR-01(b): page 2 answering 504 three times surfaces as WixTransientError mid-iteration."""
    recorder = Recorder(ok(load("search-orders-response.json")), *[httpx.Response(504)] * 3)
    pages = client_for(recorder).search_pages(None)
    assert len(next(pages).orders) == 2
    with pytest.raises(WixTransientError) as info:
        next(pages)
    assert info.value.status == 504


def test_orders_without_id_become_bad_orders_not_failures(client_for: Any) -> None:
    """One order lacking an id is reported in bad_orders; the rest of the page still parses."""
    good = load("search-orders-response.json")["orders"][0]
    recorder = Recorder(ok({"orders": [good, {"number": "7"}, 5], "metadata": {"hasNext": False}}))
    (page,) = client_for(recorder).search_pages(None)
    assert [o.id for o in page.orders] == [good["id"]]
    assert page.bad_orders == (("?", "order has no id"), ("?", "order has no id"))


def test_a_repeated_cursor_stops_with_a_transient_error(client_for: Any) -> None:
    """A server handing out the same cursor twice cannot trap the poller in a loop."""
    same = {"orders": [], "metadata": {"cursors": {"next": "c1"}, "hasNext": True}}
    recorder = Recorder(ok(same), ok(same))
    with pytest.raises(WixTransientError, match="cursor"):
        list(client_for(recorder).search_pages(None))


def test_get_order_parses_the_order(client_for: Any) -> None:
    """GET order returns the parsed order with its partial statuses."""
    order = client_for(Recorder(ok(load("get-order-rest.json")))).get_order(ORDER_ID)
    assert order is not None
    assert (order.number, order.payment_status) == ("10005", "PARTIALLY_PAID")


@pytest.mark.parametrize("bad_id", ["1023", "../../admin", f"{ORDER_ID}/x", "", ORDER_ID + "0"])
def test_get_order_refuses_non_guids_without_a_request(client_for: Any, bad_id: str) -> None:
    """Customer text that is not a GUID never reaches a URL."""
    recorder = Recorder()
    client = client_for(recorder)
    assert client.get_order(bad_id) is None
    assert client.tracking(bad_id) == ()
    assert recorder.requests == []


def test_get_order_404_is_none(client_for: Any) -> None:
    """Not found → None, not an error."""
    body = {"message": "nope", "details": {"applicationError": {"code": "NOT_FOUND"}}}
    assert client_for(Recorder(httpx.Response(404, json=body))).get_order(ORDER_ID) is None


def test_find_by_number_filters_number_as_an_int_with_statuses(client_for: Any) -> None:
    """Search by number sends {"number": 10126} plus the status $in, and returns that order."""
    recorder = Recorder(ok(load("search-orders-response.json")))
    order = client_for(recorder).find_by_number("10126")
    assert order is not None
    assert order.id == "6f759095-0701-4075-9908-c9c31ff013e1"
    assert recorder.bodies()[0] == {
        "search": {
            "filter": {"number": 10126, "status": {"$in": list(SEARCHED_STATUSES)}},
            "cursorPaging": {"limit": 1},
        }
    }


@pytest.mark.parametrize("number", ["#1023", "10 26", "", "1023x", "١٢٣"])
def test_find_by_number_rejects_non_digits_without_a_request(client_for: Any, number: str) -> None:
    """Only ASCII digits are searched; anything else is None without a request."""
    recorder = Recorder()
    assert client_for(recorder).find_by_number(number) is None
    assert recorder.requests == []


def test_find_by_number_ignores_a_different_order_in_the_answer(client_for: Any) -> None:
    """A response holding another number (a server ignoring the filter) is not a match."""
    assert client_for(Recorder(ok(load("search-orders-response.json")))).find_by_number("1") is None


def test_tracking_reads_the_fulfilments_endpoint(client_for: Any) -> None:
    """GET /ecom/v1/fulfillments/orders/{id} → Tracking tuple; 404 → ()."""
    order_id = "265c7d98-a7c3-48c4-89cd-bbdc00921eab"
    recorder = Recorder(ok(load("list-fulfillments-single-order.json")), httpx.Response(404))
    client = client_for(recorder)
    (tracking,) = client.tracking(order_id)
    assert tracking == Tracking(
        "12345", "ups", "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=12345"
    )
    assert recorder.requests[0].url.path == f"/ecom/v1/fulfillments/orders/{order_id}"
    assert client.tracking(order_id) == ()


def test_tracking_for_orders_asks_once_per_hundred_guids(client_for: Any) -> None:
    """List-fulfilments-by-ids: GUIDs only, each once, 100 per request; an order absent from the
    answer (unknown, or a non-GUID never asked about) maps to ()."""
    guids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(150)]
    single = load("list-fulfillments-single-order.json")["orderWithFulfillments"]

    def answer(request: httpx.Request) -> httpx.Response:
        asked = json.loads(request.content)["orderIds"]
        listed = [{**single, "orderId": order_id} for order_id in asked if order_id != guids[1]]
        return ok({"ordersWithFulfillments": listed})

    recorder = Recorder(answer, answer)
    found = client_for(recorder).tracking_for_orders([*guids, guids[0], "1023; DROP"])

    assert [len(body["orderIds"]) for body in recorder.bodies()] == [100, 50]
    assert {r.url.path for r in recorder.requests} == {"/ecom/v1/fulfillments/list-by-ids"}
    assert {r.method for r in recorder.requests} == {"POST"}
    ups = Tracking(
        "12345", "ups", "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=12345"
    )
    assert found[guids[0]] == found[guids[149]] == (ups,)
    assert found[guids[1]] == found["1023; DROP"] == ()
    assert len(found) == 151


def test_tracking_for_no_guid_asks_nothing(client_for: Any) -> None:
    """Nothing to look up (no ids, or none a GUID) sends no request."""
    recorder = Recorder()
    assert client_for(recorder).tracking_for_orders(["1023"]) == {"1023": ()}
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (400, "MISSING_SITE_CONTEXT", "wix-site-id"),
        (401, "UNAUTHENTICATED", "check the API key"),
        (403, "PERMISSION_DENIED", "lacks eCommerce read permission"),
        (404, "NOT_FOUND", "base URL"),
        (428, None, "precondition"),
    ],
)
def test_client_errors_are_permanent_with_the_likely_fix(
    client_for: Any, status: int, code: str | None, hint: str
) -> None:
    """400/401/403/404 (outside Get Order)/428 → WixPermanentError with code and a hint."""
    details = {"applicationError": {"code": code}} if code else {}
    response = httpx.Response(status, json={"message": "wix says no", "details": details})
    with pytest.raises(WixPermanentError, match=hint) as info:
        list(client_for(Recorder(response)).search_pages(None))
    assert (info.value.status, info.value.code) == (status, code)
    assert "wix says no" in str(info.value)


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), (None, 60.0), ("soon", 60.0)])
def test_429_is_transient_and_honours_retry_after(
    client_for: Any, header: str | None, expected: float
) -> None:
    """429 → WixTransientError with Retry-After seconds, else a minute."""
    headers = {"Retry-After": header} if header else {}
    recorder = Recorder(httpx.Response(429, headers=headers))
    with pytest.raises(WixTransientError) as info:
        client_for(recorder).find_by_number("1023")
    assert (info.value.status, info.value.retry_after) == (429, expected)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500),
        httpx.Response(503, text="<html>busy</html>"),
        httpx.Response(200, text="{not json"),
        httpx.Response(200, json=["not", "an", "object"]),
    ],
)
def test_server_errors_and_garbage_are_transient(client_for: Any, answer: httpx.Response) -> None:
    """5xx (after the call's retries) and unreadable 200 bodies → WixTransientError."""
    with pytest.raises(WixTransientError):
        client_for(Recorder(answer, answer, answer)).get_order(ORDER_ID)


@pytest.mark.parametrize(
    ("exc", "tries"),
    [
        (httpx.ConnectError("refused"), 3),
        (httpx.ReadTimeout("slow"), 1),
        (httpx.RemoteProtocolError("x"), 3),
    ],
)
def test_transport_failures_are_transient(client_for: Any, exc: Exception, tries: int) -> None:
    """Connection errors (after the call's retries) and timeouts (at once) → WixTransientError,
    every try counted as a request."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    client = client_for(Recorder(*[fail] * 3))
    with pytest.raises(WixTransientError):
        client.tracking(ORDER_ID)
    assert client.request_count == tries


def test_get_order_with_an_unusable_body_is_permanent(client_for: Any) -> None:
    """A 200 without an order id cannot be fixed by retrying."""
    with pytest.raises(WixPermanentError, match="unusable order"):
        client_for(Recorder(ok({"order": {"number": "1"}}))).get_order(ORDER_ID)


def test_page_size_must_be_within_wix_limits() -> None:
    """page_size above 100 (Wix's maximum) or below 1 is refused at construction."""
    for size in (0, 101):
        with pytest.raises(ValueError, match="page_size"):
            WixClient(base_url=BASE, api_key="k", site_id="s", page_size=size)


def test_repr_never_shows_the_api_key() -> None:
    """The key is a secret: repr shows the base URL only."""
    with WixClient(base_url=BASE, api_key="secret-key", site_id="s") as client:
        assert "secret-key" not in repr(client)


def test_search_rejects_a_naive_watermark(client_for: Any) -> None:
    """A naive datetime cannot be a UTC watermark."""
    with pytest.raises(ValueError, match="naive"):
        list(client_for(Recorder()).search_pages(datetime(2026, 1, 1)))
