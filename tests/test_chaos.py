"""Chaos run (issue 4): 10 % 5xx, 5 % timeouts and 429 bursts on both Wix and WhatsApp, over
10,000 order transitions; every transition reaches the WhatsApp sandbox exactly once.

The real sync, dispatch and status-webhook path run in this process against the sandboxes over
loopback, with the test's clock (so backoffs and Retry-After cost no real time; only the stalls
that make the clients time out do). A WhatsApp "timeout" is either a lost request (nothing sent)
or a lost answer (sent, and its status webhooks still come, as Meta's do): the outbox must settle
the second through ``biz_opaque_callback_data`` and resend only the first.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine, func, select

from notifier.bootstrap import Runtime, StoreRuntime, build
from notifier.config import DispatchSettings
from notifier.daemon import daemon_app
from notifier.dispatch_outcomes import DispatchResult
from notifier.sandbox.faults import FaultPlan
from notifier.sandbox.harness import Sandboxes, sandbox_settings, start_sandboxes
from notifier.serving import RunningServer, serve_in_thread
from notifier.store import orders
from notifier.store.tables import messages
from notifier.wix import WixClient
from tests.conftest import Clock
from tests.test_sync import order_guid, wix_order

# CI runs the 10,000 transitions; a laptop run stays short unless asked for more.
TRANSITIONS = int(
    os.environ.get("NOTIFIER_CHAOS_TRANSITIONS", "10000" if os.environ.get("CI") else "1500")
)
STEPS = (
    ("payment", "PAID"),
    ("fulfillment", "PARTIALLY_FULFILLED"),
    ("fulfillment", "FULFILLED"),
)
ORDERS = -(-TRANSITIONS // len(STEPS))
MOVES_PER_ROUND = 150  # two search pages per poll
FIRST_NUMBER = 30001
# The clients' timeouts; a sandbox stall lasts longer. A search over thousands of sandbox orders
# takes a while on a loaded machine, so Wix gets more room than WhatsApp.
WIX_TIMEOUT = 0.3
WHATSAPP_TIMEOUT = 0.15
STALL = 0.45
GRACE = 60.0
PENDING = ("queued", "claimed", "sending", "ambiguous")
DONE = ("accepted", "sent", "delivered", "read")
STORE = "sandbox-store"


def chaos_plan(seed: int) -> FaultPlan:
    """The issue's mix: 10 % 5xx, 5 % timeouts, and bursts of five 429s starting on 1 % of calls."""
    return FaultPlan(
        server_error_rate=0.10,
        timeout_rate=0.05,
        burst_rate=0.01,
        burst_length=5,
        retry_after=2.0,
        stall_seconds=STALL,
        lost_answer_share=1.0,
        seed=seed,
    )


@dataclass
class Tally:
    """What the run did, for the printed summary."""

    polls: int = 0
    failed_polls: int = 0
    rate_limit_waits: int = 0
    wix_backoffs: list[float] = field(default_factory=list)
    dispatch: DispatchResult = field(default_factory=DispatchResult)

    def add(self, step: DispatchResult) -> None:
        for name, value in vars(step).items():
            setattr(self.dispatch, name, getattr(self.dispatch, name) + value)


@dataclass
class World:
    boxes: Sandboxes
    runtime: Runtime
    engine: Engine
    clock: Clock
    web: RunningServer
    tally: Tally


@pytest.fixture
def world(engine: Engine, clock: Clock) -> Iterator[World]:
    boxes = start_sandboxes(clock)
    settings = sandbox_settings(
        boxes, str(engine.url), request_timeout_seconds=WIX_TIMEOUT, poll_interval_seconds=2
    )
    settings = replace(
        settings,
        whatsapp=replace(settings.whatsapp, timeout_seconds=WHATSAPP_TIMEOUT),
        dispatch=DispatchSettings(
            interval_seconds=0.5,
            recipient_spacing_seconds=0,  # this test is about faults, not spacing
            messages_per_second=0,
            ambiguous_grace_seconds=GRACE,
        ),
    )
    runtime = build(settings, clock=clock, engine=engine, rng=random.Random(17))
    runtime.refresh_templates()
    tally = Tally()
    store = runtime.stores[0]
    store.wix.close()
    runtime.stores[0] = StoreRuntime(
        store.settings,
        WixClient(
            base_url=store.settings.wix_base_url,
            api_key=store.settings.api_key.reveal(),
            site_id=store.settings.site_id,
            timeout=WIX_TIMEOUT,
            rng=random.Random(19),
            sleep=tally.wix_backoffs.append,  # the backoff is recorded, not waited
        ),
    )
    web = serve_in_thread(daemon_app(runtime, "web"))
    boxes.whatsapp.webhook_url = f"{web.url}/webhooks/whatsapp"
    yield World(boxes, runtime, engine, clock, web, tally)
    boxes.whatsapp.webhook_url = None
    web.stop()
    runtime.close()
    boxes.stop()


def poll_until_ok(w: World) -> None:
    """Poll like the scheduler would: every interval, but not before a 429's Retry-After."""
    store = w.runtime.stores[0]
    for _ in range(200):
        result = w.runtime.sync(store)
        assert result is not None
        w.tally.polls += 1
        if result.ok:
            return
        with w.engine.connect() as conn:
            state = orders.get_store_state(conn, STORE)
        assert state is not None
        if state.poll_not_before is not None and state.poll_not_before > w.clock():
            w.tally.rate_limit_waits += 1
            w.clock.now = state.poll_not_before
        else:
            w.tally.failed_polls += 1
            w.clock.advance(seconds=store.settings.poll_interval_seconds)
    pytest.fail("200 polls in a row failed")


def settle(w: World) -> None:
    """Dispatch, let every status webhook land, and move the clock to the next retry, until no
    message is pending. Only once the webhooks are in does the clock pass the ambiguity grace."""
    for _ in range(500):
        while True:
            step = w.runtime.dispatch()
            w.tally.add(step)
            if step.sent + step.failed + step.skipped + step.retried + step.ambiguous == 0:
                break
        assert w.boxes.whatsapp.wait_for_webhooks(60), "status webhooks did not drain"
        while w.runtime.process_webhooks():
            pass
        with w.engine.connect() as conn:
            statuses: Counter[str] = Counter(
                dict(
                    conn.execute(
                        select(messages.c.status, func.count()).group_by(messages.c.status)
                    ).all()
                )
            )
            next_due = conn.execute(
                select(func.min(messages.c.next_attempt_at)).where(messages.c.status == "queued")
            ).scalar_one()
        if not any(statuses[s] for s in PENDING):
            return
        if statuses["queued"] and next_due is not None and next_due > w.clock():
            w.clock.now = next_due
        elif not statuses["queued"] and statuses["ambiguous"]:
            w.clock.advance(seconds=GRACE + 1)  # no evidence came: the send never happened
        else:
            w.clock.advance(seconds=1)
    pytest.fail("the outbox never settled")


def outbox_summary(engine: Engine) -> tuple[dict[int, str], Counter[str], int]:
    """(message id → dedupe key, rows by status, rows resent after an unresolved timeout)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                messages.c.id,
                messages.c.dedupe_key,
                messages.c.status,
                messages.c.resent_after_ambiguity,
            )
        ).all()
    key_of = {row.id: row.dedupe_key for row in rows}
    return (
        key_of,
        Counter(row.status for row in rows),
        sum(1 for row in rows if row.resent_after_ambiguity),
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 10,000 transitions take far longer on a loaded runner
def test_chaos_every_transition_is_sent_exactly_once_under_faults_on_both_apis(
    world: World,
) -> None:
    """TRANSITIONS order transitions (10,000 in CI) under 10 % 5xx, 5 % timeouts and 429 bursts
    on Wix and WhatsApp: one accepted send per dedupe key at the sandbox, 0 lost, 0 duplicated."""
    w = world
    started = time.monotonic()
    # Created a minute apart, so the poll overlap after the baseline re-reads only the newest few.
    first = w.clock() - timedelta(minutes=ORDERS + 1)
    w.boxes.wix.add_orders(
        wix_order(FIRST_NUMBER + i, created=first + timedelta(minutes=i)) for i in range(ORDERS)
    )
    poll_until_ok(w)  # the baseline, before the faults start
    wix_faults = w.boxes.wix.inject_faults(chaos_plan(seed=101))
    wa_faults = w.boxes.whatsapp.inject_faults(chaos_plan(seed=202))
    assert wix_faults is not None
    assert wa_faults is not None

    rng = random.Random(20261203)
    progress = dict.fromkeys(range(ORDERS), 0)
    expected: set[str] = set()
    while len(expected) < TRANSITIONS:
        w.clock.advance(seconds=150)  # past the poll overlap: each round reads only its changes
        movable = [i for i, step in progress.items() if step < len(STEPS)]
        for index in rng.sample(
            movable, min(MOVES_PER_ROUND, len(movable), TRANSITIONS - len(expected))
        ):
            kind, value = STEPS[progress[index]]
            order_id = order_guid(FIRST_NUMBER + index)
            if kind == "payment":
                w.boxes.wix.set_payment(order_id, value)
            else:
                w.boxes.wix.set_fulfillment(order_id, value)
            w.clock.advance(milliseconds=1)
            expected.add(f"{STORE}:{order_id}:{kind}:{value}")
            progress[index] += 1
        w.clock.advance(seconds=1)
        poll_until_ok(w)
        settle(w)
    elapsed = time.monotonic() - started

    key_of, statuses, resent = outbox_summary(w.engine)
    sends = Counter(
        key_of.get(int(m.callback_data or 0), "?") for m in w.boxes.whatsapp.sent_messages()
    )
    duplicated = {key: n for key, n in sends.items() if n > 1}
    lost = expected - set(sends)
    t, d = w.tally, w.tally.dispatch
    searches = sum(1 for _, path, _ in w.boxes.wix.requests if path.endswith("/search"))
    print(
        f"\nchaos: {len(expected)} transitions, {sum(sends.values())} sends at the sandbox, "
        f"{len(lost)} lost, {len(duplicated)} duplicated, in {elapsed:.0f} s"
        f"\n  wix faults {wix_faults.counts()}, whatsapp faults {wa_faults.counts()}"
        f"\n  polls {t.polls} ({t.failed_polls} failed, {t.rate_limit_waits} waited out a 429), "
        f"{searches} search requests, {len(t.wix_backoffs)} in-call Wix retries"
        f"\n  dispatch: {d.retried} retries, {d.ambiguous} ambiguous, {resent} of them resent "
        f"after the grace (no webhook evidence), outbox {dict(statuses)}"
    )
    assert lost == set()
    assert duplicated == {}
    assert set(sends) == expected
    assert statuses["delivered"] == len(expected)
    assert d.ambiguous > 0
    assert resent == 0  # every timeout was settled by its status webhook, none by a blind resend


class AnswerLostAfterWebhooks(httpx.BaseTransport):
    """The real wire to the sandbox, except that a send's answer is lost: once the sandbox accepted
    it and its status webhooks were processed, the client sees a read timeout instead."""

    def __init__(self, settled: Callable[[], None]) -> None:
        self._wire = httpx.HTTPTransport()
        self._settled = settled

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._wire.handle_request(request)
        if request.method != "POST" or not request.url.path.endswith("/messages"):
            return response
        response.read()
        self._settled()
        raise httpx.ReadTimeout("answer lost after the webhooks came", request=request)

    def close(self) -> None:
        self._wire.close()


def test_a_status_webhook_that_beats_the_timeout_settles_the_send_with_no_resend(
    engine: Engine, clock: Clock
) -> None:
    """The chaos run's duplicate: the webhooks of an accepted send are applied while the HTTP call
    is still waiting, then the call times out. The row keeps `delivered` (not `ambiguous`), and
    after the grace nothing is resent: one message at the sandbox."""
    boxes = start_sandboxes(clock)
    holder: list[Runtime] = []

    def webhooks_applied() -> None:
        assert boxes.whatsapp.wait_for_webhooks(10)
        while holder[0].process_webhooks():
            pass

    settings = sandbox_settings(boxes, str(engine.url))
    settings = replace(
        settings,
        dispatch=DispatchSettings(recipient_spacing_seconds=0, ambiguous_grace_seconds=GRACE),
    )
    runtime = build(
        settings,
        clock=clock,
        engine=engine,
        rng=random.Random(3),
        whatsapp_transport=AnswerLostAfterWebhooks(webhooks_applied),
    )
    holder.append(runtime)
    web = serve_in_thread(daemon_app(runtime, "web"))
    boxes.whatsapp.webhook_url = f"{web.url}/webhooks/whatsapp"
    try:
        runtime.refresh_templates()
        boxes.wix.add_orders([wix_order(FIRST_NUMBER, created=clock() - timedelta(days=1))])
        assert runtime.sync_all()[0].baseline
        clock.advance(seconds=30)
        boxes.wix.set_payment(order_guid(FIRST_NUMBER), "PAID")
        assert runtime.sync_all()[0].ok

        first = runtime.dispatch()
        clock.advance(seconds=GRACE + 1)
        runtime.dispatch()

        with engine.connect() as conn:
            statuses = [row.status for row in conn.execute(select(messages.c.status))]
        assert first.ambiguous == 1
        assert statuses == ["delivered"]
        assert len(boxes.whatsapp.sent_messages()) == 1
    finally:
        boxes.whatsapp.webhook_url = None
        web.stop()
        runtime.close()
        boxes.stop()
