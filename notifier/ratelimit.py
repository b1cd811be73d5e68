"""Pure: a token bucket — how long must a sender wait before its next message?

The bucket holds state but never reads a clock: every call is told ``now`` (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked; ``rate`` <= 0 means unlimited."""

    rate: float
    burst: float = 1.0
    _tokens: float = field(default=0.0, init=False)
    _updated: float | None = field(default=None, init=False)

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0 = take one now with ``take``)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self, now: float) -> None:
        """Spend one token (call when ``wait_time(now)`` is 0)."""
        if self.rate <= 0:
            return
        self._refill(now)
        self._tokens -= 1

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._tokens = self.burst
        else:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
