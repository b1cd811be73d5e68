"""The token bucket behind the per-number throughput limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from notifier.ratelimit import TokenBucket


def test_a_full_bucket_spends_its_burst_then_waits() -> None:
    """With burst 2 at 1/s, two sends go at once and the third waits one second."""
    bucket = TokenBucket(rate=1.0, burst=2)
    for _ in range(2):
        assert bucket.wait_time(0.0) == 0
        bucket.take(0.0)
    assert bucket.wait_time(0.0) == 1.0
    assert bucket.wait_time(1.0) == 0


def test_unlimited_never_waits() -> None:
    """A rate of 0 turns limiting off."""
    bucket = TokenBucket(rate=0)
    for i in range(1000):
        assert bucket.wait_time(i / 1e6) == 0
        bucket.take(i / 1e6)


@given(st.floats(1, 200), st.lists(st.floats(0, 0.05), min_size=50, max_size=400))
def test_no_window_of_one_second_exceeds_rate_plus_burst(rate: float, gaps: list[float]) -> None:
    """Whatever the pacing of attempts, sends in any 1 s window never exceed rate + burst."""
    bucket = TokenBucket(rate=rate, burst=1)
    now, sent = 0.0, []
    for gap in gaps:
        now += gap
        wait = bucket.wait_time(now)
        now += wait
        bucket.take(now)
        sent.append(now)
    for i, start in enumerate(sent):
        in_window = sum(1 for t in sent[i:] if t < start + 1.0)
        assert in_window <= rate + 1 + 1e-9
