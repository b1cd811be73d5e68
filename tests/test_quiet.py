"""Quiet hours: normal messages wait for the morning in the store's zone; urgent ones never wait."""

from __future__ import annotations

from datetime import UTC, datetime, time, tzinfo
from typing import TypedDict
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from notifier.domain import Urgency
from notifier.quiet import release_at

KOLKATA = ZoneInfo("Asia/Kolkata")


class _Hours(TypedDict):
    zone: tzinfo
    start: time
    end: time


NIGHT: _Hours = {"zone": KOLKATA, "start": time(21), "end": time(8)}


def test_a_normal_message_at_night_waits_until_eight_local() -> None:
    """23:30 IST on 20 June releases at 08:00 IST on 21 June (02:30 UTC)."""
    now = datetime(2026, 6, 20, 18, 0, tzinfo=UTC)  # 23:30 IST
    assert release_at(now, urgency=Urgency.NORMAL, **NIGHT) == datetime(
        2026, 6, 21, 2, 30, tzinfo=UTC
    )


def test_after_midnight_releases_the_same_morning() -> None:
    """03:00 IST releases at 08:00 IST that same day."""
    now = datetime(2026, 6, 20, 21, 30, tzinfo=UTC)  # 03:00 IST on the 21st
    assert release_at(now, urgency=Urgency.NORMAL, **NIGHT) == datetime(
        2026, 6, 21, 2, 30, tzinfo=UTC
    )


def test_daytime_and_urgent_and_disabled_go_now() -> None:
    """Outside quiet hours, for urgent messages, or with the switch off, nothing waits."""
    day = datetime(2026, 6, 20, 6, 0, tzinfo=UTC)  # 11:30 IST
    night = datetime(2026, 6, 20, 18, 0, tzinfo=UTC)
    assert release_at(day, urgency=Urgency.NORMAL, **NIGHT) is None
    assert release_at(night, urgency=Urgency.URGENT, **NIGHT) is None
    assert release_at(night, urgency=Urgency.NORMAL, enabled=False, **NIGHT) is None


def test_boundaries_are_half_open() -> None:
    """21:00 exactly is quiet; 08:00 exactly is not."""
    at_nine_pm = datetime(2026, 6, 20, 15, 30, tzinfo=UTC)
    at_eight_am = datetime(2026, 6, 21, 2, 30, tzinfo=UTC)
    assert release_at(at_nine_pm, urgency=Urgency.NORMAL, **NIGHT) is not None
    assert release_at(at_eight_am, urgency=Urgency.NORMAL, **NIGHT) is None


def test_a_window_that_does_not_cross_midnight() -> None:
    """13:00–14:00 holds 13:30 until 14:00 the same day."""
    now = datetime(2026, 6, 20, 8, 0, tzinfo=UTC)  # 13:30 IST
    released = release_at(now, zone=KOLKATA, start=time(13), end=time(14), urgency=Urgency.NORMAL)
    assert released == datetime(2026, 6, 20, 8, 30, tzinfo=UTC)


@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    )
)
def test_release_is_always_later_and_outside_quiet_hours(now: datetime) -> None:
    """Whatever the moment, a release time is in the future and itself not quiet (DST included)."""
    for zone in (KOLKATA, ZoneInfo("Europe/Berlin"), ZoneInfo("America/Sao_Paulo")):
        released = release_at(now, zone=zone, start=time(21), end=time(8), urgency=Urgency.NORMAL)
        if released is not None:
            assert released > now
            assert (
                release_at(released, zone=zone, start=time(21), end=time(8), urgency=Urgency.NORMAL)
                is None
            )
