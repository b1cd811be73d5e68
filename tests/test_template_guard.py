"""Template guard: a template that drifted (MARKETING, PAUSED, DISABLED) holds its sends before the
next dispatch, whether Meta's webhook or the daemon's periodic re-check told us, and alerts once.

Orders come from the Wix sandbox through the real sync; templates are changed with the WhatsApp
sandbox's own control (``set_template``), which also posts Meta's signed template webhooks to a
real ``daemon_app`` on loopback.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from notifier.bootstrap import Runtime
from notifier.cli import main
from notifier.sandbox.harness import Sandboxes
from notifier.scheduler import start_scheduler
from notifier.serving import RunningServer
from notifier.store import inbox, registry
from notifier.webhooks import process_pending_receipts
from tests.conftest import Clock
from tests.test_costs_cli import cli_url
from tests.test_dispatch import baseline, created, runtime, wait_for, webhooks
from tests.test_sync import drain, make_runtime, message_rows, order_guid, wix_order

__all__ = ["runtime", "webhooks"]  # fixtures shared with test_dispatch

PAID_TEMPLATE = ("order_payment_received", "en")
DATA = Path(__file__).parent / "data" / "whatsapp"


def queue_paid(boxes_: Sandboxes, runtime_: Runtime, clock: Clock, *numbers: int) -> None:
    """Baseline ``numbers`` as NOT_PAID, then pay them and sync: one queued row per order."""
    orders = [wix_order(n, created=created(clock)) for n in numbers]
    baseline(boxes_, runtime_, clock, *orders)
    for number in numbers:
        boxes_.wix.set_payment(order_guid(number), "PAID")
    runtime_.sync_all()


def stored_template(engine: Engine, name: str, language: str) -> tuple[str, str]:
    with engine.connect() as conn:
        info = registry.load_templates(conn)[(name, language)]
    return info.status, info.category


def alerts_of(engine: Engine, kind: str) -> list[registry.Alert]:
    with engine.connect() as conn:
        return [a for a in registry.open_alerts(conn) if a.kind == kind]


def test_recategorised_by_webhook_holds_the_next_dispatch_and_alerts_once(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock, webhooks: RunningServer
) -> None:
    """template_category_update to MARKETING: nothing sent, rows deferred with the reason, one alert."""
    queue_paid(boxes, runtime, clock, 10201, 10202)
    calls_before = runtime.whatsapp.request_count

    status = boxes.whatsapp.set_template(*PAID_TEMPLATE, category="MARKETING", notify=True)
    assert status == 200
    wait_for(lambda: stored_template(engine, *PAID_TEMPLATE)[1] == "MARKETING")
    result = drain(runtime)

    assert runtime.whatsapp.request_count == calls_before  # no send, no template fetch either
    assert boxes.whatsapp.sent_messages() == []
    assert result.sent == result.failed == 0
    rows = message_rows(engine)
    assert [r["status"] for r in rows] == ["deferred", "deferred"]
    assert all("categorised MARKETING, not UTILITY" in r["error_title"] for r in rows)
    assert all(r["attempts"] == 0 for r in rows)
    [alert] = alerts_of(engine, "template")
    assert alert.key == "template:order_payment_received:en"


def test_paused_by_webhook_holds_and_reinstated_sends_once(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock, webhooks: RunningServer
) -> None:
    """message_template_status_update PAUSED holds the row; REINSTATED lets it go, exactly once."""
    queue_paid(boxes, runtime, clock, 10203)
    boxes.whatsapp.set_template(*PAID_TEMPLATE, status="PAUSED", notify=True)
    wait_for(lambda: stored_template(engine, *PAID_TEMPLATE)[0] == "PAUSED")

    drain(runtime)
    [held] = message_rows(engine)
    assert (held["status"], "PAUSED, not APPROVED" in held["error_title"]) == ("deferred", True)

    boxes.whatsapp.set_template(*PAID_TEMPLATE, status="REINSTATED", notify=True)
    wait_for(lambda: stored_template(engine, *PAID_TEMPLATE)[0] == "APPROVED")
    clock.advance(seconds=runtime.settings.whatsapp.template_recheck_seconds + 1)
    assert drain(runtime).sent == 1

    [sent] = boxes.whatsapp.sent_messages()
    assert sent.template == "order_payment_received"
    assert len(alerts_of(engine, "template")) == 1


def test_periodic_recheck_catches_a_silent_recategorisation_before_dispatch(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """No webhook: the re-check job (refresh_templates) sees MARKETING; it alerts, dispatch sends nothing."""
    queue_paid(boxes, runtime, clock, 10204)
    boxes.whatsapp.set_template(*PAID_TEMPLATE, category="MARKETING")

    runtime.refresh_templates()
    assert [a.key for a in alerts_of(engine, "template")] == ["template:order_payment_received:en"]
    drain(runtime)
    clock.advance(seconds=runtime.settings.whatsapp.template_recheck_seconds + 1)
    runtime.refresh_templates()
    drain(runtime)

    assert boxes.whatsapp.sent_messages() == []
    [row] = message_rows(engine)
    assert row["status"] == "deferred"
    assert "categorised MARKETING" in row["error_title"]
    assert len(alerts_of(engine, "template")) == 1


def test_a_disabled_template_holds_only_its_own_sends(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """DISABLED order_payment_received holds its row; a cancellation (another template) still goes."""
    queue_paid(boxes, runtime, clock, 10205, 10206)
    boxes.wix.set_status(order_guid(10206), "CANCELED")
    clock.advance(seconds=30)
    runtime.sync_all()
    boxes.whatsapp.set_template(*PAID_TEMPLATE, status="DISABLED")
    runtime.refresh_templates()

    drain(runtime)

    assert [m.template for m in boxes.whatsapp.sent_messages()] == ["order_cancelled"]
    statuses = [(r["order_number"], r["template"], r["status"]) for r in message_rows(engine)]
    assert ("10205", "order_payment_received", "deferred") in statuses


def test_recheck_interval_comes_from_config(boxes: Sandboxes, engine: Engine, clock: Clock) -> None:
    """[whatsapp] template_recheck_seconds sets the scheduler's template job interval."""
    built = make_runtime(boxes, engine, clock)
    built.settings = dataclasses.replace(
        built.settings,
        whatsapp=dataclasses.replace(built.settings.whatsapp, template_recheck_seconds=42),
    )
    far_future = datetime(2100, 1, 1, tzinfo=UTC)  # no poll or dispatch fires during the test
    scheduler = start_scheduler(built, now=far_future)
    try:
        job = scheduler.get_job("templates")
        assert job.trigger.interval == timedelta(seconds=42)
    finally:
        scheduler.shutdown(wait=True)
        built.close()


def test_advance_notice_of_recategorisation_alerts_but_does_not_hold(
    runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """Meta's ~24 h notice (correct_category MARKETING, new_category UTILITY) alerts; sends go on."""
    body = json.loads((DATA / "template-category-update-webhook-impending.json").read_text())[
        "body"
    ]
    value = body["entry"][0]["changes"][0]["value"]
    value["message_template_name"], value["message_template_language"] = PAID_TEMPLATE
    with engine.begin() as conn:
        inbox.store_receipts(conn, [json.dumps(body).encode()], now=clock())

    process_pending_receipts(engine, runtime.rate_cards, clock)

    assert stored_template(engine, *PAID_TEMPLATE) == ("APPROVED", "UTILITY")
    assert alerts_of(engine, "template") == []
    [notice] = alerts_of(engine, "template_notice")
    assert "MARKETING" in notice.message


def test_templates_check_names_a_drifted_template_and_exits_1(
    boxes: Sandboxes, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`notifier templates check`: a configured template now MARKETING is listed as held; exit 1."""
    config = tmp_path / "notifier.toml"
    config.write_text(
        f'database_url = "{cli_url(engine)}"\n'
        f'[whatsapp]\nbase_url = "{boxes.whatsapp_server.url}"\n'
        f'phone_number_id = "{boxes.whatsapp.phone_number_id}"\n'
        f'waba_id = "{boxes.whatsapp.waba_id}"\n'
        f'[[stores]]\nname = "shop"\nsite_id = "{boxes.wix.site_id}"\n'
        f'wix_base_url = "{boxes.wix_server.url}"\n',
        encoding="utf-8",
    )
    env = {
        "NOTIFIER_WIX_API_KEY": boxes.wix.api_key,
        "NOTIFIER_WHATSAPP_ACCESS_TOKEN": boxes.whatsapp.access_token,
        "NOTIFIER_WHATSAPP_APP_SECRET": boxes.whatsapp.app_secret,
        "NOTIFIER_WHATSAPP_VERIFY_TOKEN": "verify",
    }
    assert main(["--config", str(config), "templates", "check"], environ=env) == 0
    assert "templates OK" in capsys.readouterr().out

    boxes.whatsapp.set_template(*PAID_TEMPLATE, category="MARKETING")
    assert main(["--config", str(config), "templates", "check"], environ=env) == 1

    err = capsys.readouterr().err
    assert "- held: template order_payment_received/en is categorised MARKETING" in err
