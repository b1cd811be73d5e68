"""Pure: quiet hours in a store's time zone — when may a normal notification go out?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from notifier.domain import Urgency


def release_at(
    now: datetime,
    *,
    zone: tzinfo,
    start: time,
    end: time,
    urgency: Urgency,
    enabled: bool = True,
) -> datetime | None:
    """None when the message may go now; otherwise the UTC-aware moment quiet hours end.

    Urgent messages (cancellation, payment failed) ignore quiet hours. The window may cross
    midnight (21:00–08:00) or not (13:00–14:00); start == end means no quiet hours.
    """
    if not enabled or urgency is Urgency.URGENT or start == end:
        return None
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    crosses_midnight = start > end
    quiet = (clock >= start or clock < end) if crosses_midnight else (start <= clock < end)
    if not quiet:
        return None
    day = (
        local.date() if (not crosses_midnight or clock < end) else local.date() + timedelta(days=1)
    )
    wake = datetime.combine(day, end, tzinfo=zone)
    return wake.astimezone(now.tzinfo)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A store's quiet hours, in its own time zone."""

    zone: tzinfo
    start: time
    end: time
    enabled: bool = True

    def release_at(self, now: datetime, urgency: Urgency) -> datetime | None:
        return release_at(
            now,
            zone=self.zone,
            start=self.start,
            end=self.end,
            urgency=urgency,
            enabled=self.enabled,
        )
