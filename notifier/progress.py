"""A live one-line counter for a store's sync on a terminal: ``main-shop: first sync, 12,300 orders
read, 123 pages``. Silent when the stream is not a terminal (cron, Docker, a log file).

Wix's cursor paging gives no total, so there is nothing to draw a fraction of: a counter that
rewrites its own line (``\\r`` + erase line) says all that is known, without a dependency.
"""

from __future__ import annotations

import threading
from typing import Protocol, TextIO

from notifier.store.orders import RunCounts

_ERASE_LINE = "\r\x1b[2K"


class SyncProgress(Protocol):
    """What a sync reports after each page, and what its caller says when the sync ended."""

    def page(self, store: str, counts: RunCounts, baseline: bool) -> None: ...

    def finish(self, store: str) -> None: ...


class TerminalProgress:
    """Rewrites one line per page and erases it when the sync ends; ``baseline_only`` shows only
    a store's first sync."""

    def __init__(self, stream: TextIO, *, baseline_only: bool = False) -> None:
        self._stream = stream
        self._baseline_only = baseline_only
        self._open: set[str] = set()
        self._lock = threading.Lock()  # the daemon polls stores from several threads

    def page(self, store: str, counts: RunCounts, baseline: bool) -> None:
        if self._baseline_only and not baseline:
            return
        with self._lock:
            # The cursor goes back to the line's start, so a log line written meanwhile replaces
            # the counter instead of being glued to its end.
            self._stream.write(_ERASE_LINE + describe(store, counts, baseline) + "\r")
            self._stream.flush()
            self._open.add(store)

    def finish(self, store: str) -> None:
        with self._lock:
            if store in self._open:
                self._open.discard(store)
                self._stream.write(_ERASE_LINE)
                self._stream.flush()


def describe(store: str, counts: RunCounts, baseline: bool) -> str:
    pages = f"{counts.pages:,} page{'' if counts.pages == 1 else 's'}"
    first = "first sync, " if baseline else ""
    return f"{store}: {first}{counts.orders_seen:,} orders read, {pages}"


def terminal_progress(stream: TextIO, *, baseline_only: bool = False) -> TerminalProgress | None:
    """A progress line on ``stream`` if it is a terminal; None (no output at all) otherwise."""
    return TerminalProgress(stream, baseline_only=baseline_only) if stream.isatty() else None
