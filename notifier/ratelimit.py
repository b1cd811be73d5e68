"""Pure: rate limiters — how long must a sender wait before its next message?

They hold state but never read a clock: every call is told ``now`` (monotonic seconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SlidingWindow:
    """At most ``rate`` sends in any ``window`` seconds; ``rate`` <= 0 means unlimited.

    It remembers when each of the last ``rate`` sends *finished*, and counts sends still in flight:
    a send may start once fewer than ``rate`` are in flight or finished within the window. Since the
    receiver saw each request between its start and its finish, no window at the receiver holds more
    than ``rate`` either, and unlike a token bucket with burst 1 no idle time is lost, so the mean
    can reach the rate.
    """

    rate: float
    window: float = 1.0
    _finished: deque[float] = field(default_factory=deque, init=False)
    _in_flight: int = field(default=0, init=False)

    def wait_time(self, now: float) -> float:
        """Seconds until a send may start (0 = call ``start`` now); always 0 when unlimited."""
        if self.rate <= 0:
            return 0.0
        capacity, span = self._limits()
        free = capacity - self._in_flight
        if free <= 0:  # every slot is in flight: ask again once one of them could have finished
            return span / capacity
        if len(self._finished) < free:
            return 0.0
        return max(0.0, self._finished[-free] + span - now)

    def start(self) -> None:
        """A send begins (call when ``wait_time`` is 0)."""
        self._in_flight += 1

    def finish(self, now: float) -> None:
        """One of the sends in flight ended at ``now``, whatever its outcome."""
        self._in_flight = max(0, self._in_flight - 1)
        if self.rate <= 0:
            return
        self._finished.append(now)
        while len(self._finished) > self._limits()[0]:
            self._finished.popleft()

    def _limits(self) -> tuple[int, float]:
        """Sends allowed per span: ``int(rate)`` per window, or one per ``window / rate`` below 1/s."""
        if self.rate >= 1:
            return int(self.rate), self.window
        return 1, self.window / self.rate
