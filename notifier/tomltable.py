"""Typed reading of parsed TOML, collecting every problem instead of stopping at the first.

``TomlTable`` wraps one table and its dotted path (``stores[0].labels``); each reader returns a
usable value (the default when the key is absent or wrong) and records what was wrong, so the
caller can report all problems at once. Readers for values several sections share (language
codes, time zones, ``HH:MM`` clock times, label tables, ``[[rules]]``) live here too.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Collection, Mapping
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.domain import Field, Rule, Urgency
from notifier.rules import parse_event

PARAM_VOCABULARY = frozenset(
    {"customer_name", "first_name", "last_name", "order_number", "total", "item_summary"}
    | {"payment_status", "fulfillment_status", "order_status"}
    | {"tracking_number", "tracking_link", "carrier"}
)

_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")
LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


class TomlTable:
    """One TOML table being read; every problem is recorded under its dotted path."""

    def __init__(self, data: object, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if data is not None and not isinstance(data, Mapping):
            problems.append(f"{path}: must be a table, got {describe_kind(data)}")

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.where(key)}: {message}")

    def allow(self, known: Collection[str]) -> None:
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem(key, f"unknown key{hint}")

    def _typed(self, key: str, kinds: tuple[type, ...], expected: str) -> Any:
        value = self.data.get(key)
        if value is None:
            return None
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.problem(key, f"must be {expected}, got {describe_kind(value)}")
            return None
        return value

    def optional_text(self, key: str) -> str | None:
        value: str | None = self._typed(key, (str,), "a string")
        return value

    def text(self, key: str, default: str) -> str:
        value = self.optional_text(key)
        if value is None:
            return default
        if not value.strip():
            self.problem(key, "must not be empty")
        return value

    def required_text(self, key: str, hint: str = "") -> str:
        value = self.optional_text(key)
        if value is None and key not in self.data:
            self.problem(key, f"is required{hint}")
        elif value is not None and not value.strip():
            self.problem(key, "must not be empty")
        return value or ""

    def choice(self, key: str, default: str, options: Collection[str]) -> str:
        """A string that must be one of ``options``; the default when it is not."""
        value = self.optional_text(key)
        if value is None:
            return default
        if value not in options:
            listed = " or ".join(repr(option) for option in sorted(options))
            self.problem(key, f"must be {listed}, got {value!r}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value: bool | None = self._typed(key, (bool,), "true or false")
        return default if value is None else value

    def number(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self._typed(key, (int, float), "a number")
        if value is None:
            return default
        if not math.isfinite(value):
            self.problem(key, f"must be a finite number, got {value}")
        elif value < 0 or (value == 0 and not allow_zero):
            self.problem(
                key, f"must be {'zero or more' if allow_zero else 'positive'}, got {value}"
            )
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value: int | None = self._typed(key, (int,), "an integer")
        if value is None:
            return default
        if not low <= value <= high:
            self.problem(key, f"must be between {low} and {high}, got {value}")
        return value

    def texts(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._typed(key, (list,), "a list of strings")
        if value is None:
            return default
        if not all(isinstance(item, str) for item in value):
            self.problem(key, "must be a list of strings")
            return default
        return tuple(value)

    def url(self, key: str, default: str | None) -> str | None:
        value = self.optional_text(key)
        if value is None:
            return default
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problem(key, f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    def clock(self, key: str, default: str) -> str:
        """A 24-hour ``HH:MM`` time of day, kept as text (``parse_clock`` turns it into a time)."""
        value = self.optional_text(key)
        if value is None:
            return default
        if not _CLOCK.fullmatch(value):
            self.problem(key, f"must be a 24-hour time like '21:00', got {value!r}")
            return default
        return value

    def time_zone(self, key: str, default: str) -> str:
        """An IANA zone name that this machine's zone database knows."""
        name = self.text(key, default)
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.problem(key, f"unknown time zone {name!r} (use IANA names like Asia/Kolkata)")
        return name

    def language(self, key: str, default: str) -> str:
        value = self.text(key, default)
        if not LANGUAGE_CODE.fullmatch(value):
            self.problem(key, f"{value!r} is not a language code like 'en' or 'en_US'")
        return value

    def child(self, key: str) -> TomlTable:
        return TomlTable(self.data.get(key), self.where(key), self.problems)

    def children(self, key: str) -> list[TomlTable] | None:
        value = self._typed(key, (list,), "an array of tables ([[...]])")
        if value is None:
            return None
        tables = []
        for index, item in enumerate(value):
            where = f"{self.where(key)}[{index}]"
            if isinstance(item, Mapping):
                tables.append(TomlTable(item, where, self.problems))
            else:
                self.problems.append(f"{where}: must be a table, got {describe_kind(item)}")
        return tables

    def file(self, key: str, base_dir: Path) -> Path | None:
        value = self.optional_text(key)
        if value is None:
            return None
        path = base_dir / value
        if not path.is_file():
            self.problem(key, f"file {str(path)!r} does not exist")
        return path


def parse_clock(text: str) -> time:
    """``"21:00"`` → ``time(21, 0)``; raises ValueError for anything but 24-hour ``HH:MM``."""
    match = _CLOCK.fullmatch(text)
    if match is None:
        msg = f"not a 24-hour HH:MM time: {text!r}"
        raise ValueError(msg)
    return time(int(match.group(1)), int(match.group(2)))


def settings_keys(settings_type: type, extra: Collection[str] = ()) -> frozenset[str]:
    """The TOML keys a section accepts: its settings fields, plus e.g. ``*_env`` secret names."""
    return frozenset(f.name for f in dataclasses.fields(settings_type)) | frozenset(extra)


def describe_kind(value: object) -> str:
    """How a TOML value is named in problems: ``a string``, ``an integer``, ``a table``…"""
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}
    names |= {list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def read_labels(table: TomlTable) -> Mapping[str, Mapping[str, str]]:
    """``[labels.<language>]`` tables of ``"field.VALUE" = "text"``, frozen."""
    labels: dict[str, Mapping[str, str]] = {}
    for language, value in table.data.items():
        if not LANGUAGE_CODE.fullmatch(language):
            table.problem(language, "is not a language code like 'en' or 'en_US'")
        entries = TomlTable(value, table.where(language), table.problems)
        flat = _flatten(entries.data)
        for key, text in flat.items():
            if not isinstance(text, str) or not text.strip():
                entries.problem(key, "label must be a non-empty string")
        labels[language] = MappingProxyType({k: v for k, v in flat.items() if isinstance(v, str)})
    return MappingProxyType(labels)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    """Unquoted dotted keys (payment.PAID = ...) arrive as nested tables; join them back."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Rule is a slotted dataclass, so its defaults are read from an instance, not the class.
_RULE_DEFAULTS = Rule(Field.PAYMENT, "PAID", "template")
_RULE_KEYS = ("event", "template", "languages", "params", "param_names", "button_param", "urgency")
_URGENCIES = frozenset(u.value for u in Urgency)


def read_rules(table: TomlTable) -> tuple[Rule, ...] | None:
    """The ``[[rules]]`` under ``table``; None when the key is absent (inherit), () when empty."""
    tables = table.children("rules")
    if tables is None:
        return None
    return tuple(rule for rule in map(_rule, tables) if rule is not None)


def _rule(table: TomlTable) -> Rule | None:
    table.allow(_RULE_KEYS)
    event_text = table.required_text("event", " (for example 'payment:PAID')")
    template = table.required_text("template", " (the approved WhatsApp template name)")
    languages = table.texts("languages", _RULE_DEFAULTS.languages)
    params = table.texts("params", _RULE_DEFAULTS.params)
    param_names = table.texts("param_names", ())
    button_param = table.optional_text("button_param")
    urgency = table.text("urgency", Urgency.NORMAL.value)
    _check_rule_lists(table, languages, params, param_names)
    if button_param is not None and button_param not in PARAM_VOCABULARY:
        table.problem("button_param", _unknown_param(button_param))
    if urgency not in _URGENCIES:
        table.problem("urgency", f"must be 'normal' or 'urgent', got {urgency!r}")
    try:
        event = parse_event(event_text) if event_text else None
    except ValueError as error:
        table.problem("event", str(error))
        return None
    if event is None or urgency not in _URGENCIES:
        return None
    field_, value = event
    return Rule(
        field_, value, template, languages, params, param_names, button_param, Urgency(urgency)
    )


def _check_rule_lists(
    table: TomlTable, languages: tuple[str, ...], params: tuple[str, ...], names: tuple[str, ...]
) -> None:
    if not languages:
        table.problem("languages", "must list at least one language")
    for language in languages:
        if not LANGUAGE_CODE.fullmatch(language):
            table.problem("languages", f"{language!r} is not a language code like 'en' or 'en_US'")
    for param in params:
        if param not in PARAM_VOCABULARY:
            table.problem("params", _unknown_param(param))
    if names and len(names) != len(params):
        table.problem("param_names", f"has {len(names)} names for {len(params)} params")
    for name in names:
        if not _PARAM_NAME.fullmatch(name):
            table.problem("param_names", f"{name!r} must be lowercase letters, digits and _")


def _unknown_param(param: str) -> str:
    return f"unknown parameter {param!r} (known: {', '.join(sorted(PARAM_VOCABULARY))})"
