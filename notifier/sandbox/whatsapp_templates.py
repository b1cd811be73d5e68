"""Meta's side of the WhatsApp sandbox: its templates, the checks Meta runs on a template send,
and the exact shapes of Meta's error bodies and webhooks.

Templates are kept in Meta's ``message_templates`` list-response shape so the real client
parses them unchanged. ``check_template_send`` raises the error a real send would get.
Webhook bodies are serialised like Meta's (``meta_json``); the server signs those raw bytes.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from datetime import datetime, timedelta
from typing import Any, NamedTuple

_TRACK_BUTTON = {
    "type": "BUTTONS",
    "buttons": [
        {"type": "URL", "text": "Track order", "url": "https://shop.example.com/track/{{1}}"}
    ],
}
_TRACK_BUTTON_HI = {
    "type": "BUTTONS",
    "buttons": [
        {
            "type": "URL",
            "text": "ऑर्डर ट्रैक करें",
            "url": "https://shop.example.com/track/{{1}}",
        }
    ],
}


def _utility(name: str, body: str, language: str = "en", *extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "language": language,
        "status": "APPROVED",
        "category": "UTILITY",
        "parameter_format": "POSITIONAL",
        "components": [{"type": "BODY", "text": body}, *extra],
    }


DEFAULT_TEMPLATES: tuple[dict[str, Any], ...] = (
    _utility(
        "order_payment_received",
        "Hi {{1}}, we have received your payment for order #{{2}}. Total: {{3}}.",
    ),
    _utility(
        "order_payment_received",
        "नमस्ते {{1}}, हमें आपके ऑर्डर #{{2}} का भुगतान मिल गया है। कुल: {{3}}।",
        "hi",
    ),
    _utility("order_partly_shipped", "Hi {{1}}, part of your order #{{2}} is on its way."),
    _utility("order_shipped", "Hi {{1}}, your order #{{2}} is on its way.", "en", _TRACK_BUTTON),
    _utility("order_shipped", "नमस्ते {{1}}, आपका ऑर्डर #{{2}} रास्ते में है।", "hi", _TRACK_BUTTON_HI),
    _utility(
        "order_refunded",
        "Hi {{1}}, your order #{{2}} has been refunded. Payment status: {{3}}.",
    ),
    _utility(
        "order_cancelled",
        "Hi {{1}}, your order #{{2}} has been cancelled. "
        "Reply to this message if you have questions.",
    ),
    _utility(
        "order_payment_failed",
        "Hi {{1}}, the payment for your order #{{2}} did not go through. Please try again.",
    ),
    _utility("order_status_update", "Hi {{1}}, order #{{2}}: payment {{3}}, fulfilment {{4}}."),
)

ERROR_TITLES: dict[int, str] = {
    0: "AuthException",
    100: "Invalid parameter",
    131026: "Message undeliverable",
    131031: "Business Account locked",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132015: "Template is Paused",
    132016: "Template is Disabled",
    132018: "There was an issue with the parameters in your template.",
    190: "Invalid OAuth access token - Cannot parse access token",
}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_BAD_PARAM_TEXT = re.compile(r"[\n\r\t]| {5,}")
_STATUS_ERRORS = {"PAUSED": 132015, "DISABLED": 132016}


class SandboxError(Exception):
    """A Meta error the sandbox answers with: ``code`` plus ``error_data.details``."""

    def __init__(
        self, code: int, details: str, http_status: int = 400, retry_after: float | None = None
    ) -> None:
        super().__init__(f"({code}) {details}")
        self.code = code
        self.details = details
        self.http_status = http_status
        self.retry_after = retry_after

    @property
    def title(self) -> str:
        return ERROR_TITLES.get(self.code, f"Error {self.code}")

    def body(self, fbtrace_id: str = "SBXtrace") -> dict[str, Any]:
        """The error response body, in Meta's shape."""
        return {
            "error": {
                "message": f"(#{self.code}) {self.title}",
                "type": "OAuthException",
                "code": self.code,
                "error_data": {"messaging_product": "whatsapp", "details": self.details},
                "fbtrace_id": fbtrace_id,
            }
        }


def find_template(
    templates: list[dict[str, Any]], name: str, language: str
) -> dict[str, Any] | None:
    return next((t for t in templates if t["name"] == name and t["language"] == language), None)


def check_template_send(templates: list[dict[str, Any]], request: Any) -> dict[str, Any]:
    """The template a send's ``template`` object addresses; SandboxError if Meta would refuse."""
    if not isinstance(request, dict) or not isinstance(request.get("name"), str):
        raise SandboxError(100, "template: name is required")
    language = request.get("language")
    code = language.get("code") if isinstance(language, dict) else None
    template = find_template(templates, request["name"], str(code))
    if template is None:
        raise SandboxError(132001, f"template name ({request['name']}) does not exist in {code}")
    if template["status"] != "APPROVED":
        status_code = _STATUS_ERRORS.get(template["status"], 132001)
        raise SandboxError(status_code, f"template {template['name']} is {template['status']}")
    components = request.get("components") or []
    if not isinstance(components, list):
        raise SandboxError(100, "template: components must be a list")
    _check_parameters(template, components)
    return template


def check_text_send(payload: dict[str, Any]) -> tuple[str, str | None]:
    """A text send's body and the message it replies to; SandboxError if Meta would refuse."""
    text = payload.get("text")
    body = text.get("body") if isinstance(text, dict) else None
    if not isinstance(body, str) or not body or len(body) > 4096:
        raise SandboxError(100, "text.body must be 1 to 4096 characters")
    context = payload.get("context")
    reply_to = context.get("message_id") if isinstance(context, dict) else None
    return body, reply_to if isinstance(reply_to, str) else None


def sent_parameters(components: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The parameters of the sent components of ``kind`` ("body", "header" or "button")."""
    return [
        param
        for component in components
        if isinstance(component, dict) and component.get("type") == kind
        for param in component.get("parameters") or []
    ]


def expected_counts(template: dict[str, Any]) -> dict[str, int]:
    """How many parameters each component kind of ``template`` takes."""
    counts = {"header": 0, "body": 0, "button": 0}
    for component in template["components"]:
        kind = str(component["type"]).lower()
        if kind in ("header", "body"):
            counts[kind] = len(set(_PLACEHOLDER.findall(str(component.get("text", "")))))
        elif kind == "buttons":
            counts["button"] = sum(
                1
                for button in component.get("buttons", [])
                if button.get("type") == "URL" and "{{1}}" in str(button.get("url", ""))
            )
    return counts


def _check_parameters(template: dict[str, Any], components: list[dict[str, Any]]) -> None:
    for kind, expected in expected_counts(template).items():
        params = sent_parameters(components, kind)
        for index, param in enumerate(params):
            _check_parameter_text(kind, index, param)
        if kind == "body":
            _check_naming(template, params)
        if len(params) != expected:
            label = "buttons" if kind == "button" else kind
            raise SandboxError(
                132000,
                f"{label}: number of localizable_params ({len(params)}) does not match "
                f"the expected number of params ({expected})",
            )


def _check_parameter_text(kind: str, index: int, param: Any) -> None:
    text = param.get("text") if isinstance(param, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise SandboxError(100, f"{kind} parameter {index}: text must be a non-empty string")
    if _BAD_PARAM_TEXT.search(text):
        raise SandboxError(
            132018,
            f"{kind} parameter {index}: param text cannot have new-line/tab characters "
            "or more than 4 consecutive spaces",
        )


def _check_naming(template: dict[str, Any], params: list[dict[str, Any]]) -> None:
    named = [isinstance(p, dict) and "parameter_name" in p for p in params]
    if any(named) and not all(named):
        raise SandboxError(100, "body: named and positional parameters cannot be mixed")
    is_named_template = template.get("parameter_format") == "NAMED"
    if params and all(named) != is_named_template:
        expected = "named" if is_named_template else "positional"
        raise SandboxError(100, f"body: template {template['name']} takes {expected} parameters")
    if is_named_template:
        body = next(c for c in template["components"] if c["type"] == "BODY")
        allowed = set(_PLACEHOLDER.findall(body["text"]))
        unknown = [p["parameter_name"] for p in params if p["parameter_name"] not in allowed]
        if unknown:
            raise SandboxError(100, f"body: unknown parameter names {unknown}")


def meta_json(payload: dict[str, Any]) -> bytes:
    """Serialise like Meta: compact, non-ASCII as \\uXXXX and '/' as '\\/'."""
    # '/' only ever occurs inside JSON strings, where '\/' is a valid escape.
    return json.dumps(payload, separators=(",", ":")).replace("/", "\\/").encode()


def envelope(
    waba_id: str, phone_number_id: str, value: dict[str, Any], display_number: str
) -> dict[str, Any]:
    """A ``whatsapp_business_account`` webhook body holding one ``messages`` change."""
    metadata = {"display_phone_number": display_number, "phone_number_id": phone_number_id}
    full_value = {"messaging_product": "whatsapp", "metadata": metadata, **value}
    change = {"value": full_value, "field": "messages"}
    return {"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": [change]}]}


def template_changes(
    template: dict[str, Any], *, status: str | None, previous_category: str | None
) -> list[dict[str, Any]]:
    """The ``changes[]`` Meta posts when a template's status or category changed (S19 shapes)."""
    common = {
        "message_template_id": int(template.get("id", 0)),
        "message_template_name": template["name"],
        "message_template_language": template["language"],
    }
    changes: list[dict[str, Any]] = []
    if status is not None:
        value: dict[str, Any] = {"event": status, **common, "reason": "NONE"}
        value["message_template_category"] = template["category"]
        changes.append({"value": value, "field": "message_template_status_update"})
    if previous_category is not None:
        value = {**common, "previous_category": previous_category}
        value["new_category"] = template["category"]
        changes.append({"value": value, "field": "template_category_update"})
    return changes


def business_envelope(waba_id: str, changes: list[dict[str, Any]], at: datetime) -> dict[str, Any]:
    """A ``whatsapp_business_account`` webhook body holding account-level changes (templates)."""
    entry = {"id": waba_id, "time": int(at.timestamp()), "changes": changes}
    return {"object": "whatsapp_business_account", "entry": [entry]}


def status_item(
    wamid: str, status: str, at: datetime, recipient_id: str, callback_data: str | None
) -> dict[str, Any]:
    item = {"id": wamid, "status": status, "timestamp": unix(at), "recipient_id": recipient_id}
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    return item


def pricing(category: str, free: bool) -> dict[str, Any]:
    return {
        "billable": not free,
        "pricing_model": "PMP",
        "category": category,
        "type": "free_customer_service" if free else "regular",
    }


def status_error(code: int, details: str) -> dict[str, Any]:
    """One ``errors[]`` item of a ``failed`` status."""
    title = ERROR_TITLES.get(code, f"Error {code}")
    return {"code": code, "title": title, "message": title, "error_data": {"details": details}}


class StatusTarget(NamedTuple):
    """Which sent message a status is about."""

    wamid: str
    recipient_id: str
    callback_data: str | None


def progress_statuses(
    target: StatusTarget, pricing: dict[str, Any], steps: list[str], start: datetime
) -> list[dict[str, Any]]:
    """One status item per step, a second apart; every step but ``read`` carries pricing."""
    statuses = []
    for offset, step in enumerate(steps):
        item = status_item(target.wamid, step, start + timedelta(seconds=offset), *target[1:])
        if step != "read":
            item["pricing"] = dict(pricing)
        statuses.append(item)
    return statuses


def failed_status(target: StatusTarget, at: datetime, code: int, details: str) -> dict[str, Any]:
    item = status_item(target.wamid, "failed", at, target.recipient_id, target.callback_data)
    return {**item, "errors": [status_error(code, details)]}


def inbound_text_message(wa_id: str, message_id: str, at: datetime, body: str) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": message_id,
        "timestamp": unix(at),
        "type": "text",
        "text": {"body": body},
    }


def contacts_for(messages: list[dict[str, Any]], name: str = "Customer") -> list[dict[str, Any]]:
    """One ``contacts[]`` item per distinct sender, in order of first appearance."""
    senders = dict.fromkeys(str(m["from"]) for m in messages if "from" in m)
    return [{"profile": {"name": name}, "wa_id": wa_id} for wa_id in senders]


def project(template: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """``template`` with only the requested ``fields`` (Meta always adds ``id``)."""
    if not fields:
        return copy.deepcopy(template)
    wanted = {f.strip() for f in fields.split(",")} | {"id"}
    return {k: copy.deepcopy(v) for k, v in template.items() if k in wanted}


def encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"idx:{index}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    """The list index a paging cursor points at; ValueError if it is not one of ours."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(cursor) from exc
    if not text.startswith("idx:"):
        raise ValueError(cursor)
    return max(0, int(text[4:]))


def unix(at: datetime) -> str:
    return str(int(at.timestamp()))
