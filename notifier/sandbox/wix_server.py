"""An in-memory Wix eCommerce Orders API for the demo and tests, faithful to docs/wix.md.

Search follows Wix's rules (the query language lives in ``wix_query``) and never shows
``INITIALIZED`` orders; an optional visibility freeze mimics Wix's eventually consistent index.
Auth and error bodies are Wix-shaped.
The control methods (``set_payment``, ``fail_next``, ``hang_next``, ``inject_faults``…) are
thread-safe.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifier.domain import Tracking
from notifier.sandbox.faults import Fault, FaultInjector, FaultPlan
from notifier.sandbox.wix_query import (
    DATE_FIELDS,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    QUERYABLE,
    QueryError,
    compile_filter,
    field_value,
    mentions_status,
    search_page,
    sort_orders,
)
from notifier.sandbox.wix_seed import generate_orders
from notifier.wix_parse import format_datetime, parse_datetime, parse_decimal

__all__ = [
    "DATE_FIELDS",
    "DEFAULT_LIMIT",
    "HANG_CAP_SECONDS",
    "MAX_LIMIT",
    "QUERYABLE",
    "QueryError",
    "WixSandbox",
    "compile_filter",
    "field_value",
    "mentions_status",
    "sort_orders",
    "validation_error",
    "wix_error",
]

HANG_CAP_SECONDS = 120.0
_ONE_MS = timedelta(milliseconds=1)
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    428: "PRECONDITION_FAILED",
    429: "TOO_MANY_REQUESTS",
}

Handler = Callable[[Request, Any], Response]


# -- responses --------------------------------------------------------------------------------


def wix_error(status: int, message: str, code: str | None = None) -> JSONResponse:
    """A Wix application-error response."""
    code = code or _ERROR_CODES.get(status, "ERROR")
    details = {"applicationError": {"code": code, "description": message, "data": {}}}
    return JSONResponse({"message": message, "details": details}, status_code=status)


def validation_error(field: str, description: str) -> JSONResponse:
    """A Wix validation-error response (400)."""
    violation = {"field": field, "description": description, "violatedRule": "OTHER"}
    details = {"validationError": {"fieldViolations": [violation]}}
    return JSONResponse({"message": description, "details": details}, status_code=400)


@dataclass
class _Failure:
    status: int
    remaining: int
    path_contains: str | None
    retry_after: float | None


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class WixSandbox:
    """The fake Wix site: ``.app`` is the Starlette app, the other methods drive it."""

    def __init__(
        self,
        *,
        api_key: str = "sandbox-wix-key",
        site_id: str = "sandbox-site",
        clock: Callable[[], datetime],
    ) -> None:
        self.api_key = api_key
        self.site_id = site_id
        self._clock = clock
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, Any]] = {}
        self._fulfilments: dict[str, list[dict[str, Any]]] = {}
        self._last_stamp: datetime | None = None
        self._readable = True
        self._failures: list[_Failure] = []
        self._hangs = 0
        self._release_generation = 0
        self._held = 0
        self._faults: FaultInjector | None = None
        self._freeze: timedelta | None = None
        self._stale: dict[str, tuple[datetime, dict[str, Any] | None]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/ecom/v1/orders/search", self._endpoint(self._search), methods=["POST"]),
                Route("/ecom/v1/orders/{order_id}", self._endpoint(self._get), methods=["GET"]),
                Route(
                    "/ecom/v1/fulfillments/orders/{order_id}",
                    self._endpoint(self._fulfilments_of),
                    methods=["GET"],
                ),
                Route(
                    "/ecom/v1/fulfillments/list-by-ids",
                    self._endpoint(self._list_fulfilments),
                    methods=["POST"],
                ),
            ]
        )

    # -- control API -----------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def add_orders(self, raws: Iterable[Mapping[str, Any]]) -> None:
        """Store orders as given (a ``{"order": …}`` wrapper is unwrapped); dates default to now."""
        with self._lock:
            for raw in raws:
                order = copy.deepcopy(dict(raw.get("order", raw)))
                if not isinstance(order.get("id"), str):
                    raise ValueError("a sandbox order needs a string 'id'")
                now = format_datetime(self._clock())
                order.setdefault("createdDate", now)
                order.setdefault("updatedDate", order["createdDate"])
                self._remember_visible(order["id"])
                self._orders[order["id"]] = order

    def set_payment(self, order_id: str, status: str) -> None:
        self._change(order_id, paymentStatus=status)

    def set_status(self, order_id: str, status: str) -> None:
        self._change(order_id, status=status)

    def set_fulfillment(self, order_id: str, status: str, tracking: Tracking | None = None) -> None:
        """Set ``fulfillmentStatus``; with ``tracking``, also add a fulfilment carrying it."""
        with self._lock:
            if tracking is not None:
                self._add_fulfilment(order_id, tracking)
        self._change(order_id, fulfillmentStatus=status)

    def add_generated(self, count: int, rng: random.Random, now: datetime) -> list[str]:
        """Add ``count`` wix_seed orders numbered from 10001 or after the highest stored number."""
        with self._lock:
            numbers = [parse_decimal(o.get("number")) for o in self._orders.values()]
        start = int(max([Decimal(10000), *(n for n in numbers if n is not None)])) + 1
        orders = generate_orders(rng, now=now, count=count, start_number=start)
        self.add_orders(orders)
        return [order["id"] for order in orders]

    def order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._orders[order_id])

    def order_ids(self) -> list[str]:
        """Every stored order id, in insertion order."""
        with self._lock:
            return list(self._orders)

    def order_id_by_number(self, number: str | int) -> str:
        wanted = parse_decimal(number)
        with self._lock:
            for order_id, order in self._orders.items():
                if wanted is not None and parse_decimal(order.get("number")) == wanted:
                    return order_id
        raise KeyError(f"no sandbox order number {number}")

    def set_permission(self, readable: bool) -> None:
        """False makes every call answer 403, like a key without eCommerce read permission."""
        with self._lock:
            self._readable = readable

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        path_contains: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (5xx bodies are empty)."""
        with self._lock:
            self._failures.append(_Failure(status, count, path_contains, retry_after))

    def hang_next(self, count: int = 1) -> None:
        """Accept the next ``count`` requests and answer only after ``release()`` (max 120 s)."""
        with self._lock:
            self._hangs += count

    @property
    def held_requests(self) -> int:
        """How many requests ``hang_next`` is holding unanswered right now."""
        with self._lock:
            return self._held

    def release(self) -> None:
        """Let every hanging request finish and cancel pending hangs."""
        with self._lock:
            self._hangs = 0
            self._release_generation += 1

    close = release

    def inject_faults(self, plan: FaultPlan | None) -> FaultInjector | None:
        """From now on fail requests at random as ``plan`` says (None: stop); returns the injector
        (its ``counts()`` say what was injected)."""
        injector = FaultInjector(plan) if plan is not None else None
        with self._lock:
            self._faults = injector
        return injector

    def freeze_visibility(self, seconds: float) -> None:
        """From now on Search shows an order's previous version for ``seconds`` after a change."""
        with self._lock:
            self._freeze = timedelta(seconds=seconds) if seconds > 0 else None

    # -- state changes (call with the lock held unless stated) -----------------------------

    def _change(self, order_id: str, **fields: str) -> None:
        with self._lock:
            order = self._orders[order_id]
            self._remember_visible(order_id)
            order.update(fields)
            order["updatedDate"] = format_datetime(self._next_stamp(order))

    def _next_stamp(self, order: Mapping[str, Any]) -> datetime:
        now = self._clock()
        stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)
        previous = [self._last_stamp, parse_datetime(order.get("updatedDate"))]
        for earlier in previous:
            if earlier is not None and stamp < earlier + _ONE_MS:
                stamp = earlier + _ONE_MS
        self._last_stamp = stamp
        return stamp

    def _remember_visible(self, order_id: str) -> None:
        if self._freeze is None:
            return
        previous = self._orders.get(order_id)
        until = self._clock() + self._freeze
        stale = self._stale.get(order_id)
        kept = stale[1] if stale and self._clock() < stale[0] else copy.deepcopy(previous)
        self._stale[order_id] = (until, kept)

    def _searchable(self) -> list[dict[str, Any]]:
        now = self._clock()
        visible: list[dict[str, Any]] = []
        for order_id, order in self._orders.items():
            stale = self._stale.get(order_id)
            shown = stale[1] if stale and now < stale[0] else order
            if shown is not None and shown.get("status") != "INITIALIZED":
                visible.append(shown)
        return visible

    def _add_fulfilment(self, order_id: str, tracking: Tracking) -> None:
        if order_id not in self._orders:
            raise KeyError(order_id)
        existing = self._fulfilments.setdefault(order_id, [])
        info = {"trackingNumber": tracking.number, "shippingProvider": tracking.provider}
        if tracking.link:
            info["trackingLink"] = tracking.link
        items = self._orders[order_id].get("lineItems") or []
        existing.append(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{order_id}/{len(existing)}")),
                "createdDate": format_datetime(self._clock()),
                "lineItems": [
                    {"id": item.get("id"), "quantity": item.get("quantity")}
                    for item in items
                    if isinstance(item, dict)
                ],
                "trackingInfo": {k: v for k, v in info.items() if v},
            }
        )

    # -- HTTP ------------------------------------------------------------------------------

    def _endpoint(self, handler: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            body = _json_body(await request.body())
            with self._lock:
                self.requests.append((request.method, request.url.path, body))
                hang_generation = self._take_hang()
                failure = self._take_failure(request.url.path)
            if hang_generation is not None:
                await self._wait_for_release(hang_generation)
            if failure is not None:
                return self._failure_response(failure)
            injected = await self._injected_fault()
            if injected is not None:
                return injected
            refusal = self._auth_refusal(request)
            if refusal is not None:
                return refusal
            with self._lock:
                return handler(request, body)

        return endpoint

    async def _injected_fault(self) -> Response | None:
        """The random fault's answer (None: handle the request); a stall answers late."""
        faults = self._faults
        fault = faults.draw() if faults is not None else None
        if faults is None or fault is None:
            return None
        plan = faults.plan
        if fault in (Fault.LOST_REQUEST, Fault.LOST_ANSWER):
            await anyio.sleep(plan.stall_seconds)  # reads: handled late or not, nothing changes
            return None
        if fault is Fault.RATE_LIMITED:
            return self._failure_response(_Failure(429, 1, None, plan.retry_after))
        return self._failure_response(_Failure(503, 1, None, None))

    def _take_hang(self) -> int | None:
        if self._hangs <= 0:
            return None
        self._hangs -= 1
        return self._release_generation

    async def _wait_for_release(self, generation: int) -> None:
        deadline = time.monotonic() + HANG_CAP_SECONDS
        with self._lock:
            self._held += 1
        try:
            while self._release_generation == generation and time.monotonic() < deadline:
                await anyio.sleep(0.02)
        finally:
            with self._lock:
                self._held -= 1

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.path_contains is None or failure.path_contains in path:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    @staticmethod
    def _failure_response(failure: _Failure) -> Response:
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        if failure.status >= 500:
            return Response(b"", status_code=failure.status, headers=headers)
        response = wix_error(failure.status, f"sandbox failure {failure.status}")
        response.headers.update(headers)
        return response

    def _auth_refusal(self, request: Request) -> Response | None:
        site = request.headers.get("wix-site-id")
        if not site:
            return wix_error(400, "missing site context", "MISSING_SITE_CONTEXT")
        if site != self.site_id:
            return wix_error(400, f"unknown site {site!r}", "SITE_NOT_FOUND")
        if request.headers.get("authorization") != self.api_key:
            return wix_error(401, "invalid or missing API key", "UNAUTHENTICATED")
        if not self._readable:
            return wix_error(403, "the API key lacks the eCommerce read permission")
        return None

    def _search(self, request: Request, body: Any) -> Response:
        search = body.get("search", {}) if isinstance(body, dict) else None
        if not isinstance(search, dict):
            return validation_error("search", "body must be {'search': {...}}")
        try:
            page = search_page(self._searchable(), search)
        except QueryError as exc:
            return validation_error(exc.field, exc.description)
        metadata = {
            "count": len(page.orders),
            "cursors": page.cursors,
            "hasNext": "next" in page.cursors,
        }
        return JSONResponse({"orders": copy.deepcopy(page.orders), "metadata": metadata})

    def _get(self, request: Request, body: Any) -> Response:
        order = self._orders.get(request.path_params["order_id"])
        if order is None:
            return wix_error(404, "order not found", "NOT_FOUND")
        return JSONResponse({"order": copy.deepcopy(order)})

    def _with_fulfilments(self, order_id: str) -> dict[str, Any]:
        return {
            "orderId": order_id,
            "fulfillments": copy.deepcopy(self._fulfilments.get(order_id, [])),
        }

    def _fulfilments_of(self, request: Request, body: Any) -> Response:
        order_id = request.path_params["order_id"]
        if order_id not in self._orders:
            return wix_error(404, "order not found", "NOT_FOUND")
        return JSONResponse({"orderWithFulfillments": self._with_fulfilments(order_id)})

    def _list_fulfilments(self, request: Request, body: Any) -> Response:
        ids = body.get("orderIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return validation_error("orderIds", "orderIds must be a list of strings")
        found = [self._with_fulfilments(i) for i in ids if i in self._orders]
        return JSONResponse({"ordersWithFulfillments": found})
