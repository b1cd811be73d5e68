"""Seeded random faults for the sandboxes (chaos tests, demos): 5xx, stalls and 429 bursts.

Off by default. A plan names the share of requests that fail each way; one seeded
``random.Random`` decides, so a run can be replayed. A "timeout" is a stall longer than the
client waits, either before the request is handled (``LOST_REQUEST``: nothing happened) or after
(``LOST_ANSWER``: it took effect, only the answer is late, to a client that has given up).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from enum import Enum


class Fault(Enum):
    SERVER_ERROR = "server_error"
    LOST_REQUEST = "lost_request"
    LOST_ANSWER = "lost_answer"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What share of requests fail how; bursts of 429 start at ``burst_rate`` and last a while."""

    server_error_rate: float = 0.0
    timeout_rate: float = 0.0
    burst_rate: float = 0.0
    burst_length: int = 5
    retry_after: float | None = 2.0
    stall_seconds: float = 1.0
    lost_answer_share: float = 0.5  # of the timeouts, those where the request took effect
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.server_error_rate, self.timeout_rate, self.burst_rate)
        if any(rate < 0 for rate in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be >= 0 and add up to at most 1, got {rates}")
        if self.burst_length < 1 or self.stall_seconds < 0 or not 0 <= self.lost_answer_share <= 1:
            raise ValueError(
                "burst_length must be >= 1, stall_seconds >= 0, lost_answer_share in [0, 1]"
            )


class FaultInjector:
    """Draws the fault (or None) for each request under one plan; thread-safe, counts its draws."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._burst_left = 0
        self._counts: Counter[Fault] = Counter()

    def draw(self) -> Fault | None:
        with self._lock:
            fault = self._next()
            if fault is not None:
                self._counts[fault] += 1
            return fault

    def counts(self) -> dict[str, int]:
        """How many requests got each fault so far, by ``Fault`` value."""
        with self._lock:
            return {fault.value: self._counts[fault] for fault in Fault}

    def _next(self) -> Fault | None:
        if self._burst_left > 0:
            self._burst_left -= 1
            return Fault.RATE_LIMITED
        plan, roll = self.plan, self._rng.random()
        if roll < plan.server_error_rate:
            return Fault.SERVER_ERROR
        if roll < plan.server_error_rate + plan.timeout_rate:
            lost_answer = self._rng.random() < plan.lost_answer_share
            return Fault.LOST_ANSWER if lost_answer else Fault.LOST_REQUEST
        if roll < plan.server_error_rate + plan.timeout_rate + plan.burst_rate:
            self._burst_left = plan.burst_length - 1
            return Fault.RATE_LIMITED
        return None
