"""The sliding-window limiter behind the business number's throughput limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from notifier.ratelimit import SlidingWindow


def send(limiter: SlidingWindow, now: float, duration: float = 0.0) -> float:
    """Wait as told, send for ``duration`` seconds; returns when the send finished."""
    now += limiter.wait_time(now)
    assert limiter.wait_time(now) == 0
    limiter.start()
    limiter.finish(now + duration)
    return now + duration


def test_the_rate_goes_at_once_then_the_next_waits_for_the_oldest_to_leave_the_window() -> None:
    """At 3/s, three sends go at t=0; the fourth may start at t=1, when the first is 1 s old."""
    limiter = SlidingWindow(rate=3)
    for _ in range(3):
        send(limiter, 0.0)
    assert limiter.wait_time(0.25) == 0.75
    assert limiter.wait_time(1.0) == 0


def test_sends_in_flight_count_against_the_window() -> None:
    """Two sends started and not finished fill a 2/s limit: a third must wait."""
    limiter = SlidingWindow(rate=2)
    limiter.start()
    limiter.start()
    assert limiter.wait_time(0.0) > 0
    limiter.finish(0.1)
    assert limiter.wait_time(0.1) == 1.0  # the finished one holds its slot for a second
    assert limiter.wait_time(1.1) == 0


def test_below_one_per_second_spaces_single_sends() -> None:
    """At 0.5/s one send every 2 s."""
    limiter = SlidingWindow(rate=0.5)
    send(limiter, 0.0)
    assert limiter.wait_time(1.0) == 1.0
    assert limiter.wait_time(2.0) == 0


def test_unlimited_never_waits() -> None:
    """A rate of 0 turns limiting off."""
    limiter = SlidingWindow(rate=0)
    for i in range(1000):
        send(limiter, i / 1e6)
    assert limiter.wait_time(0.0) == 0


def test_a_steady_sender_reaches_the_rate() -> None:
    """Back-to-back sends of 1 ms each at 80/s: 80 go out in every second, none lost to idling."""
    limiter = SlidingWindow(rate=80)
    now, starts = 0.0, []
    while now < 10.0:
        now += limiter.wait_time(now)
        starts.append(now)
        now = send(limiter, now, duration=0.001)
    assert len(starts) >= 80 * 10 - 10


def most_in_one_second(stamps: list[float]) -> int:
    ordered = sorted(stamps)
    return max(sum(1 for t in ordered[i:] if t < start + 1.0) for i, start in enumerate(ordered))


@given(
    st.integers(1, 200),
    st.lists(st.tuples(st.floats(0, 0.05), st.floats(0, 0.05)), min_size=50, max_size=400),
)
def test_no_window_of_one_second_holds_more_than_the_rate(
    rate: int, sends: list[tuple[float, float]]
) -> None:
    """Whatever the gaps and send durations, no 1 s window holds more than ``rate`` sends, counted
    at their starts or at their finishes (the receiver saw each one somewhere in between)."""
    limiter = SlidingWindow(rate=rate)
    now, starts, finishes = 0.0, [], []
    for gap, duration in sends:
        now += gap
        now += limiter.wait_time(now)
        starts.append(now)
        now = send(limiter, now, duration)
        finishes.append(now)
    assert most_in_one_second(starts) <= rate
    assert most_in_one_second(finishes) <= rate
