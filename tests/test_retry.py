"""retry: exponential backoff with jitter, Retry-After floor, give-up, pair-rate delay."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.retry import RetryPolicy, backoff_seconds, next_attempt_at, pair_rate_delay

NOW = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)
NO_JITTER = RetryPolicy(jitter=0.0)


class Fixed:
    """An RNG that always returns the same value, to pin the jitter's extremes."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def delay(policy: RetryPolicy, attempt: int, rng: Fixed | random.Random, **kw: float) -> float:
    at = next_attempt_at(policy, attempt=attempt, now=NOW, rng=rng, **kw)
    assert at is not None
    return (at - NOW).total_seconds()


def test_backoff_doubles_from_base_without_jitter() -> None:
    """With no jitter the delays are 2, 4, 8, 16 … seconds after attempts 1, 2, 3, 4."""
    rng = random.Random(1)
    assert [delay(NO_JITTER, n, rng) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 32.0]


def test_backoff_capped_at_max_seconds() -> None:
    """Late attempts never wait longer than max_seconds."""
    policy = RetryPolicy(max_attempts=100, jitter=0.25)
    assert delay(policy, 50, Fixed(0.999)) == pytest.approx(900.0)
    assert delay(policy, 99, Fixed(0.0)) == pytest.approx(675.0)


def test_jitter_extremes() -> None:
    """Jitter spreads the delay by ± jitter: rng 0 gives 75 %, rng→1 gives 125 % of nominal."""
    policy = RetryPolicy(jitter=0.25)
    assert delay(policy, 3, Fixed(0.0)) == pytest.approx(6.0)
    assert delay(policy, 3, Fixed(0.5)) == pytest.approx(8.0)
    assert delay(policy, 3, Fixed(0.999999)) == pytest.approx(10.0, rel=1e-5)


def test_seeded_rng_is_reproducible() -> None:
    """The same seed gives the same schedule, a different seed a different one."""
    policy = RetryPolicy()
    first = [delay(policy, n, random.Random(42)) for n in range(1, 8)]
    again = [delay(policy, n, random.Random(42)) for n in range(1, 8)]
    other = [delay(policy, n, random.Random(7)) for n in range(1, 8)]
    assert first == again
    assert first != other


def test_gives_up_after_max_attempts() -> None:
    """After max_attempts attempts next_attempt_at returns None."""
    policy = RetryPolicy(max_attempts=3)
    rng = random.Random(0)
    assert next_attempt_at(policy, attempt=2, now=NOW, rng=rng) is not None
    assert next_attempt_at(policy, attempt=3, now=NOW, rng=rng) is None
    assert next_attempt_at(policy, attempt=4, now=NOW, rng=rng) is None


def test_retry_after_is_a_floor() -> None:
    """Retry-After longer than the backoff wins; shorter than the backoff changes nothing."""
    assert delay(NO_JITTER, 1, Fixed(0.5), retry_after=30.0) == 30.0
    assert delay(NO_JITTER, 4, Fixed(0.5), retry_after=2.0) == 16.0


def test_br12a_retry_after_2_is_honoured() -> None:
    """BR-12a: a 429 with Retry-After: 2 is never retried sooner than 2 s, whatever the jitter."""
    assert delay(RetryPolicy(), 1, Fixed(0.0), retry_after=2.0) >= 2.0


def test_retry_after_beyond_cap_is_still_honoured() -> None:
    """Retry-After beyond max_seconds is obeyed: retrying earlier only earns another 429."""
    assert delay(RetryPolicy(), 1, Fixed(0.5), retry_after=3600.0) == 3600.0


def test_result_keeps_timezone() -> None:
    """The next attempt is in the same (UTC) timezone as now."""
    at = next_attempt_at(RetryPolicy(), attempt=1, now=NOW, rng=random.Random(3))
    assert at is not None
    assert at.tzinfo is UTC


def test_negative_attempt_rejected() -> None:
    """A negative attempt count is a programming error."""
    with pytest.raises(ValueError, match="attempt"):
        next_attempt_at(RetryPolicy(), attempt=-1, now=NOW, rng=random.Random(0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_seconds": 0.0},
        {"factor": 0.5},
        {"max_seconds": 1.0},
        {"max_attempts": 0},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_invalid_policy_rejected(kwargs: dict[str, float]) -> None:
    """A policy that could wait zero, shrink, or jitter below zero is refused at construction."""
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_pair_rate_delay_follows_4_to_the_n_capped() -> None:
    """131056: wait 4**n seconds (1, 4, 16, 64, 256), capped at 900 s."""
    assert [pair_rate_delay(n) for n in range(6)] == [1.0, 4.0, 16.0, 64.0, 256.0, 900.0]
    assert pair_rate_delay(10_000) == 900.0
    assert pair_rate_delay(3, max_seconds=30.0) == 30.0


def test_pair_rate_delay_rejects_negative_attempt() -> None:
    """A negative attempt for the pair-rate delay is a programming error."""
    with pytest.raises(ValueError, match="attempt"):
        pair_rate_delay(-1)


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.floats(min_value=0.01, max_value=100.0),
    factor=st.floats(min_value=1.0, max_value=10.0),
    jitter=st.floats(min_value=0.0, max_value=0.99),
    retry_after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=10_000.0)),
)
def test_property_delay_bounded(
    attempt: int, seed: int, base: float, factor: float, jitter: float, retry_after: float | None
) -> None:
    """Any delay is positive, within jitter of the capped nominal, and never below Retry-After."""
    policy = RetryPolicy(
        base_seconds=base, factor=factor, max_seconds=base * 500, max_attempts=20_000, jitter=jitter
    )
    seconds = backoff_seconds(policy, attempt=attempt, rng=random.Random(seed))
    assert 0 < seconds <= policy.max_seconds
    assert seconds >= base * (1 - jitter) * 0.999999
    at = next_attempt_at(
        policy, attempt=attempt, now=NOW, rng=random.Random(seed), retry_after=retry_after
    )
    assert at is not None
    assert at - NOW >= timedelta(seconds=max(seconds, retry_after or 0.0)) - timedelta(
        microseconds=1
    )
