"""Frozen settings from one TOML file plus an explicit environment mapping.

Parsing never stops at the first mistake: every problem is collected, each naming its TOML path
(``stores[0].timezone``, counting from 0), and ``ConfigError`` lists them all at once.
Secrets come from environment variables (a literal in the file is accepted for sandbox use, but
the variable wins when set) and are wrapped in ``Secret`` so no ``repr`` or log line shows them.
Functions take ``environ`` as a parameter; nothing here reads ``os.environ``. The table reader
and the rule/label readers live in ``notifier.tomltable``.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

import phonenumbers

from notifier.domain import Rule
from notifier.errors import ConfigError
from notifier.rules import DEFAULT_RULES
from notifier.tomltable import PARAM_VOCABULARY as _PARAM_VOCABULARY
from notifier.tomltable import TomlTable, parse_clock, read_labels, read_rules, settings_keys

PARAM_VOCABULARY = _PARAM_VOCABULARY  # kept importable from here, its historic home
DEFAULT_DATABASE_URL = "sqlite:///notifier.db"
CONFIG_ENV = "NOTIFIER_CONFIG"
DATABASE_URL_ENV = "NOTIFIER_DATABASE_URL"
WIX_API_KEY_ENV = "NOTIFIER_WIX_API_KEY"
# Names of environment variables, not secrets (hence the noqa).
ACCESS_TOKEN_ENV = "NOTIFIER_WHATSAPP_ACCESS_TOKEN"  # noqa: S105
APP_SECRET_ENV = "NOTIFIER_WHATSAPP_APP_SECRET"  # noqa: S105
VERIFY_TOKEN_ENV = "NOTIFIER_WHATSAPP_VERIFY_TOKEN"  # noqa: S105
OPS_TOKEN_ENV = "NOTIFIER_OPS_TOKEN"  # noqa: S105
# The ops pages show masked customer data; a short token could be guessed.
OPS_TOKEN_MIN_LENGTH = 16

_API_VERSION = re.compile(r"v\d+\.\d+")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

LateReply = Literal["template", "drop"]
# The key of a monthly budget given as a plain amount: the rate card's currency for the store's country.
RATE_CARD_CURRENCY = "*"
_CURRENCY = re.compile(r"[A-Z]{3}")


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


def _no_budget() -> Mapping[str, Decimal]:
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
    quiet_hours_enabled: bool = True
    quiet_hours_start: str = "21:00"
    quiet_hours_end: str = "08:00"
    # Currency -> cap on a calendar month's spend (UTC); RATE_CARD_CURRENCY: the rate card's one.
    monthly_budget: Mapping[str, Decimal] = field(default_factory=_no_budget)

    @property
    def zone(self) -> ZoneInfo:
        """The store's local time zone (quiet hours, dates shown to customers)."""
        return ZoneInfo(self.timezone)

    @property
    def quiet_start(self) -> time:
        """Local time at which normal notifications start being held."""
        return parse_clock(self.quiet_hours_start)

    @property
    def quiet_end(self) -> time:
        """Local time at which held notifications may go out (may be on the next day)."""
        return parse_clock(self.quiet_hours_end)


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
    template_recheck_seconds: float = 600  # how often the daemon re-reads the account's templates


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    ops_token: Secret | None = None  # None: the ops pages are disabled


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    interval_seconds: float = 5
    batch_size: int = 100
    recipient_spacing_seconds: float = 6
    max_attempts: int = 8
    stop_pause_seconds: float = 300
    ambiguous_grace_seconds: float = 900
    unreachable_skip_days: float = 7  # 0: never skip a number that was undeliverable (131026)
    messages_per_second: float = 80  # the business number's throughput; 0: unlimited
    concurrent_sends: int = 4  # sends in flight at once (one recipient's still go in order)


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupSettings:
    max_lookups_per_hour: int = 10
    late_reply: LateReply = "template"
    late_reply_template: str = "order_status_update"
    late_reply_language: str = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    stores: tuple[StoreSettings, ...]
    whatsapp: WhatsAppSettings
    rate_card_path: Path | None = None
    web: WebSettings = WebSettings()
    dispatch: DispatchSettings = DispatchSettings()
    lookup: LookupSettings = LookupSettings()
    source: Path | None = None


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


_TOP_KEYS = settings_keys(Settings, extra=("rules",)) - {"source"}


def parse_settings(
    data: Mapping[str, Any], *, environ: Mapping[str, str], base_dir: Path
) -> Settings:
    """Build Settings from parsed TOML; raise one ConfigError listing every problem found."""
    problems: list[str] = []
    top = TomlTable(data, "", problems)
    top.allow(_TOP_KEYS)
    database_url = _database_url(top, environ, base_dir)
    rate_card_path = top.file("rate_card_path", base_dir)
    global_rules = read_rules(top)
    stores = _stores(top, global_rules, environ, base_dir)
    whatsapp = _whatsapp(top.child("whatsapp"), environ)
    web = _web(top.child("web"), environ)
    dispatch = _dispatch(top.child("dispatch"))
    lookup = _lookup(top.child("lookup"))
    if problems:
        raise ConfigError(problems)
    return Settings(
        database_url=database_url,
        stores=stores,
        whatsapp=whatsapp,
        rate_card_path=rate_card_path,
        web=web,
        dispatch=dispatch,
        lookup=lookup,
    )


def _database_url(top: TomlTable, environ: Mapping[str, str], base_dir: Path) -> str:
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
    table: TomlTable, key: str, env_names: Sequence[str], environ: Mapping[str, str]
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


_STORE_KEYS = settings_keys(StoreSettings, extra=("api_key_env",))


def _stores(
    top: TomlTable,
    global_rules: tuple[Rule, ...] | None,
    environ: Mapping[str, str],
    base_dir: Path,
) -> tuple[StoreSettings, ...]:
    tables = top.children("stores")
    if not tables:
        if tables is not None or "stores" not in top.data:
            top.problem("stores", "at least one [[stores]] table is required")
        return ()
    stores = tuple(_store(table, global_rules, environ, base_dir) for table in tables)
    _check_distinct(tables, stores)
    return stores


def _check_distinct(tables: list[TomlTable], stores: tuple[StoreSettings, ...]) -> None:
    """Two stores on one Wix site would notify each customer twice (dedupe is per store); two
    names that map to one key variable would share a Wix key."""
    names: set[str] = set()
    sites: dict[str, str] = {}
    key_vars: dict[str, str] = {}
    for table, store in zip(tables, stores, strict=True):
        if not store.name:
            continue
        if store.name in names:
            table.problem("name", f"duplicate store name {store.name!r}")
            continue
        names.add(store.name)
        key_var = store_api_key_env(store.name)
        if key_var in key_vars:
            other = key_vars[key_var]
            table.problem("name", f"stores {other!r} and {store.name!r} both read {key_var}")
        key_vars.setdefault(key_var, store.name)
        if store.site_id and store.site_id in sites:
            other = sites[store.site_id]
            table.problem("site_id", f"store {other!r} already polls site {store.site_id}")
        sites.setdefault(store.site_id, store.name)


def _store(
    table: TomlTable,
    global_rules: tuple[Rule, ...] | None,
    environ: Mapping[str, str],
    base_dir: Path,
) -> StoreSettings:
    table.allow(_STORE_KEYS)
    name = table.required_text("name", " (a short id such as 'main-shop')")
    if ":" in name:
        table.problem("name", "must not contain ':'")
    api_key_envs = (store_api_key_env(name), WIX_API_KEY_ENV) if name else (WIX_API_KEY_ENV,)
    own_rules = read_rules(table)
    inherited = global_rules if global_rules is not None else DEFAULT_RULES
    quiet_enabled = table.boolean("quiet_hours_enabled", True)
    quiet_start, quiet_end = _quiet_hours(table, enabled=quiet_enabled)
    return StoreSettings(
        name=name,
        site_id=table.required_text("site_id", " (the Wix site id, a GUID)"),
        api_key=_secret(table, "api_key", api_key_envs, environ),
        wix_base_url=table.url("wix_base_url", None) or "https://www.wixapis.com",
        poll_interval_seconds=table.number("poll_interval_seconds", 60),
        overlap_seconds=table.number("overlap_seconds", 120, allow_zero=True),
        default_country=_country(table),
        timezone=table.time_zone("timezone", "Asia/Kolkata"),
        default_language=table.language("default_language", "en"),
        name_fallback=table.text("name_fallback", "there"),
        rules=own_rules if own_rules is not None else inherited,
        rate_card_path=table.file("rate_card_path", base_dir),
        labels=read_labels(table.child("labels")),
        request_timeout_seconds=table.number("request_timeout_seconds", 10),
        quiet_hours_enabled=quiet_enabled,
        quiet_hours_start=quiet_start,
        quiet_hours_end=quiet_end,
        monthly_budget=_monthly_budget(table),
    )


def _monthly_budget(table: TomlTable) -> Mapping[str, Decimal]:
    """``monthly_budget = 5000`` (the rate card's currency) or ``{ INR = 5000, USD = "60" }``."""
    value = table.data.get("monthly_budget")
    if value is None:
        return _no_budget()
    given = value if isinstance(value, Mapping) else {RATE_CARD_CURRENCY: value}
    caps: dict[str, Decimal] = {}
    for currency, amount in given.items():
        where = "monthly_budget" if currency == RATE_CARD_CURRENCY else f"monthly_budget.{currency}"
        if currency != RATE_CARD_CURRENCY and not _CURRENCY.fullmatch(str(currency)):
            table.problem(where, f"{currency!r} is not a currency code like 'INR'")
            continue
        cap = _amount(amount)
        if cap is None:
            table.problem(where, f'must be a positive amount like "5000.00", got {amount!r}')
            continue
        caps[str(currency)] = cap
    return MappingProxyType(caps)


def _amount(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount > 0 else None


def _country(table: TomlTable) -> str:
    country = table.text("default_country", "IN").upper()
    if country not in phonenumbers.SUPPORTED_REGIONS:
        table.problem(
            "default_country", f"unknown country code {country!r} (use ISO codes like IN)"
        )
    return country


def _quiet_hours(table: TomlTable, *, enabled: bool) -> tuple[str, str]:
    start = table.clock("quiet_hours_start", "21:00")
    end = table.clock("quiet_hours_end", "08:00")
    if enabled and start == end:
        hint = "set quiet_hours_enabled = false to turn quiet hours off"
        table.problem("quiet_hours_end", f"must differ from quiet_hours_start ({hint})")
    return start, end


_WHATSAPP_KEYS = settings_keys(
    WhatsAppSettings, extra=("access_token_env", "app_secret_env", "verify_token_env")
)


def _whatsapp(table: TomlTable, environ: Mapping[str, str]) -> WhatsAppSettings:
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
        template_recheck_seconds=table.number("template_recheck_seconds", 600),
    )


def _web(table: TomlTable, environ: Mapping[str, str]) -> WebSettings:
    table.allow(settings_keys(WebSettings, extra=("ops_token_env",)))
    return WebSettings(
        host=table.text("host", "127.0.0.1"),
        port=table.integer("port", 8080, 1, 65535),
        public_url=table.url("public_url", None),
        ops_token=_ops_token(table, environ),
    )


def _ops_token(table: TomlTable, environ: Mapping[str, str]) -> Secret | None:
    """Optional: without a token the ops pages stay off, so a missing one is not a problem."""
    name = table.optional_text("ops_token_env") or OPS_TOKEN_ENV
    value = environ.get(name) or table.optional_text("ops_token")
    if not value:
        return None
    if len(value) < OPS_TOKEN_MIN_LENGTH:
        table.problem("ops_token", f"must be at least {OPS_TOKEN_MIN_LENGTH} characters ({name})")
    return Secret(value)


def _dispatch(table: TomlTable) -> DispatchSettings:
    table.allow(settings_keys(DispatchSettings))
    return DispatchSettings(
        interval_seconds=table.number("interval_seconds", 5),
        batch_size=table.integer("batch_size", 100, 1, 10_000),
        recipient_spacing_seconds=table.number("recipient_spacing_seconds", 6, allow_zero=True),
        max_attempts=table.integer("max_attempts", 8, 1, 100),
        stop_pause_seconds=table.number("stop_pause_seconds", 300),
        ambiguous_grace_seconds=table.number("ambiguous_grace_seconds", 900, allow_zero=True),
        unreachable_skip_days=table.number("unreachable_skip_days", 7, allow_zero=True),
        messages_per_second=table.number("messages_per_second", 80, allow_zero=True),
        concurrent_sends=table.integer("concurrent_sends", 4, 1, 64),
    )


def _lookup(table: TomlTable) -> LookupSettings:
    table.allow(settings_keys(LookupSettings))
    late_reply = table.choice("late_reply", "template", ("template", "drop"))
    return LookupSettings(
        max_lookups_per_hour=table.integer("max_lookups_per_hour", 10, 1, 10_000),
        late_reply="drop" if late_reply == "drop" else "template",
        late_reply_template=table.text("late_reply_template", "order_status_update"),
        late_reply_language=table.language("late_reply_language", "en"),
    )
