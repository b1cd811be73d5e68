"""Wix faults during a poll (issue 4, Wix side): 429 waits, 5xx retried with backoff, hung server.

Everything runs over loopback against the Wix sandbox (or a bare socket that never answers), with
the real client, the real sync and a real database; the test's clock is the sandbox's clock.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from structlog.testing import capture_logs

from notifier.bootstrap import Runtime
from notifier.errors import WixTransientError
from notifier.retry import RetryPolicy
from notifier.sandbox.faults import Fault, FaultInjector, FaultPlan
from notifier.sandbox.harness import Sandboxes
from notifier.store import orders
from notifier.store.tables import poll_runs
from notifier.sync import SyncResult, sync_store
from notifier.web import stale_stores
from notifier.wix import RETRY_POLICY, WixClient
from tests.conftest import Clock
from tests.test_sync import drain, make_runtime, order_guid, wix_order

NUMBER = 10401
TIMEOUT = 0.5


@pytest.fixture
def runtime(boxes: Sandboxes, engine: Engine, clock: Clock) -> Iterator[Runtime]:
    built = make_runtime(boxes, engine, clock, request_timeout_seconds=TIMEOUT)
    boxes.wix.add_orders([wix_order(NUMBER, created=clock() - timedelta(days=1))])
    assert runtime_sync(built).baseline
    clock.advance(seconds=30)
    yield built
    built.close()


class RecordedSleep:
    """Stands in for ``time.sleep`` in the Wix client: remembers each backoff, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def runtime_sync(runtime: Runtime) -> SyncResult:
    result = runtime.sync(runtime.stores[0])
    assert result is not None
    return result


def state_of(runtime: Runtime) -> orders.StoreState:
    with runtime.engine.connect() as conn:
        state = orders.get_store_state(conn, runtime.stores[0].settings.name)
    assert state is not None
    return state


def poll_run_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(poll_runs.c.id)).all())


def sent_numbers(boxes: Sandboxes) -> list[str]:
    return [m.body_params[1] for m in boxes.whatsapp.sent_messages()]


# -- 429: wait for Retry-After before the next poll ------------------------------------------------


def test_wix_429_waits_for_retry_after_before_the_next_poll_keeping_the_watermark(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """A 429 with Retry-After 30: polls before then send Wix nothing and say why in the log;
    the watermark stays; the first poll at +30 s runs, sends the change once and clears the wait."""
    mark = state_of(runtime).watermark
    boxes.wix.set_payment(order_guid(NUMBER), "PAID")
    boxes.wix.fail_next(429, path_contains="search", retry_after=30)
    limited_at = clock()

    limited = runtime_sync(runtime)

    assert not limited.ok
    assert state_of(runtime).poll_not_before == limited_at + timedelta(seconds=30)
    requests, runs = boxes.wix.request_count, poll_run_count(engine)
    for _ in range(3):
        clock.advance(seconds=9.9)
        with capture_logs() as logs:
            waiting = runtime_sync(runtime)
        assert not waiting.ok
        assert "waiting until" in (waiting.error or "")
        events = [e["event"] for e in logs]
        assert "poll.waiting_for_rate_limit" in events
        assert "poll.failed" not in events
    assert boxes.wix.request_count == requests  # no request while Wix asked us to wait
    assert poll_run_count(engine) == runs
    assert state_of(runtime).watermark == mark
    drain(runtime)
    assert sent_numbers(boxes) == []

    clock.advance(seconds=0.3)  # now exactly 30 s after the 429
    recovered = runtime_sync(runtime)
    drain(runtime)

    assert recovered.ok
    assert sent_numbers(boxes) == [str(NUMBER)]
    after = state_of(runtime)
    assert after.poll_not_before is None
    assert after.last_poll_error is None
    assert mark is not None
    assert after.watermark is not None
    assert after.watermark > mark


def test_wix_429_without_retry_after_waits_about_a_minute(
    boxes: Sandboxes, runtime: Runtime, clock: Clock
) -> None:
    """A 429 naming no Retry-After: no poll for 60 s, then polling resumes."""
    boxes.wix.fail_next(429, path_contains="search")
    assert not runtime_sync(runtime).ok
    requests = boxes.wix.request_count

    clock.advance(seconds=59)
    assert "waiting until" in (runtime_sync(runtime).error or "")
    assert boxes.wix.request_count == requests
    clock.advance(seconds=1)
    assert runtime_sync(runtime).ok
    assert boxes.wix.request_count > requests


def test_healthz_names_a_store_waiting_out_a_429_once_its_last_poll_is_stale(
    boxes: Sandboxes, runtime: Runtime, clock: Clock
) -> None:
    """Waiting for Retry-After is not a successful poll: past 3 intervals /healthz names the store."""
    interval = runtime.stores[0].settings.poll_interval_seconds
    boxes.wix.fail_next(429, path_contains="search", retry_after=10 * interval)
    runtime_sync(runtime)
    last_ok = state_of(runtime).last_poll_ok_at
    assert last_ok is not None

    clock.advance(seconds=4 * interval)
    runtime_sync(runtime)

    assert stale_stores(runtime, clock()) == [
        f"store 'sandbox-store': last successful poll {last_ok.isoformat()}"
    ]


def test_a_429_on_a_tracking_call_does_not_stop_polls(
    boxes: Sandboxes, runtime: Runtime, clock: Clock
) -> None:
    """Only a poll that failed with 429 sets the wait: a 429 on a swallowed tracking read does not."""
    boxes.wix.fail_next(429, path_contains="fulfillments", retry_after=600)
    boxes.wix.set_fulfillment(order_guid(NUMBER), "FULFILLED")
    assert runtime_sync(runtime).ok
    assert state_of(runtime).poll_not_before is None


# -- 5xx: retried within the call with jittered backoff, capped --------------------------------------


def retrying_client(boxes: Sandboxes, sleep: RecordedSleep) -> WixClient:
    return WixClient(
        base_url=boxes.wix_server.url,
        api_key=boxes.wix.api_key,
        site_id=boxes.wix.site_id,
        timeout=TIMEOUT,
        rng=random.Random(11),
        sleep=sleep,
    )


def test_wix_5xx_is_retried_with_jittered_exponential_backoff_and_the_poll_succeeds(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """Two 503s, then an answer: one poll, three requests, backoffs ~0.5 s then ~1 s (±25 %)."""
    boxes.wix.set_payment(order_guid(NUMBER), "PAID")
    boxes.wix.fail_next(503, count=2, path_contains="search")
    sleep = RecordedSleep()
    before = boxes.wix.request_count

    with retrying_client(boxes, sleep) as wix:
        result = sync_store(runtime.stores[0].settings, wix, engine, clock)
    drain(runtime)

    assert result.ok
    assert boxes.wix.request_count - before == 3
    assert len(sleep.delays) == 2
    assert 0.375 <= sleep.delays[0] <= 0.625
    assert 0.75 <= sleep.delays[1] <= 1.25
    assert sent_numbers(boxes) == [str(NUMBER)]


def test_wix_5xx_retries_are_capped_then_the_poll_fails_keeping_the_watermark(
    boxes: Sandboxes, runtime: Runtime, engine: Engine, clock: Clock
) -> None:
    """503 on every try: RETRY_POLICY.max_attempts requests, then a failed poll; no wait is set
    (only a 429 asks for one) and the next poll succeeds."""
    mark = state_of(runtime).watermark
    boxes.wix.fail_next(503, count=RETRY_POLICY.max_attempts, path_contains="search")
    sleep = RecordedSleep()
    before = boxes.wix.request_count

    with retrying_client(boxes, sleep) as wix:
        failed = sync_store(runtime.stores[0].settings, wix, engine, clock)
        assert boxes.wix.request_count - before == RETRY_POLICY.max_attempts
        assert len(sleep.delays) == RETRY_POLICY.max_attempts - 1
        assert not failed.ok
        assert "503" in (failed.error or "")
        state = state_of(runtime)
        assert (state.watermark, state.poll_not_before) == (mark, None)
        assert sync_store(runtime.stores[0].settings, wix, engine, clock).ok


# -- a Wix that accepts and never answers -----------------------------------------------------------


def test_hung_wix_delays_one_poll_by_one_timeout_and_the_next_poll_runs(
    boxes: Sandboxes, runtime: Runtime, clock: Clock
) -> None:
    """The sandbox holds two searches unanswered: each poll ends on its own timeout after one
    request (no retry stacks timeouts) while the sandbox still holds it; the next poll runs; once
    the sandbox answers again, a poll succeeds and the change is sent once."""
    boxes.wix.set_payment(order_guid(NUMBER), "PAID")
    boxes.wix.hang_next(2)
    try:
        for _ in range(2):
            before = boxes.wix.request_count
            hung = runtime_sync(runtime)
            assert not hung.ok
            assert "timed out" in (hung.error or "")
            assert boxes.wix.request_count - before == 1
            assert boxes.wix.held_requests >= 1  # the poll returned; the sandbox never answered
            clock.advance(seconds=runtime.stores[0].settings.poll_interval_seconds)
    finally:
        boxes.wix.release()
    recovered = runtime_sync(runtime)
    drain(runtime)

    assert recovered.ok
    assert sent_numbers(boxes) == [str(NUMBER)]


def test_a_server_that_accepts_and_never_reads_costs_one_call_one_timeout() -> None:
    """A bare TCP listener that accepts and never answers: the call fails with a timeout after
    one request, and a second call is made (and fails the same way) rather than blocking."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    client = WixClient(
        base_url=f"http://127.0.0.1:{port}", api_key="k", site_id="s", timeout=TIMEOUT
    )
    try:
        for attempt in (1, 2):
            with pytest.raises(WixTransientError, match="timed out"):
                next(client.search_pages(None))
            assert client.request_count == attempt
        assert len(accepted) >= 1
    finally:
        client.close()
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


# -- the sandboxes' fault knobs ---------------------------------------------------------------------


def test_fault_injection_is_off_by_default_and_reproducible_with_a_seed() -> None:
    """The same plan and seed draw the same faults; the shares are near the plan's rates."""
    plan = FaultPlan(server_error_rate=0.1, timeout_rate=0.05, burst_rate=0.01, seed=5)
    first, second = FaultInjector(plan), FaultInjector(plan)
    draws = [first.draw() for _ in range(20_000)]
    assert draws == [second.draw() for _ in range(20_000)]
    counts = first.counts()
    assert 1800 <= counts[Fault.SERVER_ERROR.value] <= 2200
    assert 800 <= counts[Fault.LOST_REQUEST.value] + counts[Fault.LOST_ANSWER.value] <= 1200
    assert FaultInjector(FaultPlan()).draw() is None
    with pytest.raises(ValueError, match="fault rates"):
        FaultPlan(server_error_rate=0.7, timeout_rate=0.4)


def test_wix_sandbox_injected_faults_are_5xx_and_429_with_retry_after(
    boxes: Sandboxes, clock: Clock
) -> None:
    """With every request failing, the sandbox answers 503 or a 429 burst carrying Retry-After."""
    injector = boxes.wix.inject_faults(
        FaultPlan(server_error_rate=0.5, burst_rate=0.5, retry_after=7, seed=3)
    )
    client = WixClient(
        base_url=boxes.wix_server.url,
        api_key=boxes.wix.api_key,
        site_id=boxes.wix.site_id,
        retry=RetryPolicy(max_attempts=1),  # each fault seen as it is
    )
    seen: set[tuple[int | None, float | None]] = set()
    with client:
        for _ in range(20):
            with pytest.raises(WixTransientError) as info:
                client.tracking(order_guid(NUMBER))
            seen.add((info.value.status, info.value.retry_after))
    boxes.wix.inject_faults(None)
    assert seen == {(503, None), (429, 7.0)}
    assert injector is not None
    assert injector.counts()[Fault.RATE_LIMITED.value] > 0
