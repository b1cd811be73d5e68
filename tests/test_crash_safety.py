"""Fault injection: `notifier run` is killed with SIGKILL at random moments, again and again, while
orders keep changing; afterwards every transition was notified exactly once (issue 4, crash safety).

The daemon is a real subprocess with a real config file; the sandboxes run in this process and
keep retrying status webhooks while the daemon is down, as Meta does.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from notifier.bootstrap import utc_now
from notifier.sandbox.harness import Sandboxes, free_port, start_sandboxes
from notifier.store import orders
from notifier.store.engine import make_engine
from notifier.store.migrate import upgrade
from notifier.store.tables import messages, replicas, store_state

# CI runs the 200 kills; a laptop run keeps `make test` short unless asked for more.
KILLS = int(os.environ.get("NOTIFIER_CRASH_KILLS", "200" if os.environ.get("CI") else "30"))
ORDERS = 60
STORE = "crash"
STEPS = (
    ("paymentStatus", "PAID", "payment"),
    ("fulfillmentStatus", "PARTIALLY_FULFILLED", "fulfillment"),
    ("fulfillmentStatus", "FULFILLED", "fulfillment"),
)
SECRETS = {
    "NOTIFIER_WIX_API_KEY": "sandbox-wix-key",
    "NOTIFIER_WHATSAPP_ACCESS_TOKEN": "sandbox-wa-token",
    "NOTIFIER_WHATSAPP_APP_SECRET": "sandbox-app-secret",
    "NOTIFIER_WHATSAPP_VERIFY_TOKEN": "crash-verify",
}


def tea_order(order_id: str, number: str, phone: str) -> dict[str, Any]:
    """A small unpaid, unshipped order (one Masala Tea, ₹499) for the daemon-process tests."""
    return {
        "id": order_id,
        "number": number,
        "status": "APPROVED",
        "paymentStatus": "NOT_PAID",
        "fulfillmentStatus": "NOT_FULFILLED",
        "currency": "INR",
        "buyerLanguage": "en",
        "priceSummary": {"total": {"amount": "499.00", "currency": "INR"}},
        "billingInfo": {
            "address": {"country": "IN"},
            "contactDetails": {"firstName": "Asha", "phone": phone},
        },
        "lineItems": [{"productName": {"original": "Masala Tea"}, "quantity": 1}],
    }


def _order(index: int) -> dict[str, Any]:
    return tea_order(str(uuid.UUID(int=index + 1)), str(20000 + index), f"+91 98765 {index:05d}")


def _config(path: Path, boxes: Sandboxes, database_url: str, port: int) -> Path:
    path.write_text(
        f"""
database_url = "{database_url}"

[web]
host = "127.0.0.1"
port = {port}

[dispatch]
interval_seconds = 0.2
recipient_spacing_seconds = 0
# Longer than the sandbox's webhook retries can take to reach a daemon that keeps dying.
ambiguous_grace_seconds = 45

[whatsapp]
base_url = "{boxes.whatsapp_server.url}"
api_version = "v24.0"
phone_number_id = "{boxes.whatsapp.phone_number_id}"
waba_id = "{boxes.whatsapp.waba_id}"
timeout_seconds = 2

[[stores]]
name = "{STORE}"
site_id = "{boxes.wix.site_id}"
wix_base_url = "{boxes.wix_server.url}"
poll_interval_seconds = 0.5
overlap_seconds = 120
default_country = "IN"
quiet_hours_enabled = false
request_timeout_seconds = 2
""",
        encoding="utf-8",
    )
    return path


class _Daemon:
    """Starts `notifier run` as a subprocess and kills it without warning."""

    def __init__(self, config: Path, log: Path) -> None:
        self._args = [sys.executable, "-m", "notifier.cli", "--config", str(config), "run"]
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                self._args, env={**os.environ, **SECRETS}, stdout=log, stderr=log
            )

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def stop(self, signum: int) -> int | None:
        """Send ``signum`` and wait for the exit; returns the exit code (None: not running)."""
        if self._process is None:
            return None
        self._process.send_signal(signum)
        code = self._process.wait(30)
        self._process = None
        return code


class _Customers:
    """Moves orders through paid → partly shipped → shipped from a background thread.

    An order moves on only once the daemon's snapshot shows its previous state: a state that
    lives for less than one poll cannot be seen by any poller, so it is not a transition to count.
    """

    def __init__(self, boxes: Sandboxes, engine: Engine, rng: random.Random) -> None:
        self._boxes, self._engine, self._rng = boxes, engine, rng
        self._progress = dict.fromkeys(range(ORDERS), 0)
        self.expected: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout: float) -> bool:
        """Wait until every order went through every step (the daemon must be running)."""
        return _wait(lambda: not self._thread.is_alive(), timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(0.05, 0.3)):
            if not self._advance():
                return

    def _observed(self, index: int) -> bool:
        step = self._progress[index]
        if step == 0:
            return True
        field, value, _ = STEPS[step - 1]
        with self._engine.connect() as conn:
            snapshot = orders.load_snapshots(conn, STORE, [str(uuid.UUID(int=index + 1))])
        seen = snapshot.get(str(uuid.UUID(int=index + 1)))
        if seen is None:
            return False
        current = seen.payment_status if field == "paymentStatus" else seen.fulfillment_status
        return current == value

    def _advance(self) -> bool:
        pending = [i for i, step in self._progress.items() if step < len(STEPS)]
        if not pending:
            return False
        ready = [i for i in pending if self._observed(i)]
        if not ready:
            return True
        index = self._rng.choice(ready)
        field, value, kind = STEPS[self._progress[index]]
        order_id = str(uuid.UUID(int=index + 1))
        if field == "paymentStatus":
            self._boxes.wix.set_payment(order_id, value)
        else:
            self._boxes.wix.set_fulfillment(order_id, value)
        self.expected.add(f"{STORE}:{order_id}:{kind}:{value}")
        self._progress[index] += 1
        return True


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _baseline_done(engine: Engine) -> bool:
    with engine.connect() as conn:
        state = orders.get_store_state(conn, STORE)
    return state is not None and state.baseline_at is not None


def _settled(engine: Engine, expected: set[str]) -> bool:
    with engine.connect() as conn:
        rows = conn.execute(select(messages.c.dedupe_key, messages.c.status)).all()
    done = {key for key, status in rows if status in ("accepted", "sent", "delivered", "read")}
    return expected <= done and not [
        s for _, s in rows if s in ("queued", "claimed", "sending", "ambiguous")
    ]


@pytest.fixture
def crash_world(tmp_path: Path) -> Iterator[tuple[Sandboxes, Engine, _Daemon]]:
    port = free_port()
    # Meta retries webhooks for days; ~40 capped retries outlive any single kill here.
    boxes = start_sandboxes(
        utc_now, webhook_url=f"http://127.0.0.1:{port}/webhooks/whatsapp", webhook_attempts=40
    )
    database_url = f"sqlite:///{tmp_path / 'crash.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    boxes.wix.add_orders(_order(i) for i in range(ORDERS))
    daemon = _Daemon(
        _config(tmp_path / "notifier.toml", boxes, database_url, port), tmp_path / "daemon.log"
    )
    yield boxes, engine, daemon
    daemon.kill()
    engine.dispose()
    boxes.stop()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_random_kills_lose_and_duplicate_nothing(
    crash_world: tuple[Sandboxes, Engine, _Daemon],
) -> None:
    """After KILLS random SIGKILLs mid-poll, mid-dispatch and mid-webhook, every transition has
    exactly one accepted send at the WhatsApp sandbox: 0 lost, 0 duplicated."""
    boxes, engine, daemon = crash_world
    rng = random.Random(20261203)
    daemon.start()
    assert _wait(lambda: _baseline_done(engine), 30), "the first daemon never finished its baseline"
    customers = _Customers(boxes, engine, rng)
    customers.start()
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.05, 2.5))
        daemon.kill()
        daemon.start()
    finished = customers.finish(180)
    settled = _wait(lambda: _settled(engine, customers.expected), 240)
    daemon.kill()

    with engine.connect() as conn:
        key_of = dict(conn.execute(select(messages.c.id, messages.c.dedupe_key)).all())
    sends = Counter(
        key_of.get(int(m.callback_data or 0), "?") for m in boxes.whatsapp.sent_messages()
    )
    duplicated = {key: n for key, n in sends.items() if n > 1}
    lost = customers.expected - set(sends)
    print(
        f"\ncrash safety: {KILLS} kills, {len(customers.expected)} transitions, "
        f"{sum(sends.values())} sends, {len(lost)} lost, {len(duplicated)} duplicated"
    )
    assert finished, "the customers' script did not finish"
    assert settled, "the outbox never drained after the last restart"
    assert lost == set()
    assert duplicated == {}
    assert set(sends) == customers.expected


def _lease_owner(engine: Engine) -> str | None:
    with engine.connect() as conn:
        query = select(store_state.c.lease_owner).where(store_state.c.store == STORE)
        return conn.execute(query).scalar()


def test_sigterm_hands_the_store_over_at_once(
    crash_world: tuple[Sandboxes, Engine, _Daemon],
) -> None:
    """`notifier run` stopped by SIGTERM (`docker stop`) exits 0 after releasing its store lease
    and its replicas row, so another replica polls the store at once (uvicorn re-raised the
    signal after its shutdown and the process died before releasing them)."""
    _, engine, daemon = crash_world
    daemon.start()
    held = _wait(lambda: _baseline_done(engine) and _lease_owner(engine) is not None, 30)
    assert held, "the daemon never took its store's lease"
    assert daemon.stop(signal.SIGTERM) == 0
    assert _lease_owner(engine) is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(replicas)).scalar_one() == 0
