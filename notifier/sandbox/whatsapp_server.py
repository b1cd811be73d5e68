"""A WhatsApp Cloud API sandbox: the send and template-list endpoints, plus signed webhooks.

It validates sends like Meta does (see ``whatsapp_templates``), answers in Meta's shapes, and,
while ``webhook_url`` is set, posts Meta-shaped status webhooks through ``whatsapp_webhooks``.
Control methods script failures, inbound messages and raw statuses for tests and the demo;
``inject_faults`` adds seeded random 5xx, timeouts and 429 bursts to sends.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from notifier.sandbox import whatsapp_templates as meta
from notifier.sandbox.faults import Fault, FaultInjector, FaultPlan
from notifier.sandbox.whatsapp_templates import DEFAULT_TEMPLATES, SandboxError
from notifier.sandbox.whatsapp_webhooks import WebhookAttempt, WebhookPoster
from notifier.signatures import sign

__all__ = ["SentMessage", "WebhookAttempt", "WhatsAppSandbox"]

WINDOW = timedelta(hours=24)
PAIR_RATE_SPACING = timedelta(seconds=6)
DISPLAY_PHONE_NUMBER = "15550001111"


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the sandbox accepted (HTTP 200), as it was requested."""

    to: str
    type: str
    wamid: str
    at: datetime
    template: str | None = None
    language: str | None = None
    body_params: tuple[str, ...] = ()
    button_suffix: str | None = None
    text: str | None = None
    callback_data: str | None = None
    reply_to: str | None = None


@dataclass
class _ForcedFailure:
    code: int
    remaining: int
    http_status: int
    retry_after: float | None
    to: str | None


class WhatsAppSandbox:
    """The fake Graph API. Thread-safe; serve ``.app`` with ``serving.serve_in_thread``."""

    def __init__(
        self,
        *,
        access_token: str = "sandbox-wa-token",  # noqa: S107 - a public sandbox value
        app_secret: str = "sandbox-app-secret",  # noqa: S107 - a public sandbox value
        phone_number_id: str = "100000000000001",
        waba_id: str = "200000000000002",
        webhook_url: str | None = None,
        clock: Callable[[], datetime] | None = None,
        status_delay: float = 0.02,
        duplicate_statuses: bool = False,
        shuffle_statuses: bool = False,
        send_read: bool = False,
        webhook_attempts: int = 3,
    ) -> None:
        self.access_token = access_token
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.status_delay = status_delay
        self.duplicate_statuses = duplicate_statuses
        self.shuffle_statuses = shuffle_statuses
        self.send_read = send_read
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self.sent: list[SentMessage] = []
        self._templates = [
            {**copy.deepcopy(t), "id": str(900000000000001 + i)}
            for i, t in enumerate(DEFAULT_TEMPLATES)
        ]
        self._failures: list[_ForcedFailure] = []
        self._faults: FaultInjector | None = None
        self._windows: dict[str, datetime] = {}
        self._last_send: dict[str, datetime] = {}
        self._undeliverable: set[str] = set()
        self._pair_rate_limit = False
        self._wamids = itertools.count(1)
        self._inbound_ids = itertools.count(1)
        self._poster = WebhookPoster(app_secret, webhook_url, attempts=webhook_attempts)
        self.app = Starlette(
            routes=[
                Route("/{version}/{phone_number_id}/messages", self._messages, methods=["POST"]),
                Route("/{version}/{waba_id}/message_templates", self._template_list),
            ]
        )

    # --- control API -------------------------------------------------------------------

    def fail_next(
        self,
        code: int,
        *,
        count: int = 1,
        http_status: int = 400,
        retry_after: float | None = None,
        to: str | None = None,
    ) -> None:
        """Answer the next ``count`` sends (to ``to``, if given) with Meta error ``code``."""
        with self._lock:
            self._failures.append(
                _ForcedFailure(code, count, http_status, retry_after, _digits(to) if to else None)
            )

    def inject_faults(self, plan: FaultPlan | None) -> FaultInjector | None:
        """From now on fail sends at random as ``plan`` says (None: stop); returns the injector.

        A lost answer still delivers the message and its status webhooks, as Meta does.
        """
        injector = FaultInjector(plan) if plan is not None else None
        with self._lock:
            self._faults = injector
        return injector

    def pair_rate_limit(self, enabled: bool = True) -> None:
        """Refuse (131056) a send < 6 s (sandbox clock) after the last one to that number."""
        with self._lock:
            self._pair_rate_limit = enabled

    def mark_undeliverable(self, wa_id: str) -> None:
        """Accept sends to ``wa_id``, then report them ``failed`` with 131026."""
        with self._lock:
            self._undeliverable.add(_digits(wa_id))

    def set_template(
        self,
        name: str,
        language: str,
        *,
        status: str | None = None,
        category: str | None = None,
        notify: bool = False,
    ) -> int | None:
        """Change a template's status (PAUSED, DISABLED, REINSTATED, …) or category (MARKETING, …).

        ``notify`` also POSTs, signed, the webhook Meta sends for that change
        (``message_template_status_update`` / ``template_category_update``); returns its status.
        """
        with self._lock:
            template = meta.find_template(self._templates, name, language)
            if template is None:
                raise KeyError(f"no template {name}/{language}")
            previous_category = template["category"]
            if status is not None:  # REINSTATED is Meta's event for "approved again"
                template["status"] = "APPROVED" if status == "REINSTATED" else status
            if category is not None:
                template["category"] = category
            changes = meta.template_changes(
                copy.deepcopy(template),
                status=status,
                previous_category=previous_category if category is not None else None,
            )
        if not notify:
            return None
        raw = meta.meta_json(meta.business_envelope(self.waba_id, changes, self._clock()))
        return self.post_raw(raw, sign(self.app_secret, raw))

    def add_template(self, template: dict[str, Any]) -> None:
        """Add (or replace, by name and language) a template given in Meta's list shape."""
        with self._lock:
            new = {"id": str(910000000000000 + len(self._templates)), **copy.deepcopy(template)}
            self._templates = [
                t
                for t in self._templates
                if (t["name"], t["language"]) != (new["name"], new["language"])
            ]
            self._templates.append(new)

    def templates(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._templates)

    def open_window(self, wa_id: str, at: datetime) -> None:
        """Note an inbound message from ``wa_id`` at ``at``: free-form sends allowed for 24 h."""
        with self._lock:
            self._windows[_digits(wa_id)] = at

    def window_open(self, wa_id: str) -> bool:
        with self._lock:
            return self._window_open(_digits(wa_id))

    def sent_messages(self) -> list[SentMessage]:
        with self._lock:
            return list(self.sent)

    @property
    def webhook_url(self) -> str | None:
        """Where webhooks go; None stops posting (queued ones are dropped) until it is set."""
        return self._poster.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._poster.url = url

    @property
    def webhook_log(self) -> list[WebhookAttempt]:
        """Every webhook POST attempt, in order: (status the daemon returned, exact body)."""
        return self._poster.log()

    @property
    def webhook_delay(self) -> float:
        """Extra wait before each webhook POST (a slow Meta)."""
        return self._poster.delay

    @webhook_delay.setter
    def webhook_delay(self, seconds: float) -> None:
        self._poster.delay = seconds

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every queued status webhook was posted or dropped; False on timeout."""
        return self._poster.wait_idle(timeout)

    def post_inbound_text(
        self,
        from_wa_id: str,
        body: str,
        *,
        name: str = "Customer",
        message_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """POST a signed inbound text webhook now and open the sender's window; return its id."""
        wa_id = _digits(from_wa_id)
        message_id = message_id or f"wamid.SBX.IN.{next(self._inbound_ids)}"
        message = meta.inbound_text_message(wa_id, message_id, timestamp or self._clock(), body)
        self.post_inbound([message], contacts=meta.contacts_for([message], name))
        return message_id

    def post_inbound(
        self, value_messages: list[dict[str, Any]], *, contacts: list[dict[str, Any]] | None = None
    ) -> int | None:
        """POST ``value_messages`` (any type, as given) signed; open each sender's window.

        ``contacts`` defaults to one "Customer" profile per sender. Returns the daemon's status.
        """
        if self.webhook_url is None:
            raise RuntimeError("the sandbox has no webhook_url")
        for message in value_messages:
            wa_id = _digits(str(message.get("from", "")))
            if wa_id:  # a username-only sender (empty ``from``) has no number to open
                self.open_window(wa_id, self._inbound_at(message))
        if contacts is None:
            contacts = meta.contacts_for(value_messages)
        return self._post_value({"contacts": contacts, "messages": value_messages})

    def post_statuses(self, statuses: list[dict[str, Any]]) -> int | None:
        """POST raw ``statuses[]`` items, as given, in Meta's envelope, signed; the status."""
        return self._post_value({"statuses": statuses})

    def post_raw(self, body: bytes, signature: str | None) -> int | None:
        """POST ``body`` to the webhook URL as is (``signature`` None = no header); the status."""
        return self._poster.post_now(body, signature)

    def close(self) -> None:
        """Stop the webhook worker for good (queued webhooks are dropped)."""
        self._poster.close()

    # --- HTTP handlers -----------------------------------------------------------------

    async def _messages(self, request: Request) -> JSONResponse:
        try:
            self._check_auth(request)
            self._check_object(request.path_params["phone_number_id"], self.phone_number_id)
            payload = _json_object(await request.body())
            fault = await self._injected_fault()
            with self._lock:
                answer = self._accept(payload)
            if fault is Fault.LOST_ANSWER and self._faults is not None:
                # Accepted (its status webhooks are queued, as Meta's would be); the answer is late.
                await anyio.sleep(self._faults.plan.stall_seconds)
            return JSONResponse(answer)
        except SandboxError as error:
            return _error_response(error)

    async def _injected_fault(self) -> Fault | None:
        """Raise the random fault's error; a lost request stalls first; LOST_ANSWER is returned."""
        faults = self._faults
        fault = faults.draw() if faults is not None else None
        if faults is None or fault is None or fault is Fault.LOST_ANSWER:
            return fault
        plan = faults.plan
        if fault is Fault.LOST_REQUEST:
            await anyio.sleep(plan.stall_seconds)
            raise SandboxError(2, "Service temporarily unavailable.", http_status=503)
        if fault is Fault.RATE_LIMITED:
            raise SandboxError(
                130429, "Rate limit hit.", http_status=429, retry_after=plan.retry_after
            )
        raise SandboxError(2, "Service temporarily unavailable.", http_status=503)

    async def _template_list(self, request: Request) -> JSONResponse:
        try:
            self._check_auth(request)
            self._check_object(request.path_params["waba_id"], self.waba_id)
            limit = max(1, int(request.query_params.get("limit", "25")))
            start = meta.decode_cursor(request.query_params.get("after"))
        except SandboxError as error:
            return _error_response(error)
        except ValueError:
            return _error_response(SandboxError(100, "limit and after must be valid"))
        fields = request.query_params.get("fields")
        with self._lock:
            page = [meta.project(t, fields) for t in self._templates[start : start + limit]]
            more = start + limit < len(self._templates)
        after = meta.encode_cursor(start + limit)
        paging: dict[str, Any] = {"cursors": {"before": meta.encode_cursor(start), "after": after}}
        if more:
            paging["next"] = str(request.url.include_query_params(after=after, limit=limit))
        return JSONResponse({"data": page, "paging": paging})

    def _check_auth(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            raise SandboxError(190, "Invalid OAuth access token.", http_status=401)

    @staticmethod
    def _check_object(given: str, expected: str) -> None:
        if given != expected:
            raise SandboxError(100, f"Unsupported request: object with ID '{given}' does not exist")

    # --- accepting a send (called with the lock held) ----------------------------------

    def _accept(self, payload: dict[str, Any]) -> dict[str, Any]:
        to = payload.get("to")
        if not isinstance(to, str) or not to.startswith("+") or not to[1:].isdigit():
            raise SandboxError(100, "to: must be an E.164 phone number with a leading '+'")
        wa_id = to[1:]
        self._take_forced_failure(wa_id)
        draft, category = self._validate(payload, to)
        now = self._clock()
        last = self._last_send.get(wa_id)
        if self._pair_rate_limit and last is not None and now - last < PAIR_RATE_SPACING:
            raise SandboxError(131056, "Too many messages sent to the same recipient.")
        self._last_send[wa_id] = now
        message = replace(draft, wamid=f"wamid.SBX.{next(self._wamids)}", at=now)
        self.sent.append(message)
        self._queue_statuses(message, category, now)
        result: dict[str, Any] = {"id": message.wamid}
        if message.type == "template":
            result["message_status"] = "accepted"
        contacts = [{"input": to, "wa_id": wa_id}]
        return {"messaging_product": "whatsapp", "contacts": contacts, "messages": [result]}

    def _take_forced_failure(self, wa_id: str) -> None:
        failure = next((f for f in self._failures if f.to in (None, wa_id)), None)
        if failure is None:
            return
        failure.remaining -= 1
        if failure.remaining <= 0:
            self._failures.remove(failure)
        details = "scripted failure"
        raise SandboxError(failure.code, details, failure.http_status, failure.retry_after)

    def _validate(self, payload: dict[str, Any], to: str) -> tuple[SentMessage, str]:
        if payload.get("messaging_product") != "whatsapp":
            raise SandboxError(100, "messaging_product must be 'whatsapp'")
        callback_data = payload.get("biz_opaque_callback_data")
        at = self._clock()
        if payload.get("type") == "template":
            template = meta.check_template_send(self._templates, payload.get("template"))
            components = payload["template"].get("components") or []
            button = meta.sent_parameters(components, "button")
            body = tuple(p["text"] for p in meta.sent_parameters(components, "body"))
            message = SentMessage(
                to=to,
                type="template",
                wamid="",
                at=at,
                template=template["name"],
                language=template["language"],
                body_params=body,
                button_suffix=button[0]["text"] if button else None,
                callback_data=callback_data,
            )
            return message, str(template["category"]).lower()
        if payload.get("type") == "text":
            text, reply_to = meta.check_text_send(payload)
            message = SentMessage(
                to, "text", "", at, text=text, callback_data=callback_data, reply_to=reply_to
            )
            return message, "service"
        raise SandboxError(100, f"unsupported message type {payload.get('type')!r}")

    def _window_open(self, wa_id: str) -> bool:
        opened = self._windows.get(wa_id)
        return opened is not None and self._clock() - opened < WINDOW

    def _queue_statuses(self, message: SentMessage, category: str, now: datetime) -> None:
        if self._poster.url is None:
            return
        statuses = self._statuses_for(message, category, now)
        if self.shuffle_statuses:
            statuses.reverse()
        if self.duplicate_statuses:
            statuses = [s for s in statuses for _ in range(2)]
        bodies = [meta.meta_json(self._envelope({"statuses": [s]})) for s in statuses]
        self._poster.submit(bodies, self.status_delay)

    def _statuses_for(
        self, message: SentMessage, category: str, now: datetime
    ) -> list[dict[str, Any]]:
        wa_id = message.to[1:]
        target = meta.StatusTarget(message.wamid, wa_id, message.callback_data)
        if wa_id in self._undeliverable:
            return [meta.failed_status(target, now, 131026, "Message Undeliverable.")]
        if message.type == "text" and not self._window_open(wa_id):
            return [meta.failed_status(target, now, 131047, "More than 24 hours have passed.")]
        free = category in ("utility", "service") and self._window_open(wa_id)
        steps = ["sent", "delivered", "read"] if self.send_read else ["sent", "delivered"]
        return meta.progress_statuses(target, meta.pricing(category, free), steps, now)

    def _envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        return meta.envelope(self.waba_id, self.phone_number_id, value, DISPLAY_PHONE_NUMBER)

    def _post_value(self, value: dict[str, Any]) -> int | None:
        raw = meta.meta_json(self._envelope(value))
        return self.post_raw(raw, sign(self.app_secret, raw))

    def _inbound_at(self, message: dict[str, Any]) -> datetime:
        stamp = str(message.get("timestamp", ""))
        return datetime.fromtimestamp(int(stamp), UTC) if stamp.isdigit() else self._clock()


def _error_response(error: SandboxError) -> JSONResponse:
    headers = {} if error.retry_after is None else {"Retry-After": f"{error.retry_after:g}"}
    return JSONResponse(error.body(), status_code=error.http_status, headers=headers)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise SandboxError(100, "the request body is not JSON") from exc
    if not isinstance(payload, dict):
        raise SandboxError(100, "the request body must be a JSON object")
    return payload


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())
