"""Settings from TOML + an environment mapping: defaults, secrets, precedence, all problems."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.config import (
    DispatchSettings,
    LookupSettings,
    Secret,
    Settings,
    StoreSettings,
    WebSettings,
    WhatsAppSettings,
    check_settings,
    load_settings,
    parse_settings,
    resolve_config_path,
    store_api_key_env,
)
from notifier.domain import Field, Rule, Urgency
from notifier.errors import ConfigError
from notifier.rules import DEFAULT_RULES

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "notifier.example.toml"

SECRETS_ENV = {
    "NOTIFIER_WIX_API_KEY": "wix-fallback-key",
    "NOTIFIER_WHATSAPP_ACCESS_TOKEN": "EAAG-access-token",
    "NOTIFIER_WHATSAPP_APP_SECRET": "app-secret-value",
    "NOTIFIER_WHATSAPP_VERIFY_TOKEN": "verify-token-value",
}

MINIMAL = """
[whatsapp]
phone_number_id = "1111"
waba_id = "2222"

[[stores]]
name = "main"
site_id = "site-guid"
"""


def parse(
    text: str, environ: dict[str, str] | None = None, base_dir: Path = Path("/srv")
) -> Settings:
    env = SECRETS_ENV if environ is None else environ
    return parse_settings(tomllib.loads(text), environ=env, base_dir=base_dir)


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, environ)
    return caught.value.problems


def test_minimal_config_gets_documented_defaults() -> None:
    """A config with only ids gets every documented default."""
    settings = parse(MINIMAL)
    store = settings.stores[0]
    assert settings.database_url == "sqlite:////srv/notifier.db"
    assert (store.wix_base_url, store.poll_interval_seconds, store.overlap_seconds) == (
        "https://www.wixapis.com",
        60,
        120,
    )
    assert (store.default_country, store.timezone, store.default_language) == (
        "IN",
        "Asia/Kolkata",
        "en",
    )
    assert (store.name_fallback, store.request_timeout_seconds) == ("there", 10)
    assert store.rules == DEFAULT_RULES
    assert store.rate_card_path is None
    assert dict(store.labels) == {}
    assert settings.whatsapp.base_url == "https://graph.facebook.com"
    assert settings.whatsapp.api_version == "v24.0"
    assert settings.whatsapp.timeout_seconds == 10
    assert (settings.web.host, settings.web.port, settings.web.public_url) == (
        "127.0.0.1",
        8080,
        None,
    )
    assert (settings.dispatch.interval_seconds, settings.dispatch.batch_size) == (5, 100)
    assert settings.rate_card_path is None
    assert settings.source is None


def test_every_problem_is_reported_in_one_error(tmp_path: Path) -> None:
    """A config with many mistakes fails once, listing each mistake under its TOML path."""
    text = """
databse_url = "sqlite:///x.db"
rate_card_path = "missing-rates.toml"

[whatsapp]
base_url = "ftp://graph.facebook.com"
api_version = "24"
phone_number_id = 1111

[web]
port = 70000

[dispatch]
interval_seconds = 0
batch_size = true

[[stores]]
name = "shop"
site_id = ""
poll_intervall_seconds = 30
poll_interval_seconds = -5
overlap_seconds = -1
default_country = "XX"
timezone = "Mars/Olympus"
wix_base_url = "www.wixapis.com"

[[stores]]
name = "shop"
site_id = "s2"

[[stores.rules]]
event = "payment:PAYED"
template = ""
languages = []
params = ["customer_name", "favourite_colour"]
param_names = ["a"]
urgency = "asap"
"""
    (tmp_path / "notifier.toml").write_text(text, encoding="utf-8")
    problems = check_settings(tmp_path / "notifier.toml", {})
    expected_prefixes = [
        "databse_url: unknown key (did you mean 'database_url'?)",
        "rate_card_path: file ",
        "whatsapp.base_url: must be an http:// or https:// URL",
        "whatsapp.api_version: must look like 'v24.0'",
        "whatsapp.phone_number_id: must be a string, got an integer",
        "whatsapp.waba_id: is required",
        "whatsapp.access_token: missing secret: set the environment variable "
        "NOTIFIER_WHATSAPP_ACCESS_TOKEN",
        "whatsapp.app_secret: missing secret",
        "whatsapp.verify_token: missing secret",
        "web.port: must be between 1 and 65535, got 70000",
        "dispatch.interval_seconds: must be positive, got 0",
        "dispatch.batch_size: must be an integer, got a boolean",
        "stores[0].site_id: must not be empty",
        "stores[0].poll_intervall_seconds: unknown key (did you mean 'poll_interval_seconds'?)",
        "stores[0].poll_interval_seconds: must be positive, got -5",
        "stores[0].overlap_seconds: must be zero or more, got -1",
        "stores[0].default_country: unknown country code 'XX'",
        "stores[0].timezone: unknown time zone 'Mars/Olympus'",
        "stores[0].wix_base_url: must be an http:// or https:// URL",
        "stores[0].api_key: missing secret: set the environment variable "
        "NOTIFIER_WIX_API_KEY_SHOP or NOTIFIER_WIX_API_KEY",
        "stores[1].name: duplicate store name 'shop'",
        "stores[1].rules[0].event: event 'payment:PAYED': unknown payment value 'PAYED'",
        "stores[1].rules[0].template: must not be empty",
        "stores[1].rules[0].languages: must list at least one language",
        "stores[1].rules[0].params: unknown parameter 'favourite_colour'",
        "stores[1].rules[0].param_names: has 1 names for 2 params",
        "stores[1].rules[0].urgency: must be 'normal' or 'urgent', got 'asap'",
    ]
    for prefix in expected_prefixes:
        assert any(p.startswith(prefix) for p in problems), (prefix, problems)
    assert len(problems) == len(expected_prefixes) + 1  # stores[1] has no api key either


def test_load_settings_raises_one_config_error_listing_all(tmp_path: Path) -> None:
    """load_settings raises a single ConfigError whose message lists every problem."""
    path = tmp_path / "notifier.toml"
    path.write_text(MINIMAL.replace('"2222"', '""'), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert len(caught.value.problems) == 5
    assert "whatsapp.waba_id: must not be empty" in str(caught.value)
    assert "NOTIFIER_WHATSAPP_VERIFY_TOKEN" in str(caught.value)


def test_invalid_toml_is_one_problem_with_its_line(tmp_path: Path) -> None:
    """Broken TOML gives one problem naming the file and the line tomllib complains about."""
    path = tmp_path / "notifier.toml"
    path.write_text('[whatsapp]\nphone_number_id = "1"\nwaba_id = \n', encoding="utf-8")
    problems = check_settings(path, SECRETS_ENV)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: invalid TOML")
    assert "line 3" in problems[0]


def test_missing_config_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    """A missing file is one problem that mentions --config and NOTIFIER_CONFIG."""
    problems = check_settings(tmp_path / "nope.toml", SECRETS_ENV)
    assert len(problems) == 1
    assert "not found" in problems[0]
    assert "--config" in problems[0]
    assert "NOTIFIER_CONFIG" in problems[0]


def test_no_stores_is_a_problem() -> None:
    """A config without any [[stores]] table is rejected."""
    text = MINIMAL.split("[[stores]]", maxsplit=1)[0]
    assert problems_of(text) == ["stores: at least one [[stores]] table is required"]


def test_two_stores_on_one_wix_site_are_refused() -> None:
    """Two stores polling one site would notify each customer twice (dedupe is per store)."""
    text = MINIMAL + '\n[[stores]]\nname = "copy"\nsite_id = "site-guid"\n'
    assert problems_of(text) == ["stores[1].site_id: store 'main' already polls site site-guid"]


def test_store_names_that_share_a_key_variable_are_refused() -> None:
    """'india-main' and 'india_main' would both read NOTIFIER_WIX_API_KEY_INDIA_MAIN."""
    text = MINIMAL.replace('name = "main"', 'name = "india-main"')
    text += '\n[[stores]]\nname = "india_main"\nsite_id = "other-site"\n'
    assert problems_of(text) == [
        "stores[1].name: stores 'india-main' and 'india_main' both read "
        "NOTIFIER_WIX_API_KEY_INDIA_MAIN"
    ]


def test_wrong_section_type_is_reported() -> None:
    """A section written as a value instead of a table is a problem, not a crash."""
    problems = problems_of('web = "localhost"\n' + MINIMAL)
    assert problems == ["web: must be a table, got a string"]


def test_secrets_never_appear_in_repr() -> None:
    """repr/str of Secret and of every settings object hide the secret values."""
    environ = {**SECRETS_ENV, "NOTIFIER_WIX_API_KEY_MAIN": "per-store-wix-key"}
    settings = parse(MINIMAL, environ)
    text = repr(settings) + str(settings) + repr(settings.stores) + repr(settings.whatsapp)
    for secret in environ.values():
        assert secret not in text
    assert "Secret('****')" in text
    assert repr(Secret("hunter2")) == str(Secret("hunter2")) == "Secret('****')"
    assert Secret("hunter2").reveal() == "hunter2"


def test_literal_secret_in_toml_is_hidden_and_used_without_env() -> None:
    """A literal api_key in the file is used when no variable is set, and still hidden."""
    text = MINIMAL + 'api_key = "literal-demo-key"\n'
    settings = parse(text, {k: v for k, v in SECRETS_ENV.items() if "WIX" not in k})
    assert settings.stores[0].api_key.reveal() == "literal-demo-key"
    assert "literal-demo-key" not in repr(settings)


def test_env_variable_wins_over_literal_secret() -> None:
    """When both are present the environment variable beats the literal in the file."""
    text = MINIMAL.replace('waba_id = "2222"', 'waba_id = "2222"\naccess_token = "from-file"')
    settings = parse(text + 'api_key = "from-file"\n')
    assert settings.whatsapp.access_token.reveal() == "EAAG-access-token"
    assert settings.stores[0].api_key.reveal() == "wix-fallback-key"


def test_per_store_api_key_variable_beats_the_shared_one() -> None:
    """NOTIFIER_WIX_API_KEY_<STORE> is used before the shared NOTIFIER_WIX_API_KEY."""
    text = MINIMAL + '\n[[stores]]\nname = "delhi-2"\nsite_id = "other"\n'
    environ = {**SECRETS_ENV, "NOTIFIER_WIX_API_KEY_DELHI_2": "delhi-key"}
    main, delhi = parse(text, environ).stores
    assert main.api_key.reveal() == "wix-fallback-key"
    assert delhi.api_key.reveal() == "delhi-key"


def test_custom_env_name_is_the_only_variable_consulted() -> None:
    """An explicit *_env key names the variable; the default variable is then ignored."""
    text = MINIMAL.replace('waba_id = "2222"', 'waba_id = "2222"\napp_secret_env = "MY_SECRET"')
    assert parse(text, {**SECRETS_ENV, "MY_SECRET": "mine"}).whatsapp.app_secret.reveal() == "mine"
    problems = problems_of(text)
    assert problems == [
        "whatsapp.app_secret: missing secret: set the environment variable MY_SECRET"
    ]


def test_empty_env_variable_counts_as_missing() -> None:
    """A variable set to the empty string does not satisfy a secret."""
    problems = problems_of(MINIMAL, {**SECRETS_ENV, "NOTIFIER_WHATSAPP_VERIFY_TOKEN": ""})
    assert problems == [
        "whatsapp.verify_token: missing secret: set the environment variable "
        "NOTIFIER_WHATSAPP_VERIFY_TOKEN"
    ]


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("main", "NOTIFIER_WIX_API_KEY_MAIN"),
        ("india-main", "NOTIFIER_WIX_API_KEY_INDIA_MAIN"),
        ("My Shop.2", "NOTIFIER_WIX_API_KEY_MY_SHOP_2"),
    ],
)
def test_store_api_key_env_is_upper_with_underscores(name: str, variable: str) -> None:
    """Store names become variable suffixes: upper case, every non-alnum replaced by _."""
    assert store_api_key_env(name) == variable


@given(st.text(max_size=30))
def test_any_store_name_gives_a_valid_variable_and_never_crashes(name: str) -> None:
    """Free-text store names map to a shell-safe variable and parse or fail with ConfigError."""
    assert re.fullmatch(r"NOTIFIER_WIX_API_KEY_[A-Z0-9_]*", store_api_key_env(name))
    data: dict[str, Any] = tomllib.loads(MINIMAL)
    data["stores"][0]["name"] = name
    if name.strip() and ":" not in name:
        settings = parse_settings(data, environ=SECRETS_ENV, base_dir=Path("/srv"))
        assert settings.stores[0].name == name
        return
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, environ=SECRETS_ENV, base_dir=Path("/srv"))
    assert [p.split(":")[0] for p in caught.value.problems] == ["stores[0].name"]


def test_database_url_env_overrides_file() -> None:
    """NOTIFIER_DATABASE_URL replaces database_url from the file."""
    text = 'database_url = "sqlite:///file.db"\n' + MINIMAL
    url = "postgresql+psycopg://notifier@db/notifier"
    assert parse(text, {**SECRETS_ENV, "NOTIFIER_DATABASE_URL": url}).database_url == url
    assert parse(text).database_url == "sqlite:////srv/file.db"


@pytest.mark.parametrize(
    ("configured", "resolved"),
    [
        ("sqlite:///data/n.db", "sqlite:////etc/notifier/data/n.db"),
        ("sqlite+pysqlite:///n.db", "sqlite+pysqlite:////etc/notifier/n.db"),
        ("sqlite:////var/lib/n.db", "sqlite:////var/lib/n.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite://", "sqlite://"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_relative_sqlite_paths_resolve_against_config_folder(
    configured: str, resolved: str
) -> None:
    """Only relative SQLite file paths are rewritten, against the config file's folder."""
    text = f'database_url = "{configured}"\n' + MINIMAL
    assert parse(text, base_dir=Path("/etc/notifier")).database_url == resolved


def test_global_rules_replace_defaults_and_store_rules_replace_global() -> None:
    """Store [[stores.rules]] beat global [[rules]], which beat DEFAULT_RULES."""
    text = """
[[rules]]
event = "payment:PAID"
template = "global_paid"

[whatsapp]
phone_number_id = "1"
waba_id = "2"

[[stores]]
name = "a"
site_id = "s1"

[[stores]]
name = "b"
site_id = "s2"

[[stores.rules]]
event = "fulfilment:FULFILLED"
template = "b_shipped"
languages = ["en", "hi"]
params = ["first_name", "tracking_link"]
param_names = ["name", "link"]
button_param = "tracking_number"
urgency = "urgent"
"""
    store_a, store_b = parse(text).stores
    assert store_a.rules == (Rule(Field.PAYMENT, "PAID", "global_paid"),)
    assert store_b.rules == (
        Rule(
            Field.FULFILLMENT,
            "FULFILLED",
            "b_shipped",
            languages=("en", "hi"),
            params=("first_name", "tracking_link"),
            param_names=("name", "link"),
            button_param="tracking_number",
            urgency=Urgency.URGENT,
        ),
    )


def test_empty_store_rules_list_means_no_notifications() -> None:
    """`rules = []` on a store is an explicit choice: no rules, not the defaults."""
    assert parse(MINIMAL + "rules = []\n").stores[0].rules == ()


def test_empty_label_is_a_problem() -> None:
    """A blank label text is reported under its path."""
    problems = problems_of(MINIMAL + '[stores.labels.en]\n"payment.PAID" = " "\n')
    assert problems == ["stores[0].labels.en.payment.PAID: label must be a non-empty string"]


def test_rate_card_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    """Existing rate-card files are accepted and resolved relative to the config folder."""
    (tmp_path / "rates.toml").write_text("", encoding="utf-8")
    (tmp_path / "store-rates.toml").write_text("", encoding="utf-8")
    text = 'rate_card_path = "rates.toml"\n' + MINIMAL + 'rate_card_path = "store-rates.toml"\n'
    settings = parse(text, base_dir=tmp_path)
    assert settings.rate_card_path == tmp_path / "rates.toml"
    assert settings.stores[0].rate_card_path == tmp_path / "store-rates.toml"


def test_country_is_normalised_and_timezone_usable() -> None:
    """A lower-case country code is accepted as upper case; the zone property works."""
    store = parse(MINIMAL + 'default_country = "de"\ntimezone = "Europe/Berlin"\n').stores[0]
    assert store.default_country == "DE"
    assert store.zone.key == "Europe/Berlin"


def test_urls_lose_trailing_slash() -> None:
    """Base URLs are stored without a trailing slash so paths can be appended."""
    text = MINIMAL + 'wix_base_url = "http://127.0.0.1:9000/"\n'
    assert parse(text).stores[0].wix_base_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("cli", "environ", "expected"),
    [
        ("given.toml", {"NOTIFIER_CONFIG": "/etc/env.toml"}, Path("/work/given.toml")),
        (None, {"NOTIFIER_CONFIG": "/etc/env.toml"}, Path("/etc/env.toml")),
        (None, {}, Path("/work/notifier.toml")),
    ],
)
def test_resolve_config_path_precedence(
    cli: str | None, environ: dict[str, str], expected: Path
) -> None:
    """--config beats NOTIFIER_CONFIG, which beats ./notifier.toml."""
    assert resolve_config_path(cli, environ, Path("/work")) == expected


def test_example_config_is_valid_and_spells_out_the_defaults() -> None:
    """notifier.example.toml loads without problems and spells out the built-in defaults."""
    assert check_settings(EXAMPLE, SECRETS_ENV) == []
    settings = load_settings(EXAMPLE, SECRETS_ENV)
    assert settings.source == EXAMPLE
    assert settings.stores[0].default_country == "IN"
    assert settings.stores[0].rules == DEFAULT_RULES
    assert settings.database_url == f"sqlite:///{REPO_ROOT / 'notifier.db'}"
    assert (settings.web, settings.dispatch, settings.lookup) == (
        WebSettings(),
        DispatchSettings(),
        LookupSettings(),
    )
    store = settings.stores[0]
    assert (store.quiet_hours_enabled, store.quiet_start, store.quiet_end) == (
        True,
        time(21, 0),
        time(8, 0),
    )


def test_example_config_mentions_every_key() -> None:
    """Every settings key and secret variable appears in the example file."""
    text = EXAMPLE.read_text(encoding="utf-8")
    classes: list[type] = [Settings, StoreSettings, WhatsAppSettings, WebSettings]
    classes += [DispatchSettings, LookupSettings]
    keys = {f.name for cls in classes for f in dataclasses.fields(cls)} - {"source", "stores"}
    keys |= {"api_key_env", "access_token_env", "app_secret_env", "verify_token_env"}
    keys |= {"ops_token_env", "NOTIFIER_OPS_TOKEN"}
    keys |= {"event", "template", "languages", "params", "param_names", "button_param"}
    keys |= set(SECRETS_ENV) | {"NOTIFIER_DATABASE_URL", "NOTIFIER_CONFIG"}
    missing = [key for key in sorted(keys) if key not in text]
    assert missing == []


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_intervals_are_rejected(value: str) -> None:
    """TOML's nan and inf are not usable intervals."""
    problems = problems_of(MINIMAL + f"poll_interval_seconds = {value}\n")
    assert problems == [f"stores[0].poll_interval_seconds: must be a finite number, got {value}"]


def test_dispatch_lookup_web_and_quiet_hour_defaults() -> None:
    """Without the new keys every documented default applies and quiet hours parse to times."""
    settings = parse(MINIMAL)
    dispatch, lookup, store = settings.dispatch, settings.lookup, settings.stores[0]
    assert (dispatch.recipient_spacing_seconds, dispatch.max_attempts) == (6, 8)
    assert (dispatch.stop_pause_seconds, dispatch.ambiguous_grace_seconds) == (300, 900)
    assert (dispatch.unreachable_skip_days, dispatch.concurrent_sends) == (7, 4)
    assert (lookup.max_lookups_per_hour, lookup.late_reply) == (10, "template")
    assert (lookup.late_reply_template, lookup.late_reply_language) == ("order_status_update", "en")
    assert settings.web.ops_token is None
    assert (store.quiet_hours_enabled, store.quiet_hours_start, store.quiet_hours_end) == (
        True,
        "21:00",
        "08:00",
    )
    assert (store.quiet_start, store.quiet_end) == (time(21, 0), time(8, 0))


def test_dispatch_lookup_and_quiet_hours_are_read_from_the_file() -> None:
    """Every new key set in the file replaces its default, zeros included where allowed."""
    text = (
        "[dispatch]\nrecipient_spacing_seconds = 0\nmax_attempts = 3\nstop_pause_seconds = 60\n"
        "ambiguous_grace_seconds = 0\nunreachable_skip_days = 0\nconcurrent_sends = 1\n"
        '[lookup]\nmax_lookups_per_hour = 2\nlate_reply = "drop"\n'
        'late_reply_template = "status_v2"\nlate_reply_language = "en_US"\n'
        + MINIMAL
        + 'quiet_hours_start = "22:30"\nquiet_hours_end = "06:15"\n'
    )
    settings = parse(text)
    assert settings.dispatch == DispatchSettings(
        recipient_spacing_seconds=0,
        max_attempts=3,
        stop_pause_seconds=60,
        ambiguous_grace_seconds=0,
        unreachable_skip_days=0,
        concurrent_sends=1,
    )
    assert settings.lookup == LookupSettings(
        max_lookups_per_hour=2,
        late_reply="drop",
        late_reply_template="status_v2",
        late_reply_language="en_US",
    )
    assert (settings.stores[0].quiet_start, settings.stores[0].quiet_end) == (
        time(22, 30),
        time(6, 15),
    )


def test_equal_quiet_hours_are_allowed_only_when_disabled() -> None:
    """start == end is an empty window: a problem when enabled, accepted when switched off."""
    same = MINIMAL + 'quiet_hours_start = "08:00"\nquiet_hours_end = "08:00"\n'
    assert problems_of(same) == [
        "stores[0].quiet_hours_end: must differ from quiet_hours_start "
        "(set quiet_hours_enabled = false to turn quiet hours off)"
    ]
    store = parse(same + "quiet_hours_enabled = false\n").stores[0]
    assert store.quiet_hours_enabled is False


@pytest.mark.parametrize(
    ("section", "line", "problem"),
    [
        ("dispatch", "recipient_spacing_seconds = -1", "must be zero or more, got -1"),
        ("dispatch", "max_attempts = 0", "must be between 1 and 100, got 0"),
        ("dispatch", "stop_pause_seconds = 0", "must be positive, got 0"),
        ("dispatch", "ambiguous_grace_seconds = -5", "must be zero or more, got -5"),
        ("dispatch", 'unreachable_skip_days = "7"', "must be a number, got a string"),
        ("lookup", "max_lookups_per_hour = 0", "must be between 1 and 10000, got 0"),
        ("lookup", 'late_reply = "ignore"', "must be 'drop' or 'template', got 'ignore'"),
        ("lookup", 'late_reply_template = " "', "must not be empty"),
        ("lookup", 'late_reply_language = "english"', "'english' is not a language code"),
        ("stores[0]", 'quiet_hours_start = "9pm"', "must be a 24-hour time like '21:00'"),
        ("stores[0]", 'quiet_hours_end = "24:00"', "must be a 24-hour time like '21:00'"),
        ("stores[0]", 'quiet_hours_enabled = "no"', "must be true or false, got a string"),
    ],
)
def test_bad_new_settings_are_reported_under_their_path(
    section: str, line: str, problem: str
) -> None:
    """Each invalid new key is exactly one problem, named section.key."""
    if section.startswith("stores"):
        text = MINIMAL + line + "\n"
    else:
        text = f"[{section}]\n{line}\n" + MINIMAL
    key = line.split(" = ", maxsplit=1)[0]
    [reported] = problems_of(text)
    assert reported.startswith(f"{section}.{key}: {problem}"), reported


def test_misspelt_lookup_key_gets_a_suggestion() -> None:
    """Unknown keys in [lookup] are reported with the closest known key."""
    problems = problems_of('[lookup]\nlate_reply_templat = "x"\n' + MINIMAL)
    assert problems == [
        "lookup.late_reply_templat: unknown key (did you mean 'late_reply_template'?)"
    ]


def test_ops_token_comes_from_its_variable_and_stays_hidden() -> None:
    """NOTIFIER_OPS_TOKEN becomes web.ops_token, revealed only on request, never in repr."""
    token = "ops-token-0123456789"
    settings = parse(MINIMAL, {**SECRETS_ENV, "NOTIFIER_OPS_TOKEN": token})
    assert settings.web.ops_token is not None
    assert settings.web.ops_token.reveal() == token
    assert token not in repr(settings) + str(settings.web)


def test_ops_token_absent_or_empty_disables_ops_pages() -> None:
    """No variable, or an empty one, means no token (ops pages off), not a problem."""
    assert parse(MINIMAL).web.ops_token is None
    assert parse(MINIMAL, {**SECRETS_ENV, "NOTIFIER_OPS_TOKEN": ""}).web.ops_token is None


def test_ops_token_custom_variable_and_minimum_length() -> None:
    """ops_token_env names the variable; a token under 16 characters is a problem."""
    text = '[web]\nops_token_env = "MY_OPS"\n' + MINIMAL
    long_token = "x" * 16
    web = parse(text, {**SECRETS_ENV, "MY_OPS": long_token, "NOTIFIER_OPS_TOKEN": "y" * 20}).web
    assert web.ops_token is not None
    assert web.ops_token.reveal() == long_token
    assert problems_of(text, {**SECRETS_ENV, "MY_OPS": "short"}) == [
        "web.ops_token: must be at least 16 characters (MY_OPS)"
    ]
