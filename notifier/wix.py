"""The Wix eCommerce Orders adapter: search since a watermark, get, find by number, tracking.

Every failure leaves this module as one of two families (see ``errors``):
``WixTransientError`` (429, 5xx, timeouts, connection errors, unreadable JSON) or
``WixPermanentError`` (400, 401, 403, 404 outside Get Order, 428, other 4xx), with the likely fix.
A 5xx or a dropped connection is first retried within the call (``RETRY_POLICY``, jitter from an
injected random source); a timeout or a 429 is not: the poll ends and ``sync`` decides when the next
one may start.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
import structlog

from notifier.domain import Order, PollPage, Tracking
from notifier.errors import WixPermanentError, WixTransientError
from notifier.retry import RandomSource, RetryPolicy, backoff_seconds
from notifier.wix_parse import (
    BadOrder,
    dig,
    format_datetime,
    order_id_of,
    parse_order,
    parse_tracking,
    parse_tracking_by_order,
)

SEARCH_PATH = "/ecom/v1/orders/search"
ORDER_PATH = "/ecom/v1/orders/{order_id}"
FULFILLMENTS_PATH = "/ecom/v1/fulfillments/orders/{order_id}"
LIST_FULFILLMENTS_PATH = "/ecom/v1/fulfillments/list-by-ids"
# Search leaves out PENDING and REJECTED (perhaps CANCELED) unless the filter names ``status``.
SEARCHED_STATUSES = ("APPROVED", "CANCELED", "PENDING", "REJECTED", "INITIALIZED")
DEFAULT_RETRY_AFTER = 60.0
MAX_PAGE_SIZE = 100
# 5xx and dropped connections, within one call: 3 tries, about 0.5 s then 1 s apart.
RETRY_POLICY = RetryPolicy(base_seconds=0.5, factor=2.0, max_seconds=4.0, max_attempts=3)

log = structlog.get_logger("notifier.wix")

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ORDER_NUMBER = re.compile(r"[0-9]{1,18}")
_PERMANENT_HINTS = {
    400: "bad request: missing or wrong wix-site-id, or a malformed query",
    401: "unauthorised: check the API key",
    403: "forbidden: the key lacks eCommerce read permission for this site",
    404: "not found: check the base URL and the site id",
    428: "precondition failed: the site may lack eCommerce (Wix Stores) or the request needs it",
}


class _ConnectionLostError(Exception):
    """The connection failed or dropped before an answer (refused, reset): worth a retry."""


def is_guid(value: str) -> bool:
    """True when ``value`` has the shape of a Wix GUID (safe to put in a URL path)."""
    return _GUID.fullmatch(value) is not None


class WixClient:
    """A synchronous client for one Wix site, authenticated with an API key."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        site_id: str,
        timeout: float = 10.0,
        page_size: int = 100,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy = RETRY_POLICY,
        rng: RandomSource | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        self.page_size = page_size
        self.request_count = 0
        self._retry = retry
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": api_key,
                "wix-site-id": site_id,
                "Content-Type": "application/json",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"WixClient(base_url={str(self._http.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WixClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- use cases -------------------------------------------------------------------------

    def search_pages(self, since: datetime | None) -> Iterator[PollPage]:
        """Orders updated at or after ``since`` (all when None), oldest update first, page by page.

        The first request carries filter and sort; follow-ups send only the cursor, as Wix requires.
        """
        search: dict[str, Any] = {
            "filter": search_filter(since),
            "sort": [{"fieldName": "updatedDate", "order": "ASC"}],
            "cursorPaging": {"limit": self.page_size},
        }
        seen: set[str] = set()
        while True:
            response = self._request("POST", SEARCH_PATH, {"search": search})
            yield page_of(response)
            cursor = dig(response, "metadata", "cursors", "next")
            has_next = dig(response, "metadata", "hasNext") is True
            if not has_next or not isinstance(cursor, str) or not cursor:
                return
            if cursor in seen:
                raise WixTransientError("Wix search returned a cursor it had already given")
            seen.add(cursor)
            search = {"cursorPaging": {"limit": self.page_size, "cursor": cursor}}

    def get_order(self, order_id: str) -> Order | None:
        """The order with this GUID (INITIALIZED included); None if not a GUID or not found."""
        if not is_guid(order_id):
            return None
        response = self._get_or_none(ORDER_PATH.format(order_id=order_id))
        if response is None:
            return None
        return _single_order(response.get("order"))

    def find_by_number(self, number: str) -> Order | None:
        """The order shown to the buyer as ``number`` (digits only); None if absent or malformed."""
        if _ORDER_NUMBER.fullmatch(number) is None:
            return None
        search = {
            "filter": {"number": int(number), "status": {"$in": list(SEARCHED_STATUSES)}},
            "cursorPaging": {"limit": 1},
        }
        response = self._request("POST", SEARCH_PATH, {"search": search})
        for order in page_of(response).orders:
            if order.number is not None and order.number.lstrip("0") == number.lstrip("0"):
                return order
        return None

    def tracking(self, order_id: str) -> tuple[Tracking, ...]:
        """Tracking of the order's fulfilments; () when none, not found or not a GUID."""
        if not is_guid(order_id):
            return ()
        response = self._get_or_none(FULFILLMENTS_PATH.format(order_id=order_id))
        return () if response is None else parse_tracking(response)

    def tracking_for_orders(self, order_ids: Iterable[str]) -> dict[str, tuple[Tracking, ...]]:
        """Tracking of several orders, one List-fulfilments request per 100 ids; an order that is
        unknown, not a GUID or without fulfilments maps to ()."""
        wanted = list(dict.fromkeys(order_ids))
        guids = [order_id for order_id in wanted if is_guid(order_id)]
        found: dict[str, tuple[Tracking, ...]] = {}
        for start in range(0, len(guids), MAX_PAGE_SIZE):
            chunk = guids[start : start + MAX_PAGE_SIZE]
            response = self._request("POST", LIST_FULFILLMENTS_PATH, {"orderIds": chunk})
            found.update(parse_tracking_by_order(response))
        return {order_id: found.get(order_id, ()) for order_id in wanted}

    # -- transport -------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None) -> httpx.Response:
        """One call, with a 5xx or a dropped connection retried after a jittered backoff.

        A timeout is not retried here: it already cost a whole timeout, and retrying would let a
        Wix that accepts and never answers hold the poll for several; the next poll retries it.
        Every Wix call we make is a read, so repeating one is harmless.
        """
        content = None if body is None else json.dumps(body).encode()
        attempt = 1
        while True:
            try:
                response = self._send_once(method, path, content)
            except _ConnectionLostError as lost:
                if attempt >= self._retry.max_attempts:
                    raise WixTransientError(str(lost)) from lost.__cause__
                reason = str(lost)
            else:
                if response.status_code < 500 or attempt >= self._retry.max_attempts:
                    return response
                reason = f"Wix server error {response.status_code} on {method} {path}"
            delay = backoff_seconds(self._retry, attempt=attempt, rng=self._rng)
            log.info("wix.retrying", reason=reason, attempt=attempt, delay_seconds=round(delay, 3))
            self._sleep(delay)
            attempt += 1

    def _send_once(self, method: str, path: str, content: bytes | None) -> httpx.Response:
        self.request_count += 1
        try:
            return self._http.request(method, path, content=content)
        except httpx.TimeoutException as exc:
            raise WixTransientError(f"Wix {method} {path} timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise _ConnectionLostError(f"Wix {method} {path} failed: {exc!r}") from exc

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return checked_json(self._send(method, path, body))

    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        response = self._send("GET", path, None)
        return None if response.status_code == 404 else checked_json(response)


def search_filter(since: datetime | None) -> dict[str, Any]:
    """The Search filter: every status we care about, and ``updatedDate >= since`` when given."""
    status = {"status": {"$in": list(SEARCHED_STATUSES)}}
    if since is None:
        return status
    return {"$and": [status, {"updatedDate": {"$gte": format_datetime(since)}}]}


def page_of(response: Mapping[str, Any] | None) -> PollPage:
    """A Search response as a PollPage; orders without an id become ``bad_orders``."""
    raws = dig(response, "orders")
    if raws is None:
        return PollPage(orders=())
    if not isinstance(raws, list):
        raise WixTransientError("Wix search response has a non-list 'orders'")
    orders: list[Order] = []
    bad: list[tuple[str, str]] = []
    for raw in raws:
        try:
            orders.append(parse_order(raw))
        except BadOrder as exc:
            bad.append((order_id_of(raw) or "?", exc.reason))
    return PollPage(orders=tuple(orders), bad_orders=tuple(bad))


def _single_order(raw: object) -> Order:
    try:
        return parse_order(raw)  # type: ignore[arg-type]  # parse_order rejects non-mappings
    except BadOrder as exc:
        raise WixPermanentError(
            f"Wix returned an unusable order: {exc.reason}", status=200
        ) from exc


def checked_json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx response; raises the mapped error for any other status."""
    if not response.is_success:
        raise error_for(response)
    try:
        body = response.json()
    except ValueError as exc:
        raise WixTransientError(
            f"Wix answered {response.status_code} with invalid JSON", status=response.status_code
        ) from exc
    if not isinstance(body, dict):
        raise WixTransientError(
            f"Wix answered {response.status_code} with a non-object body",
            status=response.status_code,
        )
    return body


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return DEFAULT_RETRY_AFTER
    return seconds if 0 <= seconds < float("inf") else DEFAULT_RETRY_AFTER


def _wix_message(response: httpx.Response) -> tuple[str | None, str | None]:
    """(applicationError.code, Wix's message) from an error body, when it has them."""
    try:
        body = response.json()
    except ValueError:
        return None, None
    code = dig(body, "details", "applicationError", "code")
    message = dig(body, "message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) and message else None,
    )


def error_for(response: httpx.Response) -> WixTransientError | WixPermanentError:
    """The notifier error for a non-2xx Wix response."""
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    if status == 429:
        retry_after = _retry_after(response)
        return WixTransientError(
            f"Wix rate limit on {where}; retry in {retry_after:g} s",
            status=status,
            retry_after=retry_after,
        )
    if status >= 500:
        return WixTransientError(f"Wix server error {status} on {where}", status=status)
    code, wix_message = _wix_message(response)
    hint = _PERMANENT_HINTS.get(status, f"unexpected status {status}")
    detail = f" (Wix: {wix_message})" if wix_message else ""
    return WixPermanentError(f"Wix {status} on {where}: {hint}{detail}", status=status, code=code)
