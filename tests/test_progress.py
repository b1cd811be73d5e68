"""The first sync of a big store reports orders read and pages after every page; on a terminal
that becomes one live line, and anywhere else nothing at all.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from notifier.daemon import poll_once
from notifier.progress import SyncProgress, TerminalProgress, describe, terminal_progress
from notifier.sandbox.harness import Sandboxes, sandbox_settings, start_sandboxes
from notifier.store.orders import RunCounts
from tests.conftest import Clock
from tests.test_sync import wix_order

ORDERS = 250  # three pages of 100


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class Recorder:
    """A SyncProgress that keeps every call."""

    pages: list[tuple[str, int, int, bool]] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    def page(self, store: str, counts: RunCounts, baseline: bool) -> None:
        self.pages.append((store, counts.pages, counts.orders_seen, baseline))

    def finish(self, store: str) -> None:
        self.finished.append(store)


@pytest.fixture
def boxes(clock: Clock) -> Iterator[Sandboxes]:
    with start_sandboxes(clock) as started:
        started.wix.add_orders(
            wix_order(10000 + n, created=clock() - timedelta(days=5, minutes=n))
            for n in range(ORDERS)
        )
        yield started


def poll(boxes: Sandboxes, engine: Engine, clock: Clock, progress: SyncProgress) -> int:
    settings = sandbox_settings(boxes, str(engine.url))
    return poll_once(settings, progress=progress, clock=clock, engine=engine, rng=random.Random(1))


def test_first_sync_reports_after_every_page(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """250 orders: three reports (100, 200, 250 orders; pages 1–3), marked baseline, then finish."""
    recorder = Recorder()

    assert poll(boxes, engine, clock, recorder) == 0

    assert recorder.pages == [
        ("sandbox-store", 1, 100, True),
        ("sandbox-store", 2, 200, True),
        ("sandbox-store", 3, 250, True),
    ]
    assert recorder.finished == ["sandbox-store"]


def test_terminal_line_is_rewritten_per_page_and_erased_at_the_end(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """On a terminal: one carriage-return line per page, the last one with the totals, then erased."""
    terminal = FakeTerminal()

    poll(boxes, engine, clock, TerminalProgress(terminal))

    written = terminal.getvalue()
    assert written.count("\r\x1b[2K") == 4  # three pages, then the erase
    assert "sandbox-store: first sync, 250 orders read, 3 pages\r" in written
    assert written.endswith("\r\x1b[2K")


def test_baseline_only_stays_quiet_on_later_polls(
    boxes: Sandboxes, engine: Engine, clock: Clock
) -> None:
    """`notifier run` shows only a store's first sync; a routine poll writes nothing."""
    poll(boxes, engine, clock, Recorder())
    clock.advance(seconds=30)
    terminal = FakeTerminal()

    poll(boxes, engine, clock, TerminalProgress(terminal, baseline_only=True))

    assert terminal.getvalue() == ""


def test_not_a_terminal_means_no_progress_at_all() -> None:
    """Cron, Docker and log files get no progress object, hence not one byte of it."""
    assert terminal_progress(io.StringIO()) is None
    assert isinstance(terminal_progress(FakeTerminal()), TerminalProgress)


def test_the_line_reads_plainly() -> None:
    """Thousands separators, and "1 page" in the singular."""
    assert describe("main", RunCounts(pages=1, orders_seen=40), False) == (
        "main: 40 orders read, 1 page"
    )
    assert describe("main", RunCounts(pages=124, orders_seen=12_345), True) == (
        "main: first sync, 12,345 orders read, 124 pages"
    )
