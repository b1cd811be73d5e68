"""The Wix Search query language for the sandbox: filters, sorts, cursors and paging.

Follows docs/wix.md: Mongo-like filters over a few queryable fields, default sort ``createdDate``
DESC, ``limit`` 1..100, opaque cursors that must not be combined with filter or sort, and no
``PENDING``/``REJECTED`` orders unless the filter names ``status``. Invalid input raises QueryError.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from notifier.wix_parse import dig, parse_datetime, parse_decimal

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
HIDDEN_BY_DEFAULT = frozenset({"PENDING", "REJECTED"})

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


# -- cursors and paging ---------------------------------------------------------------------


class ResolvedSearch(NamedTuple):
    """A search with its cursor expanded: the filter/sort query, the offset and the page size."""

    query: dict[str, Any]
    offset: int
    limit: int


class SearchPage(NamedTuple):
    """One page of search results and the ``next``/``prev`` cursors around it."""

    orders: list[dict[str, Any]]
    cursors: dict[str, str]


def encode_cursor(query: Mapping[str, Any]) -> str:
    """An opaque cursor carrying the query and offset of a page."""
    raw = json.dumps(query, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The query and offset inside a cursor; raises QueryError if it is not one of ours."""
    try:
        query = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise QueryError("cursorPaging.cursor", "invalid cursor") from exc
    if not isinstance(query, dict) or not isinstance(query.get("offset"), int):
        raise QueryError("cursorPaging.cursor", "invalid cursor")
    return query


def page_limit(paging: Mapping[str, Any]) -> int:
    """The validated ``cursorPaging.limit`` (default 50, at most 100)."""
    limit = paging.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError("cursorPaging.limit", f"limit must be 1..{MAX_LIMIT}")
    return limit


def resolve_search(search: Mapping[str, Any]) -> ResolvedSearch:
    """The query, offset and limit a ``search`` body asks for, expanding its cursor if any."""
    paging = search.get("cursorPaging", {})
    if not isinstance(paging, dict):
        raise QueryError("cursorPaging", "must be an object")
    limit = page_limit(paging)
    cursor = paging.get("cursor")
    if cursor is None:
        sort = search.get("sort", [{"fieldName": "createdDate", "order": "DESC"}])
        return ResolvedSearch({"filter": search.get("filter", {}), "sort": sort}, 0, limit)
    if "filter" in search or "sort" in search:
        raise QueryError("cursorPaging.cursor", "a cursor cannot be combined with filter/sort")
    if not isinstance(cursor, str):
        raise QueryError("cursorPaging.cursor", "must be a string")
    query = decode_cursor(cursor)
    resolved = {"filter": query.get("filter", {}), "sort": query.get("sort", [])}
    return ResolvedSearch(resolved, query["offset"], limit)


def search_page(orders: list[dict[str, Any]], search: Mapping[str, Any]) -> SearchPage:
    """The page of ``orders`` a Wix ``search`` body selects; raises QueryError if invalid."""
    query, offset, limit = resolve_search(search)
    matches = compile_filter(query["filter"])
    shown = [o for o in orders if matches(o)]
    if not mentions_status(query["filter"]):
        shown = [o for o in shown if o.get("status") not in HIDDEN_BY_DEFAULT]
    ordered = sort_orders(shown, query["sort"])
    cursors = {}
    if offset + limit < len(ordered):
        cursors["next"] = encode_cursor({**query, "offset": offset + limit, "limit": limit})
    if offset > 0:
        cursors["prev"] = encode_cursor({**query, "offset": max(offset - limit, 0)})
    return SearchPage(ordered[offset : offset + limit], cursors)
