"""An in-memory Wix eCommerce Orders API for the demo and tests, faithful to docs/wix.md.

Search follows Wix's rules: Mongo-like filters, default sort ``createdDate`` DESC, ``limit`` ≤ 100,
opaque cursors that must not be combined with filter or sort, never ``INITIALIZED``, and no
``PENDING``/``REJECTED`` unless the filter names ``status``. Auth and error bodies are Wix-shaped.
The control methods (``set_payment``, ``fail_next``, ``hang_next``…) are thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import operator
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from notifier.domain import Tracking
from notifier.wix_parse import dig, format_datetime, parse_datetime, parse_decimal

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
HANG_CAP_SECONDS = 120.0
_HIDDEN_BY_DEFAULT = frozenset({"PENDING", "REJECTED"})
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


# -- the query language ---------------------------------------------------------------------

DATE_FIELDS = frozenset({"updatedDate", "createdDate", "purchasedDate"})
QUERYABLE = DATE_FIELDS | {
    "number",
    "status",
    "paymentStatus",
    "fulfillmentStatus",
    "buyerInfo.email",
}
_RANGE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
Predicate = Callable[[Mapping[str, Any]], bool]


class QueryError(Exception):
    """A filter, sort or paging Wix would reject with a validation error."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def _typed(field: str, raw: object) -> Any:
    if field in DATE_FIELDS:
        return parse_datetime(raw)
    if field == "number":
        return parse_decimal(raw)  # Wix returns "10126" yet filters by 10126: compare numbers
    return raw if isinstance(raw, str) else None


def field_value(order: Mapping[str, Any], field: str) -> Any:
    """The typed value of a queryable field: datetimes for dates, Decimal for number."""
    return _typed(field, dig(order, *field.split(".")))


def _operand(field: str, value: object) -> Any:
    converted = _typed(field, value)
    if converted is None:
        raise QueryError(f"filter.{field}", f"invalid value {value!r}")
    return converted


def _compile_op(field: str, op: str, operand: object) -> Callable[[Any], bool]:
    if op == "$in":
        if not isinstance(operand, list):
            raise QueryError(f"filter.{field}", "$in needs a list")
        options = [_operand(field, v) for v in operand]
        return lambda actual: actual is not None and actual in options
    wanted = None if operand is None and op in ("$eq", "$ne") else _operand(field, operand)
    if op == "$eq":
        return lambda actual: bool(actual == wanted)
    if op == "$ne":
        return lambda actual: bool(actual != wanted)
    compare = _RANGE_OPS.get(op)
    if compare is None:
        raise QueryError(f"filter.{field}", f"unsupported operator {op}")
    return lambda actual: actual is not None and compare(actual, wanted)


def _compile_field(field: str, condition: object) -> Predicate:
    if field not in QUERYABLE:
        raise QueryError(f"filter.{field}", "field is not filterable")
    ops: dict[str, Any] = (
        condition
        if isinstance(condition, dict) and condition and all(str(k)[:1] == "$" for k in condition)
        else {"$eq": condition}
    )
    if field in DATE_FIELDS and ops.keys() & {"$gt", "$gte"} and ops.keys() & {"$lt", "$lte"}:
        raise QueryError(f"filter.{field}", "use $and for a lower and an upper date bound")
    tests = [_compile_op(field, op, operand) for op, operand in ops.items()]
    return lambda order: all(test(field_value(order, field)) for test in tests)


def compile_filter(query: object) -> Predicate:
    """A predicate over raw orders for a Mongo-like Wix filter; raises QueryError if invalid."""
    if not isinstance(query, dict):
        raise QueryError("filter", "filter must be an object")
    parts: list[Predicate] = []
    for key, condition in query.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise QueryError(f"filter.{key}", "needs a non-empty list")
            subs = [compile_filter(sub) for sub in condition]
            parts.append(_all_of(subs) if key == "$and" else _any_of(subs))
        else:
            parts.append(_compile_field(key, condition))
    return _all_of(parts)


def _all_of(predicates: list[Predicate]) -> Predicate:
    return lambda order: all(p(order) for p in predicates)


def _any_of(predicates: list[Predicate]) -> Predicate:
    return lambda order: any(p(order) for p in predicates)


def mentions_status(query: object) -> bool:
    """True when the filter names ``status`` anywhere (Wix then stops hiding PENDING/REJECTED)."""
    if isinstance(query, dict):
        return "status" in query or any(mentions_status(v) for v in query.values())
    if isinstance(query, list):
        return any(mentions_status(v) for v in query)
    return False


def sort_orders(orders: list[dict[str, Any]], sort: object) -> list[dict[str, Any]]:
    """Orders sorted by Wix ``sort`` specs (stable, missing values first), ties by id."""
    if not isinstance(sort, list):
        raise QueryError("sort", "sort must be a list")
    ordered = sorted(orders, key=lambda o: str(o.get("id")))
    for spec in reversed(sort):
        field, direction = dig(spec, "fieldName"), dig(spec, "order") or "ASC"
        if field not in QUERYABLE or direction not in ("ASC", "DESC"):
            raise QueryError("sort", f"cannot sort by {spec!r}")
        ordered.sort(key=_sort_key(field), reverse=direction == "DESC")
    return ordered


def _sort_key(field: str) -> Callable[[Mapping[str, Any]], tuple[int, Any]]:
    def key(order: Mapping[str, Any]) -> tuple[int, Any]:
        value = field_value(order, field)
        return (0, 0) if value is None else (1, value)

    return key


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


def _encode_cursor(query: Mapping[str, Any]) -> str:
    raw = json.dumps(query, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        query = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise QueryError("cursorPaging.cursor", "invalid cursor") from exc
    if not isinstance(query, dict) or not isinstance(query.get("offset"), int):
        raise QueryError("cursorPaging.cursor", "invalid cursor")
    return query


def _limit(paging: Mapping[str, Any]) -> int:
    limit = paging.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError("cursorPaging.limit", f"limit must be 1..{MAX_LIMIT}")
    return limit


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

    def release(self) -> None:
        """Let every hanging request finish and cancel pending hangs."""
        with self._lock:
            self._hangs = 0
            self._release_generation += 1

    close = release

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
            refusal = self._auth_refusal(request)
            if refusal is not None:
                return refusal
            with self._lock:
                return handler(request, body)

        return endpoint

    def _take_hang(self) -> int | None:
        if self._hangs <= 0:
            return None
        self._hangs -= 1
        return self._release_generation

    async def _wait_for_release(self, generation: int) -> None:
        deadline = time.monotonic() + HANG_CAP_SECONDS
        while self._release_generation == generation and time.monotonic() < deadline:
            await anyio.sleep(0.02)

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
            query, offset, limit = self._query_of(search)
            matches = compile_filter(query["filter"])
            shown = [o for o in self._searchable() if matches(o)]
            if not mentions_status(query["filter"]):
                shown = [o for o in shown if o.get("status") not in _HIDDEN_BY_DEFAULT]
            ordered = sort_orders(shown, query["sort"])
        except QueryError as exc:
            return validation_error(exc.field, exc.description)
        page = ordered[offset : offset + limit]
        cursors = {}
        if offset + limit < len(ordered):
            cursors["next"] = _encode_cursor({**query, "offset": offset + limit, "limit": limit})
        if offset > 0:
            cursors["prev"] = _encode_cursor({**query, "offset": max(offset - limit, 0)})
        metadata = {"count": len(page), "cursors": cursors, "hasNext": "next" in cursors}
        return JSONResponse({"orders": copy.deepcopy(page), "metadata": metadata})

    @staticmethod
    def _query_of(search: Mapping[str, Any]) -> tuple[dict[str, Any], int, int]:
        paging = search.get("cursorPaging", {})
        if not isinstance(paging, dict):
            raise QueryError("cursorPaging", "must be an object")
        limit = _limit(paging)
        cursor = paging.get("cursor")
        if cursor is None:
            sort = search.get("sort", [{"fieldName": "createdDate", "order": "DESC"}])
            return {"filter": search.get("filter", {}), "sort": sort}, 0, limit
        if "filter" in search or "sort" in search:
            raise QueryError("cursorPaging.cursor", "a cursor cannot be combined with filter/sort")
        if not isinstance(cursor, str):
            raise QueryError("cursorPaging.cursor", "must be a string")
        query = _decode_cursor(cursor)
        return (
            {"filter": query.get("filter", {}), "sort": query.get("sort", [])},
            query["offset"],
            limit,
        )

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
