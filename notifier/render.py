"""Pure: an order + a rule → the template parameters to send, and the text of lookup replies.

Meta refuses a parameter holding a newline, a tab or a run of more than 4 spaces (132018), an
empty one, or a count that differs from the approved template (132000). So every value goes
through ``sanitize_param``, a missing required value raises ``MissingParameter`` (no send), and
``template_problems`` compares the result with the template's definition before anything leaves.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote

from notifier.domain import (
    Money,
    Order,
    RenderedTemplate,
    Rule,
    TemplateInfo,
    TemplateParam,
    Tracking,
)
from notifier.labels import Labels

ELLIPSIS = "…"
REPLY_MAX_CHARS = 4096
REPLY_MAX_ITEMS = 5
_NAME_MAX_CHARS = 60

PARAM_SOURCES = frozenset(
    {
        "customer_name",
        "first_name",
        "last_name",
        "order_number",
        "total",
        "item_summary",
        "payment_status",
        "fulfillment_status",
        "order_status",
        "tracking_number",
        "tracking_link",
        "carrier",
    }
)

_PREFIX_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "Rs. ", "BRL": "R$ "}
_DECIMALS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3}
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
# ASCII control characters that are not whitespace (whitespace, \x1c-\x1f included, is collapsed).
_ASCII_CONTROLS = str.maketrans("", "", "".join(map(chr, [*range(0x09), *range(0x0E, 0x1C), 0x7F])))


class MissingParameter(ValueError):  # noqa: N818 - the agreed public name
    """A value the template needs is absent from the order: do not send."""

    def __init__(self, param: str) -> None:
        super().__init__(f"required template parameter {param!r} has no value")
        self.param = param


def sanitize_param(
    text: str | None, *, max_length: int = 200, fallback: str | None = None
) -> str | None:
    """One line of visible text Meta accepts, at most ``max_length`` chars; empty → ``fallback``."""
    if max_length < 1:
        msg = f"max_length must be at least 1, got {max_length}"
        raise ValueError(msg)
    cleaned = _collapse(text or "")
    if not cleaned:
        return None if fallback is None else sanitize_param(fallback, max_length=max_length)
    if len(cleaned) <= max_length:
        return cleaned
    return cleaned[: max_length - 1].rstrip() + ELLIPSIS


def _collapse(text: str) -> str:
    """Control chars dropped, whitespace runs → one space, trimmed; "" if nothing is visible."""
    if text.isascii():
        # What is left is printable ASCII, all of it visible but the single spaces between words.
        return " ".join(text.translate(_ASCII_CONTROLS).split())
    return _collapse_unicode(text)


def _collapse_unicode(text: str) -> str:
    kept = "".join(
        char for char in text if char.isspace() or unicodedata.category(char) not in {"Cc", "Cs"}
    )
    collapsed = " ".join(kept.split())
    if any(unicodedata.category(char) not in _INVISIBLE_CATEGORIES for char in collapsed):
        return collapsed
    return ""


def format_money(money: Money) -> str:
    """A customer-facing amount: "Rs. 1,29,900.00", "$63.24", "€45.00", "12.50 XYZ"."""
    if not money.amount.is_finite():
        msg = f"cannot format a non-finite amount: {money.amount}"
        raise ValueError(msg)
    currency = money.currency.strip().upper()
    places = _DECIMALS.get(currency, 2)
    rounded = money.amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    digits = _group_indian(abs(rounded)) if currency == "INR" else f"{abs(rounded):,f}"
    symbol = _PREFIX_SYMBOLS.get(currency)
    if symbol is None:
        return f"{sign}{digits} {currency}"
    return f"{sign}{symbol}{digits}"


def _group_indian(amount: Decimal) -> str:
    """Lakh/crore grouping: the last three digits, then pairs (1,29,900.00)."""
    whole, _, fraction = f"{amount:f}".partition(".")
    head, tail = whole[:-3], whole[-3:]
    pairs: list[str] = []
    while head:
        pairs.insert(0, head[-2:])
        head = head[:-2]
    grouped = ",".join([*pairs, tail])
    return f"{grouped}.{fraction}" if fraction else grouped


def order_values(
    order: Order,
    *,
    tracking: Tracking | None,
    labels: Labels,
    name_fallback: str = "there",
    only: Iterable[str] = PARAM_SOURCES,
) -> dict[str, str | None]:
    """The value of each parameter source in ``only`` (default: all, see ``PARAM_SOURCES``);
    None = missing. Names outside ``PARAM_SOURCES`` are left out."""
    first = sanitize_param(order.first_name, max_length=_NAME_MAX_CHARS)
    last = sanitize_param(order.last_name, max_length=_NAME_MAX_CHARS)
    # Computed on demand: a rule names two or three sources, and the item summary is costly.
    sources: dict[str, Callable[[], str | None]] = {
        "customer_name": lambda: first or last or name_fallback,
        "first_name": lambda: first,
        "last_name": lambda: last,
        "order_number": lambda: _order_number(order),
        "total": lambda: _total(order.total),
        "item_summary": lambda: _item_summary(order, labels),
        "payment_status": lambda: labels.payment(order.payment_status),
        "fulfillment_status": lambda: labels.fulfillment(order.fulfillment_status),
        "order_status": lambda: labels.status(order.status),
        "tracking_number": lambda: tracking.number if tracking else None,
        "tracking_link": lambda: tracking.link if tracking else None,
        "carrier": lambda: tracking.provider if tracking else None,
    }
    return {source: sources[source]() for source in only if source in sources}


def _order_number(order: Order) -> str | None:
    number = sanitize_param(order.number)
    return sanitize_param(number.lstrip("#")) if number else None


def _total(total: Money | None) -> str | None:
    if total is None or not total.amount.is_finite():
        return None
    return format_money(total)


def _item_lines(order: Order, labels: Labels) -> list[str]:
    lines = []
    for item in order.line_items:
        name = sanitize_param(item.name, max_length=120, fallback=labels.unknown) or "?"
        lines.append(labels.text("items.line", name=name, quantity=str(item.quantity)))
    return lines


def _item_summary(order: Order, labels: Labels) -> str | None:
    lines = _item_lines(order, labels)
    if not lines:
        return None
    if len(lines) == 1:
        return lines[0]
    key = "items.more_one" if len(lines) == 2 else "items.more_many"
    return labels.text(key, first=lines[0], count=str(len(lines) - 1))


def render_template(
    rule: Rule,
    order: Order,
    *,
    language: str,
    tracking: Tracking | None,
    labels: Labels,
    name_fallback: str = "there",
) -> RenderedTemplate:
    """The sanitised template message for ``order``; MissingParameter if a value is absent."""
    if rule.param_names and len(rule.param_names) != len(rule.params):
        msg = f"rule {rule.template!r}: {len(rule.params)} params but {len(rule.param_names)} names"
        raise ValueError(msg)
    needed = {*rule.params, *((rule.button_param, "order_number") if rule.button_param else ())}
    values = order_values(
        order, tracking=tracking, labels=labels, name_fallback=name_fallback, only=needed
    )
    texts = [_required(values, source) for source in rule.params]
    names: tuple[str | None, ...] = rule.param_names or (None,) * len(texts)
    body = tuple(
        TemplateParam(text=text, name=name) for text, name in zip(texts, names, strict=True)
    )
    suffix = _button_suffix(values, rule.button_param) if rule.button_param else None
    return RenderedTemplate(
        name=rule.template, language=language, body=body, button_url_suffix=suffix
    )


def _required(values: dict[str, str | None], source: str) -> str:
    if source not in values:
        msg = f"unknown parameter source {source!r} (known: {', '.join(sorted(PARAM_SOURCES))})"
        raise ValueError(msg)
    text = sanitize_param(values[source])
    if text is None:
        raise MissingParameter(source)
    return text


def _button_suffix(values: dict[str, str | None], source: str) -> str:
    """The dynamic part of a URL button: the tracking number, else the order number."""
    if source not in values:
        msg = f"unknown button parameter source {source!r}"
        raise ValueError(msg)
    for candidate in (values[source], values["order_number"]):
        suffix = _url_safe(candidate)
        if suffix:
            return suffix
    raise MissingParameter(source)


def _url_safe(text: str | None) -> str:
    """No whitespace or control characters; anything that is not URL-safe is percent-encoded."""
    visible = _collapse(text or "").replace(" ", "")
    return quote(visible, safe="-._~")


def template_problems(rendered: RenderedTemplate, info: TemplateInfo) -> list[str]:
    """Why this message would be refused by Meta for this template; empty means OK to send."""
    label = f"template {info.name}/{info.language}"
    problems = []
    if (rendered.name, rendered.language) != (info.name, info.language):
        problems.append(f"{label} checked against {rendered.name}/{rendered.language}")
    if info.status.upper() != "APPROVED":
        problems.append(f"{label} is {info.status}, not APPROVED")
    if info.category.upper() != "UTILITY":
        problems.append(f"{label} is categorised {info.category}, not UTILITY")
    if len(rendered.body) != info.body_param_count:
        problems.append(
            f"{label} expects {info.body_param_count} body parameters, got {len(rendered.body)}"
        )
    problems.extend(_format_problems(rendered, info, label))
    given_buttons = 0 if rendered.button_url_suffix is None else 1
    if given_buttons != info.url_button_param_count:
        problems.append(
            f"{label} expects {info.url_button_param_count} URL button parameters,"
            f" got {given_buttons}"
        )
    return problems


def _format_problems(rendered: RenderedTemplate, info: TemplateInfo, label: str) -> list[str]:
    names = [param.name for param in rendered.body]
    if info.parameter_format.upper() != "NAMED":
        if any(name is not None for name in names):
            return [f"{label} is positional but named parameters were given"]
        return []
    if any(name is None for name in names):
        return [f"{label} is NAMED but positional parameters were given"]
    problems = []
    missing = [name for name in info.body_param_names if name not in names]
    if missing:
        problems.append(f"{label} is missing named parameters: {', '.join(missing)}")
    unexpected = [name for name in names if name not in info.body_param_names]
    if unexpected and info.body_param_names:
        problems.append(f"{label} has no parameters named: {', '.join(map(str, unexpected))}")
    return problems


def lookup_reply(order: Order, labels: Labels, name_fallback: str = "there") -> str:
    """The free-form answer to "where is my order?" (product.md's worked example, exactly)."""
    values = order_values(order, tracking=None, labels=labels, name_fallback=name_fallback)
    name = values["customer_name"] or name_fallback
    number = values["order_number"] or order.id
    lines = [
        labels.text("reply.greeting", name=name),
        labels.text("reply.order", number=number),
        labels.text("reply.payment", label=labels.payment(order.payment_status)),
        labels.text("reply.fulfillment", label=labels.fulfillment(order.fulfillment_status)),
    ]
    if order.status == "CANCELED":
        lines.append(labels.text("reply.status", label=labels.status(order.status)))
    lines.extend(_reply_items(order, labels))
    if values["total"] is not None:
        lines.append(labels.text("reply.total", total=values["total"]))
    reply = "\n".join(lines)
    if len(reply) < REPLY_MAX_CHARS:
        return reply
    return reply[: REPLY_MAX_CHARS - 2] + ELLIPSIS


def _reply_items(order: Order, labels: Labels) -> list[str]:
    items = _item_lines(order, labels)
    lines = [labels.text("reply.item", item=item) for item in items[:REPLY_MAX_ITEMS]]
    if len(items) > REPLY_MAX_ITEMS:
        lines.append(labels.text("reply.more_items", count=str(len(items) - REPLY_MAX_ITEMS)))
    return lines
