"""The Wix sandbox over loopback: WixClient against WixSandbox, and the sandbox's Wix rules."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from notifier.domain import Tracking
from notifier.errors import WixPermanentError, WixTransientError
from notifier.sandbox import wix_query, wix_server
from notifier.sandbox.wix_seed import generate_orders, seed_1023
from notifier.sandbox.wix_server import WixSandbox
from notifier.serving import RunningServer, serve_in_thread
from notifier.wix import WixClient
from notifier.wix_parse import parse_datetime, parse_order

START = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
SEED_ID = "a1b2c3d4-5e6f-4a1b-8c2d-0123456789ab"
HEADERS = {"Authorization": "sandbox-wix-key", "wix-site-id": "sandbox-site"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Switch:
    """One loopback server per module; each test plugs its own fresh sandbox in."""

    def __init__(self) -> None:
        self.target = WixSandbox(clock=Clock())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.target.app(scope, receive, send)


@dataclass
class Site:
    sandbox: WixSandbox
    clock: Clock
    url: str
    client: WixClient

    def post(self, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/ecom/v1/orders/search",
            json=body,
            headers=HEADERS if headers is None else headers,
        )


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switch, RunningServer]]:
    switch = Switch()
    running = serve_in_thread(switch)
    yield switch, running
    switch.target.release()
    running.stop()


@pytest.fixture
def site(server: tuple[Switch, RunningServer]) -> Iterator[Site]:
    switch, running = server
    clock = Clock()
    switch.target = WixSandbox(clock=clock)
    client = WixClient(
        base_url=running.url,
        api_key="sandbox-wix-key",
        site_id="sandbox-site",
        timeout=5.0,
        sleep=lambda seconds: None,
    )
    yield Site(switch.target, clock, running.url, client)
    switch.target.release()
    client.close()


def numbered(count: int, **fields: str) -> list[dict[str, Any]]:
    """``count`` generated orders numbered 10001…, all updated before START − 1 h."""
    orders = generate_orders(random.Random(7), now=START - timedelta(hours=1), count=count)
    return [{**order, **fields} for order in orders]


def test_seed_order_is_found_by_guid_and_by_number(site: Site) -> None:
    """The guide's order 1023 comes back from Get Order and from Search by number."""
    site.sandbox.add_orders([seed_1023()])
    by_id = site.client.get_order(SEED_ID)
    by_number = site.client.find_by_number("1023")
    assert by_id is not None
    assert by_id == by_number
    assert (by_id.first_name, by_id.payment_status) == ("Priya", "PAID")


def test_get_returns_initialized_but_search_never_does(site: Site) -> None:
    """INITIALIZED orders exist for Get Order only, even when the filter names the status."""
    site.sandbox.add_orders([{**seed_1023(), "status": "INITIALIZED"}])
    assert site.client.get_order(SEED_ID) is not None
    assert site.client.find_by_number("1023") is None
    assert [p.orders for p in site.client.search_pages(None)] == [()]


def test_full_poll_pages_through_every_order_in_update_order(site: Site) -> None:
    """250 orders, page size 100: three pages, every order once, updatedDate ascending."""
    site.sandbox.add_orders(numbered(250))
    pages = list(site.client.search_pages(None))
    orders = [o for page in pages for o in page.orders]
    assert [len(p.orders) for p in pages] == [100, 100, 50]
    assert len({o.id for o in orders}) == 250
    stamps = [o.updated_date for o in orders]
    assert all(a is not None and b is not None and a <= b for a, b in itertools.pairwise(stamps))
    follow_up = site.sandbox.requests[1][2]
    assert set(follow_up["search"]) == {"cursorPaging"}


def test_br01_change_on_an_old_order_is_found_by_the_watermark_search(site: Site) -> None:
    """BR-01: 150 unpaid orders; 10003 (10 days old) becomes PAID; mark−2 min finds just it."""
    site.sandbox.add_orders(
        numbered(150, paymentStatus="NOT_PAID", fulfillmentStatus="NOT_FULFILLED")
    )
    order_id = site.sandbox.order_id_by_number("10003")
    assert site.sandbox.order_ids()[2] == order_id
    mark = START
    site.clock.now = START + timedelta(minutes=5)
    site.sandbox.set_payment(order_id, "PAID")
    pages = list(site.client.search_pages(mark - timedelta(minutes=2)))
    found = [o for p in pages for o in p.orders]
    assert [(o.number, o.payment_status) for o in found] == [("10003", "PAID")]
    assert found[0].updated_date == START + timedelta(minutes=5)


def test_br01b_a_504_on_page_two_fails_the_poll_after_page_one(site: Site) -> None:
    """BR-01(b): fail_next(504) on the second search page surfaces as a transient error."""
    site.sandbox.add_orders(numbered(150))
    pages = site.client.search_pages(None)
    assert len(next(pages).orders) == 100
    site.sandbox.fail_next(504, count=3, path_contains="/orders/search")
    with pytest.raises(WixTransientError) as info:
        next(pages)
    assert info.value.status == 504


def test_changes_stamp_updated_date_strictly_increasing(site: Site) -> None:
    """Two changes at the same clock reading are at least 1 ms apart."""
    site.sandbox.add_orders([seed_1023()])
    site.clock.now = START
    site.sandbox.set_payment(SEED_ID, "PAID")
    first = parse_datetime(site.sandbox.order(SEED_ID)["updatedDate"])
    site.sandbox.set_status(SEED_ID, "CANCELED")
    second = parse_datetime(site.sandbox.order(SEED_ID)["updatedDate"])
    assert first == START
    assert second == START + timedelta(milliseconds=1)


def test_tracking_added_with_a_fulfilment_is_returned(site: Site) -> None:
    """set_fulfillment with tracking adds a fulfilment that the client reads back."""
    site.sandbox.add_orders([seed_1023()])
    tracking = Tracking("TRK123", "delhivery", "https://track.example/TRK123")
    site.sandbox.set_fulfillment(SEED_ID, "FULFILLED", tracking)
    assert site.client.tracking(SEED_ID) == (tracking,)
    assert site.sandbox.order(SEED_ID)["fulfillmentStatus"] == "FULFILLED"
    listed = httpx.post(
        f"{site.url}/ecom/v1/fulfillments/list-by-ids",
        json={"orderIds": [SEED_ID, "nope"]},
        headers=HEADERS,
    ).json()
    assert [o["orderId"] for o in listed["ordersWithFulfillments"]] == [SEED_ID]


def test_tracking_for_orders_reads_many_orders_in_one_request(site: Site) -> None:
    """One List-fulfilments-by-ids call answers for every order: tracking where a fulfilment
    carries it, () for an order without one and for an unknown GUID."""
    (first,) = generate_orders(random.Random(5), now=START, count=1)
    site.sandbox.add_orders([seed_1023(), first])
    tracking = Tracking("TRK123", "delhivery", "https://track.example/TRK123")
    site.sandbox.set_fulfillment(SEED_ID, "FULFILLED", tracking)
    site.sandbox.set_fulfillment(first["id"], "FULFILLED")
    unknown = "00000000-0000-4000-8000-000000000000"
    before = site.sandbox.request_count

    found = site.client.tracking_for_orders([SEED_ID, first["id"], unknown])

    assert found == {SEED_ID: (tracking,), first["id"]: (), unknown: ()}
    assert site.sandbox.requests[before:] == [
        ("POST", "/ecom/v1/fulfillments/list-by-ids", {"orderIds": [SEED_ID, first["id"], unknown]})
    ]


def test_unknown_order_is_none_and_has_no_tracking(site: Site) -> None:
    """Get Order and fulfilments answer 404 for an unknown GUID: None and ()."""
    assert site.client.get_order(SEED_ID) is None
    assert site.client.tracking(SEED_ID) == ()


def test_missing_site_id_is_a_400_with_missing_site_context(site: Site) -> None:
    """No wix-site-id header → 400 "missing site context"; the client says which header."""
    response = site.post({"search": {}}, headers={"Authorization": "sandbox-wix-key"})
    assert response.status_code == 400
    assert response.json()["message"] == "missing site context"
    wrong_site = WixClient(base_url=site.url, api_key="sandbox-wix-key", site_id="other")
    with wrong_site, pytest.raises(WixPermanentError, match="wix-site-id") as info:
        wrong_site.find_by_number("1023")
    assert info.value.status == 400


def test_wrong_key_is_401_and_a_read_less_key_is_403(site: Site) -> None:
    """A bad key (or a Bearer-prefixed one) → 401; set_permission(False) → 403."""
    with (
        WixClient(base_url=site.url, api_key="Bearer sandbox-wix-key", site_id="sandbox-site") as c,
        pytest.raises(WixPermanentError, match="API key") as info,
    ):
        c.get_order(SEED_ID)
    assert info.value.status == 401
    site.sandbox.set_permission(False)
    with pytest.raises(WixPermanentError, match="permission") as info:
        site.client.get_order(SEED_ID)
    assert (info.value.status, info.value.code) == (403, "PERMISSION_DENIED")


def test_429_with_retry_after_reaches_the_client(site: Site) -> None:
    """fail_next(429, retry_after=2) → WixTransientError(retry_after=2.0), then normal again."""
    site.sandbox.add_orders([seed_1023()])
    site.sandbox.fail_next(429, retry_after=2)
    with pytest.raises(WixTransientError) as info:
        site.client.get_order(SEED_ID)
    assert info.value.retry_after == 2.0
    assert site.client.get_order(SEED_ID) is not None
    assert site.sandbox.request_count == 2


def test_a_hanging_request_times_out_as_transient(site: Site) -> None:
    """hang_next: the client's timeout fires and maps to WixTransientError; release() ends it."""
    site.sandbox.hang_next()
    with (
        WixClient(
            base_url=site.url, api_key="sandbox-wix-key", site_id="sandbox-site", timeout=0.3
        ) as impatient,
        pytest.raises(WixTransientError, match="timed out"),
    ):
        impatient.get_order(SEED_ID)
    site.sandbox.release()
    assert site.client.get_order(SEED_ID) is None


def test_freeze_visibility_hides_a_change_from_search_only(site: Site) -> None:
    """Eventual consistency: Search shows the old version for a while, Get Order the new one."""
    site.sandbox.add_orders([seed_1023()])
    site.sandbox.freeze_visibility(60)
    site.sandbox.set_payment(SEED_ID, "FULLY_REFUNDED")
    found = site.client.find_by_number("1023")
    assert found is not None
    assert found.payment_status == "PAID"
    fetched = site.client.get_order(SEED_ID)
    assert fetched is not None
    assert fetched.payment_status == "FULLY_REFUNDED"
    site.clock.now = START + timedelta(seconds=61)
    later = site.client.find_by_number("1023")
    assert later is not None
    assert later.payment_status == "FULLY_REFUNDED"


# -- the sandbox's Search rules, over raw HTTP ---------------------------------------------


def numbers(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [o["number"] for o in response.json()["orders"]]


def test_default_search_hides_pending_and_rejected_and_sorts_created_desc(site: Site) -> None:
    """No status in the filter → no PENDING/REJECTED; default order is createdDate DESC."""
    orders = numbered(4, status="APPROVED")
    orders[1]["status"], orders[2]["status"] = "PENDING", "REJECTED"
    site.sandbox.add_orders(orders)
    shown = numbers(site.post({"search": {}}))
    expected = sorted(
        (o for o in orders if o["status"] == "APPROVED"), key=lambda o: o["createdDate"]
    )
    assert shown == [o["number"] for o in reversed(expected)]
    named = {"filter": {"status": {"$in": ["PENDING", "REJECTED"]}}}
    assert sorted(numbers(site.post({"search": named}))) == ["10002", "10003"]


def test_number_filter_matches_int_and_string_forms(site: Site) -> None:
    """{"number": 10002} and {"number": "10002"} find the order stored as "10002"."""
    site.sandbox.add_orders(numbered(3, status="APPROVED"))
    assert numbers(site.post({"search": {"filter": {"number": 10002}}})) == ["10002"]
    assert numbers(site.post({"search": {"filter": {"number": {"$eq": "10002"}}}})) == ["10002"]
    gt = {"filter": {"number": {"$gt": 10001}}, "sort": [{"fieldName": "number", "order": "ASC"}]}
    assert numbers(site.post({"search": gt})) == ["10002", "10003"]


def test_and_or_ne_in_and_email_filters(site: Site) -> None:
    """$and/$or/$ne/$in/buyerInfo.email combine as in Mongo."""
    site.sandbox.add_orders(numbered(4, status="APPROVED", paymentStatus="NOT_PAID"))
    site.sandbox.set_payment(site.sandbox.order_id_by_number(10002), "PAID")
    query = {
        "$or": [
            {"paymentStatus": {"$in": ["PAID"]}},
            {"$and": [{"buyerInfo.email": "buyer10004@example.com"}, {"number": {"$ne": 1}}]},
        ]
    }
    sort = [{"fieldName": "number", "order": "DESC"}]
    assert numbers(site.post({"search": {"filter": query, "sort": sort}})) == ["10004", "10002"]


@pytest.mark.parametrize(
    ("search", "field"),
    [
        ({"cursorPaging": {"limit": 101}}, "cursorPaging.limit"),
        ({"filter": {"updatedDate": {"$gte": "2026-01-01T00:00:00.000Z", "$lt": "2027"}}}, None),
        ({"filter": {"phone": "0555"}}, "filter.phone"),
        ({"filter": {"status": {"$regex": "A"}}}, "filter.status"),
        ({"filter": {"createdDate": {"$gt": "not a date"}}}, "filter.createdDate"),
        ({"sort": [{"fieldName": "phone"}]}, "sort"),
        ({"filter": {}, "cursorPaging": {"cursor": "abc"}}, "cursorPaging.cursor"),
        ({"cursorPaging": {"cursor": "!!!"}}, "cursorPaging.cursor"),
    ],
)
def test_invalid_searches_get_a_wix_validation_error(
    site: Site, search: dict[str, Any], field: str | None
) -> None:
    """limit > 100, $gte+$lt in one date object, unfilterable fields, cursor+filter → 400."""
    response = site.post({"search": search})
    assert response.status_code == 400
    violations = response.json()["details"]["validationError"]["fieldViolations"]
    assert field is None or violations[0]["field"] == field


def test_default_limit_is_50_and_cursor_pages_continue(site: Site) -> None:
    """Without a limit a page holds 50; the opaque next cursor alone fetches the rest."""
    site.sandbox.add_orders(numbered(60, status="APPROVED"))
    first = site.post({"search": {}}).json()
    assert (first["metadata"]["count"], first["metadata"]["hasNext"]) == (50, True)
    cursor = first["metadata"]["cursors"]["next"]
    second = site.post({"search": {"cursorPaging": {"cursor": cursor}}}).json()
    assert (second["metadata"]["count"], second["metadata"]["hasNext"]) == (10, False)
    assert "prev" in second["metadata"]["cursors"]
    seen = {o["id"] for o in first["orders"]} | {o["id"] for o in second["orders"]}
    assert len(seen) == 60


def test_search_page_runs_without_http_and_wix_server_reexports_the_query_names() -> None:
    """wix_query.search_page pages raw orders directly; wix_server still exposes its query names."""
    orders = numbered(5, status="APPROVED")
    asc = [{"fieldName": "number", "order": "ASC"}]
    page = wix_query.search_page(orders, {"sort": asc, "cursorPaging": {"limit": 2}})
    assert [o["number"] for o in page.orders] == ["10001", "10002"]
    follow_up = {"cursorPaging": {"limit": 2, "cursor": page.cursors["next"]}}
    rest = wix_query.search_page(orders, follow_up)
    assert [o["number"] for o in rest.orders] == ["10003", "10004"]
    assert wix_server.QueryError is wix_query.QueryError
    assert wix_server.compile_filter is wix_query.compile_filter
    with pytest.raises(wix_query.QueryError):
        wix_query.search_page(orders, {"cursorPaging": {"limit": 0}})


def test_add_generated_numbers_after_the_highest_stored_order(site: Site) -> None:
    """add_generated starts at 10001, continues after the highest number, and is searchable."""
    first = site.sandbox.add_generated(3, random.Random(5), START)
    site.sandbox.add_orders([seed_1023()])
    second = site.sandbox.add_generated(2, random.Random(6), START)
    assert site.sandbox.order_ids() == [*first, SEED_ID, *second]
    assert [site.sandbox.order(i)["number"] for i in first + second] == [
        "10001",
        "10002",
        "10003",
        "10004",
        "10005",
    ]
    found = site.client.find_by_number("10005")
    assert found is not None
    assert found.id == second[1]


def test_unknown_order_404_has_a_wix_error_body(site: Site) -> None:
    """GET of an unknown id → 404 with details.applicationError.code NOT_FOUND."""
    response = httpx.get(f"{site.url}/ecom/v1/orders/{SEED_ID}", headers=HEADERS)
    assert response.status_code == 404
    assert response.json()["details"]["applicationError"]["code"] == "NOT_FOUND"


# -- generated orders -----------------------------------------------------------------------


def test_generated_orders_are_deterministic_realistic_and_parseable() -> None:
    """Same seed → same orders; numbers run from 10001; created in the last 30 days; mostly IN."""
    first = generate_orders(random.Random(3), now=START, count=300)
    assert first == generate_orders(random.Random(3), now=START, count=300)
    assert [o["number"] for o in first[:3]] == ["10001", "10002", "10003"]
    parsed = [parse_order(o) for o in first]
    assert all(
        o.created_date is not None and START - timedelta(days=30) <= o.created_date <= START
        for o in parsed
    )
    countries = [o.country for o in parsed]
    assert countries.count("IN") > len(parsed) / 2
    assert {"DE", "BR", "AR", "US", "GB", "AE"} <= set(countries)
    assert {o.currency for o in parsed} == {"INR", "EUR", "BRL", "USD"}
    assert {o.buyer_language for o in parsed} == {"en", "hi"}
    assert any(not o.phones for o in parsed)
    assert any(o.first_name is None for o in parsed)
    assert all(1 <= len(o.line_items) <= 4 for o in parsed)
    assert "+919820000001" not in {p.raw for o in parsed for p in o.phones}


def test_seed_1023_is_the_guides_order() -> None:
    """seed_1023() is the shipped copy of seed-order.json's order."""
    order = seed_1023()
    assert (order["id"], order["number"], order["priceSummary"]["total"]["amount"]) == (
        SEED_ID,
        "1023",
        "1299.00",
    )
