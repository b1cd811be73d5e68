"""Pure: attempts made so far + now + an injected RNG → when to try again, or give up.

Backoff is exponential with symmetric jitter and capped at ``max_seconds``. A server's
Retry-After is a floor that wins even over the cap: retrying earlier would only earn another
429. The caller decides *whether* an error is retryable (``errors.whatsapp_error_kind``);
this module only decides *when*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

PAIR_RATE_MAX_SECONDS = 900.0


class RandomSource(Protocol):
    """Anything with ``random() -> float`` in [0, 1), such as ``random.Random(seed)``."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``base_seconds * factor**(attempt - 1)`` ± ``jitter``, capped."""

    base_seconds: float = 2.0
    factor: float = 2.0
    max_seconds: float = 900.0
    max_attempts: int = 8
    jitter: float = 0.25

    def __post_init__(self) -> None:
        problems = [
            problem
            for problem, bad in (
                ("base_seconds must be > 0", self.base_seconds <= 0),
                ("factor must be >= 1", self.factor < 1),
                ("max_seconds must be >= base_seconds", self.max_seconds < self.base_seconds),
                ("max_attempts must be >= 1", self.max_attempts < 1),
                ("jitter must be in [0, 1)", not 0 <= self.jitter < 1),
            )
            if bad
        ]
        if problems:
            raise ValueError("invalid retry policy: " + "; ".join(problems))


def backoff_seconds(policy: RetryPolicy, *, attempt: int, rng: RandomSource) -> float:
    """The jittered, capped delay after ``attempt`` attempts (1 → about ``base_seconds``)."""
    nominal = min(
        policy.base_seconds * _bounded_power(policy, max(attempt - 1, 0)), policy.max_seconds
    )
    spread = policy.jitter * (2.0 * rng.random() - 1.0)
    return min(nominal * (1.0 + spread), policy.max_seconds)


def next_attempt_at(
    policy: RetryPolicy,
    *,
    attempt: int,
    now: datetime,
    rng: RandomSource,
    retry_after: float | None = None,
) -> datetime | None:
    """When to make the next attempt after ``attempt`` attempts failed; None = give up."""
    if attempt < 0:
        msg = f"attempt must be >= 0, got {attempt}"
        raise ValueError(msg)
    if attempt >= policy.max_attempts:
        return None
    delay = backoff_seconds(policy, attempt=attempt, rng=rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + timedelta(seconds=delay)


def pair_rate_delay(attempt: int, *, max_seconds: float = PAIR_RATE_MAX_SECONDS) -> float:
    """Seconds to wait before re-sending to a recipient after 131056: Meta's 4**attempt, capped."""
    if attempt < 0 or max_seconds <= 0:
        msg = f"attempt must be >= 0 and max_seconds > 0, got {attempt} and {max_seconds}"
        raise ValueError(msg)
    if attempt * math.log(4) >= math.log(max_seconds):
        return max_seconds
    return float(min(4**attempt, max_seconds))


def _bounded_power(policy: RetryPolicy, exponent: int) -> float:
    """``factor**exponent``, stopping just past the cap so a large attempt cannot overflow."""
    ceiling = policy.max_seconds / policy.base_seconds
    if policy.factor > 1 and exponent * math.log(policy.factor) > math.log(ceiling):
        return ceiling
    return policy.factor**exponent
