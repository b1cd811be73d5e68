"""The `notifier` command: config check, costs, and the demo a newcomer runs first."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from notifier.cli import EXIT_CONFIG, main
from notifier.sandbox.harness import free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "notifier.example.toml"
EXAMPLE_ENV = {
    "NOTIFIER_WIX_API_KEY": "wix-key",
    "NOTIFIER_WHATSAPP_ACCESS_TOKEN": "token",
    "NOTIFIER_WHATSAPP_APP_SECRET": "secret",
    "NOTIFIER_WHATSAPP_VERIFY_TOKEN": "verify",
}

SCRIPTED_TEMPLATES = {
    "order_payment_received": 1,
    "order_partly_shipped": 1,
    "order_shipped": 2,
    "order_refunded": 1,
    "order_cancelled": 1,
    "order_payment_failed": 1,
}


def test_config_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped example, with its secrets in the environment, passes `config check`."""
    assert main(["--config", str(EXAMPLE), "config", "check"], environ=EXAMPLE_ENV) == 0
    assert "OK" in capsys.readouterr().out


def test_config_check_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken config exits non-zero and names each problem, not just the first."""
    config = tmp_path / "notifier.toml"
    config.write_text(
        '[[stores]]\nname = "a"\nsite_id = ""\ntimezone = "Mars/Base"\npoll_interval_seconds = -1\n'
        '[whatsapp]\nphone_number_id = "1"\nwaba_id = "2"\nbase_url = "ftp://x"\n',
        encoding="utf-8",
    )
    assert main(["--config", str(config), "config", "check"], environ={}) == EXIT_CONFIG
    err = capsys.readouterr().err
    for expected in (
        "site_id",
        "timezone",
        "poll_interval_seconds",
        "base_url",
        "NOTIFIER_WHATSAPP_ACCESS_TOKEN",
    ):
        assert expected in err


def test_costs_refuses_a_database_that_was_never_migrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`notifier costs` on an empty database says which command fixes it."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["costs", "--database-url", url], environ={}) == 3
    assert "notifier db upgrade" in capsys.readouterr().err


def test_an_unsupported_database_url_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A MySQL URL (its driver is not even installed) is refused naming what is supported."""
    assert main(["costs", "--database-url", "mysql://ops:pw@db/shop"], environ={}) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unsupported database 'mysql'" in err
    assert "pw" not in err


@pytest.mark.slow
def test_demo_notifies_every_scripted_change_and_costs_read_its_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`notifier demo --duration` sends one template per scripted change, none for the baseline,
    answers both lookups, and leaves a database whose costs match the rate card (₹0.115 each)."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main(["demo", "--duration", "50", "--database-url", url], environ={}) == 0
    out = capsys.readouterr().out
    assert "Baseline: 41 existing orders recorded, 0 messages sent" in out
    for template, count in SCRIPTED_TEMPLATES.items():
        assert out.count(f"template {template} [en]") == count, template
    assert "Hi Priya, here is your order update:" in out
    assert "We couldn't find an order with that reference" in out

    assert (
        main(
            ["costs", "--database-url", url, "--group-by", "template", "--format", "json"],
            environ={},
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    groups = {g["key"]: g for g in report["groups"] if g["currency"] == "INR"}
    for template, count in SCRIPTED_TEMPLATES.items():
        assert Decimal(groups[template]["confirmed"]) == Decimal("0.115") * count, template
    [inr] = [t for t in report["totals"] if t["currency"] == "INR"]
    assert Decimal(inr["confirmed"]) == Decimal("0.115") * sum(SCRIPTED_TEMPLATES.values())


def test_poll_once_with_whatsapp_unreachable_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When WhatsApp cannot be reached at start-up the command says so and exits 1, no traceback."""
    dead = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "notifier.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "n.db"}"\n'
        f'[whatsapp]\nbase_url = "{dead}"\nphone_number_id = "1"\nwaba_id = "2"\ntimeout_seconds = 1\n'
        f'[[stores]]\nname = "shop"\nsite_id = "site"\nwix_base_url = "{dead}"\n',
        encoding="utf-8",
    )
    assert main(["--config", str(config), "db", "upgrade"], environ=EXAMPLE_ENV) == 0
    assert main(["--config", str(config), "poll", "--once"], environ=EXAMPLE_ENV) == 1
    err = capsys.readouterr().err
    assert "WhatsApp" in err
    assert "Traceback" not in err
