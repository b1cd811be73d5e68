"""Pure: a Meta webhook POST body (already signature-checked and JSON-decoded) → frozen values.

Meta changes payloads without notice (BR-17), so nothing here indexes a key strictly. Every
entry, change, status and message is read on its own: a bad one becomes a problem string naming
its index path (``entry[0].changes[1].value.statuses[0]: no id``) and the rest of the batch still
comes back. ``parse_webhook`` never raises for any JSON value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_UNIX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, datetime's ceiling
_MESSAGES_FIELD = "messages"
_TEMPLATE_FIELDS = frozenset({"message_template_status_update", "template_category_update"})


@dataclass(frozen=True, slots=True)
class StatusError:
    """One entry of a status's (or a value's) ``errors[]``; any part may be missing."""

    code: int | None
    title: str | None
    details: str | None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One ``statuses[]`` item: what happened to a message we sent."""

    wamid: str
    status: str
    timestamp: datetime | None
    recipient_id: str | None
    callback_data: str | None
    pricing: Mapping[str, Any] | None = field(hash=False)
    errors: tuple[StatusError, ...]
    raw: Mapping[str, Any] = field(hash=False)
    phone_number_id: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One ``messages[]`` item: something a customer sent us.

    ``from_wa_id`` is None for a username adopter (Meta sends ``from: ""``); ``user_id`` is the
    business-scoped user id (BSUID) when Meta sends one.
    """

    id: str
    from_wa_id: str | None
    user_id: str | None
    timestamp: datetime | None
    type: str
    text: str | None
    profile_name: str | None
    raw: Mapping[str, Any] = field(hash=False)
    errors: tuple[StatusError, ...] = ()
    phone_number_id: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateUpdate:
    """A ``message_template_status_update`` or ``template_category_update`` change value."""

    field_name: str
    template_id: str | None
    name: str | None
    language: str | None
    event: str | None
    category: str | None
    previous_category: str | None
    new_category: str | None
    correct_category: str | None
    reason: str | None
    raw: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    """Everything usable in one POST, plus a problem string for every item that was not."""

    statuses: tuple[StatusUpdate, ...]
    messages: tuple[InboundMessage, ...]
    problems: tuple[str, ...]
    other_fields: tuple[str, ...]
    template_updates: tuple[TemplateUpdate, ...] = ()
    value_errors: tuple[StatusError, ...] = ()


@dataclass(slots=True)
class _Batch:
    statuses: list[StatusUpdate] = field(default_factory=list)
    messages: list[InboundMessage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    other_fields: list[str] = field(default_factory=list)
    template_updates: list[TemplateUpdate] = field(default_factory=list)
    value_errors: list[StatusError] = field(default_factory=list)

    def frozen(self) -> ParsedWebhook:
        return ParsedWebhook(
            statuses=tuple(self.statuses),
            messages=tuple(self.messages),
            problems=tuple(self.problems),
            other_fields=tuple(dict.fromkeys(self.other_fields)),
            template_updates=tuple(self.template_updates),
            value_errors=tuple(self.value_errors),
        )


@dataclass(frozen=True, slots=True)
class _Contact:
    wa_id: str | None
    user_id: str | None
    name: str | None


class _BadItem(Exception):  # noqa: N818 - internal signal, never escapes this module
    """The item at hand is unusable; the message says why."""


def parse_webhook(payload: object) -> ParsedWebhook:
    """Every status, inbound message and template update in ``payload``; never raises."""
    batch = _Batch()
    if not isinstance(payload, dict):
        batch.problems.append(f"payload: not an object ({_kind(payload)})")
        return batch.frozen()
    entries = _list_at(payload, "entry", "entry", batch, required=True)
    for index, entry in enumerate(entries):
        with _isolated(f"entry[{index}]", batch) as path:
            _parse_entry(entry, path, batch)
    return batch.frozen()


@contextmanager
def _isolated(path: str, batch: _Batch) -> Iterator[str]:
    """Run one item's parse; its failure becomes a problem at ``path`` instead of an exception."""
    try:
        yield path
    except _BadItem as bad:
        batch.problems.append(f"{path}: {bad}")
    except Exception as exc:  # backstop: one odd item must not lose the batch
        batch.problems.append(f"{path}: internal error {type(exc).__name__}")


def _parse_entry(entry: object, path: str, batch: _Batch) -> None:
    entry_map = _require_object(entry)
    changes = _list_at(entry_map, "changes", f"{path}.changes", batch, required=True)
    for index, change in enumerate(changes):
        with _isolated(f"{path}.changes[{index}]", batch) as change_path:
            _parse_change(change, change_path, batch)


def _parse_change(change: object, path: str, batch: _Batch) -> None:
    change_map = _require_object(change)
    name = change_map.get("field", _MESSAGES_FIELD)
    if not isinstance(name, str):
        raise _BadItem(f"field is not a string ({_kind(name)})")
    value = change_map.get("value")
    if not isinstance(value, dict):
        raise _BadItem(f"value is not an object ({_kind(value)})")
    if name == _MESSAGES_FIELD:
        _parse_messages_value(value, f"{path}.value", batch)
        return
    batch.other_fields.append(name)
    if name in _TEMPLATE_FIELDS:
        batch.template_updates.append(_template_update(name, value))


def _parse_messages_value(value: dict[str, Any], path: str, batch: _Batch) -> None:
    phone_number_id = _text(_object_or_empty(value.get("metadata")).get("phone_number_id"))
    contacts = [
        contact
        for index, item in enumerate(_list_at(value, "contacts", f"{path}.contacts", batch))
        if (contact := _contact(item, f"{path}.contacts[{index}]", batch)) is not None
    ]
    for index, item in enumerate(_list_at(value, "statuses", f"{path}.statuses", batch)):
        with _isolated(f"{path}.statuses[{index}]", batch) as item_path:
            batch.statuses.append(_status(item, item_path, batch, phone_number_id))
    for index, item in enumerate(_list_at(value, "messages", f"{path}.messages", batch)):
        with _isolated(f"{path}.messages[{index}]", batch) as item_path:
            batch.messages.append(_message(item, item_path, batch, contacts, phone_number_id))
    batch.value_errors.extend(_errors(value.get("errors"), f"{path}.errors", batch))


def _status(item: object, path: str, batch: _Batch, phone_number_id: str | None) -> StatusUpdate:
    status = _require_object(item)
    wamid = _text(status.get("id"))
    if wamid is None:
        raise _BadItem("no id")
    state = _text(status.get("status"))
    if state is None:
        raise _BadItem(f"no status for {wamid}")
    pricing = status.get("pricing")
    if pricing is not None and not isinstance(pricing, dict):
        batch.problems.append(f"{path}.pricing: not an object ({_kind(pricing)})")
        pricing = None
    return StatusUpdate(
        wamid=wamid,
        status=state,
        timestamp=_timestamp(status.get("timestamp"), f"{path}.timestamp", batch),
        recipient_id=_text(status.get("recipient_id")),
        callback_data=_text(status.get("biz_opaque_callback_data")),
        pricing=pricing,
        errors=_errors(status.get("errors"), f"{path}.errors", batch),
        raw=status,
        phone_number_id=phone_number_id,
    )


def _message(
    item: object,
    path: str,
    batch: _Batch,
    contacts: list[_Contact],
    phone_number_id: str | None,
) -> InboundMessage:
    message = _require_object(item)
    message_id = _text(message.get("id"))
    if message_id is None:
        raise _BadItem("no id")
    sender = _text(message.get("from"))
    sender_user_id = _text(message.get("from_user_id"))
    contact = _contact_for(contacts, sender, sender_user_id)
    message_type = _text(message.get("type"))
    if message_type is None:
        batch.problems.append(f"{path}: no type for {message_id}")
        message_type = "unknown"
    return InboundMessage(
        id=message_id,
        from_wa_id=sender,
        user_id=sender_user_id or (contact.user_id if contact else None),
        timestamp=_timestamp(message.get("timestamp"), f"{path}.timestamp", batch),
        type=message_type,
        text=_message_text(message, message_type),
        profile_name=contact.name if contact else None,
        raw=message,
        errors=_errors(message.get("errors"), f"{path}.errors", batch),
        phone_number_id=phone_number_id,
    )


def _message_text(message: dict[str, Any], message_type: str) -> str | None:
    """What the customer typed or tapped: text body, button text, or interactive reply title."""
    if message_type == "text":
        return _raw_text(_object_or_empty(message.get("text")).get("body"))
    if message_type == "button":
        button = _object_or_empty(message.get("button"))
        return _text(button.get("text")) or _text(button.get("payload"))
    if message_type == "interactive":
        interactive = _object_or_empty(message.get("interactive"))
        for reply_kind in ("button_reply", "list_reply"):
            title = _text(_object_or_empty(interactive.get(reply_kind)).get("title"))
            if title is not None:
                return title
    return None


def _contact(item: object, path: str, batch: _Batch) -> _Contact | None:
    if not isinstance(item, dict):
        batch.problems.append(f"{path}: not an object ({_kind(item)})")
        return None
    return _Contact(
        wa_id=_text(item.get("wa_id")),
        user_id=_text(item.get("user_id")),
        name=_text(_object_or_empty(item.get("profile")).get("name")),
    )


def _contact_for(
    contacts: list[_Contact], wa_id: str | None, user_id: str | None
) -> _Contact | None:
    """The contact describing this sender; the only contact when nothing identifies one."""
    for contact in contacts:
        if (wa_id and contact.wa_id == wa_id) or (user_id and contact.user_id == user_id):
            return contact
    if len(contacts) == 1 and not (wa_id and contacts[0].wa_id):
        return contacts[0]
    return None


def _errors(value: object, path: str, batch: _Batch) -> tuple[StatusError, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        batch.problems.append(f"{path}: not a list ({_kind(value)})")
        return ()
    found: list[StatusError] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            batch.problems.append(f"{path}[{index}]: not an object ({_kind(item)})")
            continue
        found.append(
            StatusError(
                code=_int(item.get("code")),
                title=_text(item.get("title")) or _text(item.get("message")),
                details=_text(_object_or_empty(item.get("error_data")).get("details")),
            )
        )
    return tuple(found)


def _template_update(name: str, value: dict[str, Any]) -> TemplateUpdate:
    template_id = value.get("message_template_id")
    return TemplateUpdate(
        field_name=name,
        template_id=str(template_id) if _int(template_id) is not None else _text(template_id),
        name=_text(value.get("message_template_name")),
        language=_text(value.get("message_template_language")),
        event=_text(value.get("event")),
        category=_text(value.get("message_template_category")),
        previous_category=_text(value.get("previous_category")),
        new_category=_text(value.get("new_category")),
        correct_category=_text(value.get("correct_category")),
        reason=_text(value.get("reason")),
        raw=value,
    )


def _timestamp(value: object, path: str, batch: _Batch) -> datetime | None:
    """A unix time (Meta sends a digit string; template webhooks an int) → UTC; absent → None."""
    if value is None:
        return None
    seconds = _int(value)
    if seconds is None or not 0 <= seconds <= _MAX_UNIX_SECONDS:
        batch.problems.append(f"{path}: not a unix time ({_kind(value)})")
        return None
    return _EPOCH + timedelta(seconds=seconds)


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _list_at(
    container: dict[str, Any], key: str, path: str, batch: _Batch, *, required: bool = False
) -> list[Any]:
    value = container.get(key)
    if isinstance(value, list):
        return value
    if value is not None or required:
        batch.problems.append(f"{path}: not a list ({_kind(value)})")
    return []


def _require_object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _BadItem(f"not an object ({_kind(value)})")
    return value


def _object_or_empty(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    """A non-empty string, else None (Meta sends ``""`` for a username adopter's ``from``)."""
    return value if isinstance(value, str) and value else None


def _raw_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _kind(value: object) -> str:
    if value is None:
        return "missing"
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )
