"""Frozen settings from one TOML file plus an explicit environment mapping.

Parsing never stops at the first mistake: every problem is collected, each naming its TOML path
(``stores[0].timezone``, counting from 0), and ``ConfigError`` lists them all at once.
Secrets come from environment variables (a literal in the file is accepted for sandbox use, but
the variable wins when set) and are wrapped in ``Secret`` so no ``repr`` or log line shows them.
Functions take ``environ`` as a parameter; nothing here reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from notifier.domain import Field, Rule, Urgency
from notifier.errors import ConfigError
from notifier.rules import DEFAULT_RULES, parse_event

DEFAULT_DATABASE_URL = "sqlite:///notifier.db"
CONFIG_ENV = "NOTIFIER_CONFIG"
DATABASE_URL_ENV = "NOTIFIER_DATABASE_URL"
WIX_API_KEY_ENV = "NOTIFIER_WIX_API_KEY"
# Names of environment variables, not secrets (hence the noqa).
ACCESS_TOKEN_ENV = "NOTIFIER_WHATSAPP_ACCESS_TOKEN"  # noqa: S105
APP_SECRET_ENV = "NOTIFIER_WHATSAPP_APP_SECRET"  # noqa: S105
VERIFY_TOKEN_ENV = "NOTIFIER_WHATSAPP_VERIFY_TOKEN"  # noqa: S105

PARAM_VOCABULARY = frozenset(
    {"customer_name", "first_name", "last_name", "order_number", "total", "item_summary"}
    | {"payment_status", "fulfillment_status", "order_status"}
    | {"tracking_number", "tracking_link", "carrier"}
)

_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*")
_API_VERSION = re.compile(r"v\d+\.\d+")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential that never shows itself: ``repr`` and ``str`` print ``Secret('****')``."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__


def _no_labels() -> Mapping[str, Mapping[str, str]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    name: str
    site_id: str
    api_key: Secret
    wix_base_url: str = "https://www.wixapis.com"
    poll_interval_seconds: float = 60
    overlap_seconds: float = 120
    default_country: str = "IN"
    timezone: str = "Asia/Kolkata"
    default_language: str = "en"
    name_fallback: str = "there"
    rules: tuple[Rule, ...] = DEFAULT_RULES
    rate_card_path: Path | None = None
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=_no_labels)
    request_timeout_seconds: float = 10

    @property
    def zone(self) -> ZoneInfo:
        """The store's local time zone (quiet hours, dates shown to customers)."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True, kw_only=True)
class WhatsAppSettings:
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v24.0"
    phone_number_id: str
    waba_id: str
    access_token: Secret
    app_secret: Secret
    verify_token: Secret
    timeout_seconds: float = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    interval_seconds: float = 5
    batch_size: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    stores: tuple[StoreSettings, ...]
    whatsapp: WhatsAppSettings
    rate_card_path: Path | None = None
    web: WebSettings = WebSettings()
    dispatch: DispatchSettings = DispatchSettings()
    source: Path | None = None


class _Table:
    """One TOML table being read; every problem is recorded under its dotted path."""

    def __init__(self, data: object, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if data is not None and not isinstance(data, Mapping):
            problems.append(f"{path}: must be a table, got {_kind(data)}")

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
            self.problem(key, f"must be {expected}, got {_kind(value)}")
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

    def number(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self._typed(key, (int, float), "a number")
        if value is None:
            return default
        if value < 0 or (value == 0 and not allow_zero):
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

    def child(self, key: str) -> _Table:
        return _Table(self.data.get(key), self.where(key), self.problems)

    def children(self, key: str) -> list[_Table] | None:
        value = self._typed(key, (list,), "an array of tables ([[...]])")
        if value is None:
            return None
        return [
            _Table(item, f"{self.where(key)}[{i}]", self.problems) for i, item in enumerate(value)
        ]

    def file(self, key: str, base_dir: Path) -> Path | None:
        value = self.optional_text(key)
        if value is None:
            return None
        path = base_dir / value
        if not path.is_file():
            self.problem(key, f"file {str(path)!r} does not exist")
        return path


def _keys(settings_type: type, extra: Collection[str] = ()) -> frozenset[str]:
    """The TOML keys a section accepts: its settings fields, plus e.g. ``*_env`` secret names."""
    return frozenset(f.name for f in dataclasses.fields(settings_type)) | frozenset(extra)


def _kind(value: object) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}
    names |= {list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def resolve_config_path(cli_value: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """``--config`` if given, else ``$NOTIFIER_CONFIG``, else ``notifier.toml`` in ``cwd``."""
    chosen = cli_value or environ.get(CONFIG_ENV) or "notifier.toml"
    return cwd / chosen


def load_settings(path: Path, environ: Mapping[str, str]) -> Settings:
    """Read and validate the TOML file at ``path``; raise one ConfigError listing every problem."""
    data = _read_toml(path)
    settings = parse_settings(data, environ=environ, base_dir=path.absolute().parent)
    return dataclasses.replace(settings, source=path)


def check_settings(path: Path, environ: Mapping[str, str]) -> list[str]:
    """Every problem in the configuration at ``path``; an empty list means it is usable."""
    try:
        load_settings(path, environ)
    except ConfigError as error:
        return error.problems
    return []


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f"pass --config or set {CONFIG_ENV}"
        raise ConfigError([f"{path}: config file not found ({hint})"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{path}: cannot read the config file: {error}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: invalid TOML: {error}"]) from None


_TOP_KEYS = _keys(Settings, extra=("rules",)) - {"source"}


def parse_settings(
    data: Mapping[str, Any], *, environ: Mapping[str, str], base_dir: Path
) -> Settings:
    """Build Settings from parsed TOML; raise one ConfigError listing every problem found."""
    problems: list[str] = []
    top = _Table(data, "", problems)
    top.allow(_TOP_KEYS)
    database_url = _database_url(top, environ, base_dir)
    rate_card_path = top.file("rate_card_path", base_dir)
    global_rules = _rules(top)
    stores = _stores(top, global_rules, environ, base_dir)
    whatsapp = _whatsapp(top.child("whatsapp"), environ)
    web = _web(top.child("web"))
    dispatch = _dispatch(top.child("dispatch"))
    if problems:
        raise ConfigError(problems)
    return Settings(
        database_url=database_url,
        stores=stores,
        whatsapp=whatsapp,
        rate_card_path=rate_card_path,
        web=web,
        dispatch=dispatch,
    )


def _database_url(top: _Table, environ: Mapping[str, str], base_dir: Path) -> str:
    configured = top.text("database_url", DEFAULT_DATABASE_URL)
    url = environ.get(DATABASE_URL_ENV) or configured
    if not _URL_SCHEME.match(url):
        where = DATABASE_URL_ENV if environ.get(DATABASE_URL_ENV) else "database_url"
        top.problems.append(f"{where}: must be a URL like {DEFAULT_DATABASE_URL!r}, got {url!r}")
        return url
    scheme, separator, rest = url.partition(":///")
    relative = rest and not rest.startswith(("/", ":memory:", "file:"))
    if separator and scheme.startswith("sqlite") and relative:
        return f"{scheme}:///{base_dir / rest}"
    return url


def _secret(
    table: _Table, key: str, env_names: Sequence[str], environ: Mapping[str, str]
) -> Secret:
    explicit = table.optional_text(f"{key}_env")
    names = [explicit] if explicit else list(env_names)
    for name in names:
        if environ.get(name):
            return Secret(environ[name])
    literal = table.optional_text(key)
    if literal:
        return Secret(literal)
    table.problem(key, f"missing secret: set the environment variable {' or '.join(names)}")
    return Secret("")


def store_api_key_env(store_name: str) -> str:
    """The per-store variable for a store's Wix key: ``NOTIFIER_WIX_API_KEY_MY_SHOP``."""
    return f"{WIX_API_KEY_ENV}_{re.sub(r'[^A-Z0-9]', '_', store_name.upper())}"


_STORE_KEYS = _keys(StoreSettings, extra=("api_key_env",))


def _stores(
    top: _Table, global_rules: tuple[Rule, ...] | None, environ: Mapping[str, str], base_dir: Path
) -> tuple[StoreSettings, ...]:
    tables = top.children("stores")
    if not tables:
        if tables is not None or "stores" not in top.data:
            top.problem("stores", "at least one [[stores]] table is required")
        return ()
    stores = tuple(_store(table, global_rules, environ, base_dir) for table in tables)
    seen: set[str] = set()
    for table, store in zip(tables, stores, strict=True):
        if store.name and store.name in seen:
            table.problem("name", f"duplicate store name {store.name!r}")
        seen.add(store.name)
    return stores


def _store(
    table: _Table, global_rules: tuple[Rule, ...] | None, environ: Mapping[str, str], base_dir: Path
) -> StoreSettings:
    table.allow(_STORE_KEYS)
    name = table.required_text("name", " (a short id such as 'main-shop')")
    if ":" in name:
        table.problem("name", "must not contain ':'")
    api_key_envs = (store_api_key_env(name), WIX_API_KEY_ENV) if name else (WIX_API_KEY_ENV,)
    own_rules = _rules(table)
    inherited = global_rules if global_rules is not None else DEFAULT_RULES
    return StoreSettings(
        name=name,
        site_id=table.required_text("site_id", " (the Wix site id, a GUID)"),
        api_key=_secret(table, "api_key", api_key_envs, environ),
        wix_base_url=table.url("wix_base_url", None) or "https://www.wixapis.com",
        poll_interval_seconds=table.number("poll_interval_seconds", 60),
        overlap_seconds=table.number("overlap_seconds", 120, allow_zero=True),
        default_country=_country(table),
        timezone=_timezone(table),
        default_language=_language(table, "default_language", "en"),
        name_fallback=table.text("name_fallback", "there"),
        rules=own_rules if own_rules is not None else inherited,
        rate_card_path=table.file("rate_card_path", base_dir),
        labels=_labels(table.child("labels")),
        request_timeout_seconds=table.number("request_timeout_seconds", 10),
    )


def _country(table: _Table) -> str:
    country = table.text("default_country", "IN").upper()
    if country not in phonenumbers.SUPPORTED_REGIONS:
        table.problem(
            "default_country", f"unknown country code {country!r} (use ISO codes like IN)"
        )
    return country


def _timezone(table: _Table) -> str:
    name = table.text("timezone", "Asia/Kolkata")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        table.problem("timezone", f"unknown time zone {name!r} (use IANA names like Asia/Kolkata)")
    return name


def _language(table: _Table, key: str, default: str) -> str:
    language = table.text(key, default)
    if not _LANGUAGE.fullmatch(language):
        table.problem(key, f"{language!r} is not a language code like 'en' or 'en_US'")
    return language


def _labels(table: _Table) -> Mapping[str, Mapping[str, str]]:
    labels: dict[str, Mapping[str, str]] = {}
    for language, value in table.data.items():
        if not _LANGUAGE.fullmatch(language):
            table.problem(language, "is not a language code like 'en' or 'en_US'")
        entries = _Table(value, table.where(language), table.problems)
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


def _rules(table: _Table) -> tuple[Rule, ...] | None:
    tables = table.children("rules")
    if tables is None:
        return None
    return tuple(rule for rule in map(_rule, tables) if rule is not None)


def _rule(table: _Table) -> Rule | None:
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
    if urgency not in {u.value for u in Urgency}:
        table.problem("urgency", f"must be 'normal' or 'urgent', got {urgency!r}")
    try:
        event = parse_event(event_text) if event_text else None
    except ValueError as error:
        table.problem("event", str(error))
        return None
    if event is None or urgency not in {u.value for u in Urgency}:
        return None
    field_, value = event
    return Rule(
        field_, value, template, languages, params, param_names, button_param, Urgency(urgency)
    )


def _check_rule_lists(
    table: _Table, languages: tuple[str, ...], params: tuple[str, ...], names: tuple[str, ...]
) -> None:
    if not languages:
        table.problem("languages", "must list at least one language")
    for language in languages:
        if not _LANGUAGE.fullmatch(language):
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


_WHATSAPP_KEYS = _keys(
    WhatsAppSettings, extra=("access_token_env", "app_secret_env", "verify_token_env")
)


def _whatsapp(table: _Table, environ: Mapping[str, str]) -> WhatsAppSettings:
    table.allow(_WHATSAPP_KEYS)
    api_version = table.text("api_version", "v24.0")
    if not _API_VERSION.fullmatch(api_version):
        table.problem("api_version", f"must look like 'v24.0', got {api_version!r}")
    return WhatsAppSettings(
        base_url=table.url("base_url", None) or "https://graph.facebook.com",
        api_version=api_version,
        phone_number_id=table.required_text("phone_number_id", " (from WhatsApp Manager)"),
        waba_id=table.required_text("waba_id", " (the WhatsApp Business Account id)"),
        access_token=_secret(table, "access_token", (ACCESS_TOKEN_ENV,), environ),
        app_secret=_secret(table, "app_secret", (APP_SECRET_ENV,), environ),
        verify_token=_secret(table, "verify_token", (VERIFY_TOKEN_ENV,), environ),
        timeout_seconds=table.number("timeout_seconds", 10),
    )


def _web(table: _Table) -> WebSettings:
    table.allow(_keys(WebSettings))
    return WebSettings(
        host=table.text("host", "127.0.0.1"),
        port=table.integer("port", 8080, 1, 65535),
        public_url=table.url("public_url", None),
    )


def _dispatch(table: _Table) -> DispatchSettings:
    table.allow(_keys(DispatchSettings))
    return DispatchSettings(
        interval_seconds=table.number("interval_seconds", 5),
        batch_size=table.integer("batch_size", 100, 1, 10_000),
    )
