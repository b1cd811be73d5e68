"""The WhatsApp Cloud API adapter: send templates and text, list templates, map Meta's errors.

Errors are decided by Meta's ``code``, never by the HTTP status (Meta's tables disagree on the
status for some codes). A failure after the request left us is ``AMBIGUOUS``: the message may
have gone out, and there is no idempotency key, so the caller must not blindly resend.
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

import httpx

from notifier.domain import RenderedTemplate, SendResult, TemplateInfo
from notifier.errors import (
    WhatsAppErrorKind,
    WhatsAppPermanentError,
    WhatsAppTransientError,
    whatsapp_error_kind,
)

TEXT_BODY_MAX = 4096
TEMPLATE_FIELDS = "name,language,status,category,components,parameter_format"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_URL_SUFFIX_PLACEHOLDER = re.compile(r"\{\{\s*1\s*\}\}")
# Raised before the request left us: resending cannot duplicate.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TRANSIENT_STATUSES = {408, 429}


class WhatsAppClient:
    """A synchronous Cloud API client for one business phone number and its WABA."""

    def __init__(
        self,
        *,
        base_url: str,
        api_version: str,
        phone_number_id: str,
        waba_id: str,
        access_token: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._phone_number_id = phone_number_id
        self._waba_id = waba_id
        self._http = httpx.Client(
            base_url=f"{base_url.rstrip('/')}/{api_version.strip('/')}/",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
        )
        self.request_count = 0

    def send_template(
        self, to: str, template: RenderedTemplate, *, callback_data: str
    ) -> SendResult:
        """Send an approved template; ``callback_data`` comes back in every status webhook."""
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": e164_with_plus(to),
            "type": "template",
            "template": template_payload(template),
            "biz_opaque_callback_data": callback_data,
        }
        return self._send(payload)

    def send_text(self, to: str, body: str, *, reply_to: str | None = None) -> SendResult:
        """Send a free-form text (only delivered inside the recipient's 24 h window)."""
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": e164_with_plus(to),
            "type": "text",
            "text": {"preview_url": False, "body": body[:TEXT_BODY_MAX]},
        }
        if reply_to is not None:
            payload["context"] = {"message_id": reply_to}
        return self._send(payload)

    def list_templates(self) -> list[TemplateInfo]:
        """Every template of the business account, following the paging cursors."""
        templates: list[TemplateInfo] = []
        url: str | None = f"{self._waba_id}/message_templates"
        params: dict[str, str] | None = {"fields": TEMPLATE_FIELDS, "limit": "100"}
        while url is not None:
            response = self._request("GET", url, params=params, idempotent=True)
            page = response.json()
            templates.extend(parse_template(item) for item in page.get("data", []))
            url = page.get("paging", {}).get("next")
            params = None  # the next URL carries its own query
        return templates

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WhatsAppClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, payload: dict[str, Any]) -> SendResult:
        response = self._request("POST", f"{self._phone_number_id}/messages", json=payload)
        return parse_send_result(response)

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        idempotent: bool = False,
    ) -> httpx.Response:
        self.request_count += 1
        try:
            response = self._http.request(method, url, params=params, json=json)
        except _NOT_SENT as exc:
            raise WhatsAppTransientError(f"WhatsApp unreachable: {exc!r}") from exc
        except httpx.TransportError as exc:
            kind = WhatsAppErrorKind.RETRY if idempotent else WhatsAppErrorKind.AMBIGUOUS
            raise WhatsAppTransientError(
                f"WhatsApp request may have been sent: {exc!r}", kind=kind
            ) from exc
        if response.is_error:
            raise error_from_response(response)
        return response


def e164_with_plus(to: str) -> str:
    """``to`` as E.164 with a leading '+' (Meta may misroute a number without it)."""
    number = to.strip()
    if number.startswith("+"):
        return number
    if not number.isdigit():
        raise ValueError(f"not an E.164 phone number: {to!r}")
    return f"+{number}"


def template_payload(template: RenderedTemplate) -> dict[str, Any]:
    """The ``template`` object of a send request."""
    components: list[dict[str, Any]] = []
    if template.body:
        parameters: list[dict[str, str]] = []
        for param in template.body:
            item = {"type": "text", "text": param.text}
            if param.name is not None:
                item["parameter_name"] = param.name
            parameters.append(item)
        components.append({"type": "body", "parameters": parameters})
    if template.button_url_suffix is not None:
        components.append(
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": template.button_url_suffix}],
            }
        )
    payload: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if components:
        payload["components"] = components
    return payload


def parse_send_result(response: httpx.Response) -> SendResult:
    """The wamid of an accepted message; a 200 without one is ambiguous, not a success."""
    try:
        body = response.json()
        message = body["messages"][0]
        wamid = message["id"]
        contacts = body.get("contacts") or [{}]
        return SendResult(
            wamid=str(wamid),
            message_status=str(message.get("message_status", "accepted")),
            wa_id=contacts[0].get("wa_id"),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise WhatsAppTransientError(
            f"unreadable send response (HTTP {response.status_code})",
            kind=WhatsAppErrorKind.AMBIGUOUS,
        ) from exc


def error_from_response(
    response: httpx.Response,
) -> WhatsAppTransientError | WhatsAppPermanentError:
    """The exception for an error response, decided by Meta's ``code``."""
    retry_after = _retry_after(response)
    error = _error_object(response)
    code = error.get("code")
    if not isinstance(code, int):
        return _error_without_code(response, retry_after)
    kind = whatsapp_error_kind(code)
    message = str(error.get("message") or f"WhatsApp error {code}")
    if kind in (WhatsAppErrorKind.RETRY, WhatsAppErrorKind.RECIPIENT_LATER):
        return WhatsAppTransientError(message, code=code, kind=kind, retry_after=retry_after)
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return WhatsAppPermanentError(
        message,
        code=code,
        kind=kind,
        title=error.get("message"),
        details=str(details) if details is not None else None,
    )


def _error_without_code(
    response: httpx.Response, retry_after: float | None
) -> WhatsAppTransientError | WhatsAppPermanentError:
    status = response.status_code
    message = f"WhatsApp HTTP {status} without an error code"
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return WhatsAppTransientError(message, retry_after=retry_after)
    # A bare 4xx means our URL, version or token is wrong: nothing will work until fixed.
    return WhatsAppPermanentError(message, code=None, kind=WhatsAppErrorKind.STOP)


def _error_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # the HTTP-date form is not worth parsing for Meta
    return max(seconds, 0.0)


def parse_template(item: dict[str, Any]) -> TemplateInfo:
    """A ``message_templates`` list item reduced to what sending needs."""
    parameter_format = str(item.get("parameter_format") or "POSITIONAL").upper()
    components = item.get("components") or []
    body_text = next(
        (str(c.get("text", "")) for c in components if str(c.get("type")).upper() == "BODY"), ""
    )
    placeholders = list(dict.fromkeys(_PLACEHOLDER.findall(body_text)))
    return TemplateInfo(
        name=str(item["name"]),
        language=str(item["language"]),
        status=str(item.get("status", "")).upper(),
        category=str(item.get("category", "")).upper(),
        parameter_format=parameter_format,
        body_param_count=len(placeholders),
        body_param_names=tuple(placeholders) if parameter_format == "NAMED" else (),
        url_button_param_count=_url_button_param_count(components),
    )


def _url_button_param_count(components: list[dict[str, Any]]) -> int:
    buttons = [
        button
        for component in components
        if str(component.get("type")).upper() == "BUTTONS"
        for button in component.get("buttons") or []
    ]
    return sum(
        1
        for button in buttons
        if str(button.get("type")).upper() == "URL"
        and _URL_SUFFIX_PLACEHOLDER.search(str(button.get("url", "")))
    )
