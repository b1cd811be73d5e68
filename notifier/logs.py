"""structlog set-up: events with stable dotted names, JSON when not on a terminal.

Standard-library loggers (APScheduler, uvicorn, SQLAlchemy, httpx) are routed through structlog's
``ProcessorFormatter``, so their lines get the same time stamp, secret scrubbing and rendering: a
JSON log never has a plain-text line in it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_KEYS = frozenset({"api_key", "access_token", "app_secret", "verify_token", "authorization"})


def _drop_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in SECRET_KEYS & event.keys():
        event[key] = "****"
    return event


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is at the moment of writing (it may be swapped)."""

    def msg(self, message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler for stdlib records that writes to ``stream``, or to the current ``sys.stderr``."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self._fixed or sys.stderr
        super().emit(record)


# Chatty stdlib loggers whose INFO lines repeat what our own events say (every job run, every
# HTTP request); their warnings and errors still come through.
_QUIET_AT_INFO = ("apscheduler", "httpx", "httpcore")


def configure(
    *, stream: TextIO | None = None, json: bool | None = None, level: int = logging.INFO
) -> None:
    """Configure once at start-up (never at import time); no ``stream`` means standard error."""
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    _route_stdlib(stream, renderer, shared, level)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream) if stream else _stderr_logger,
        cache_logger_on_first_use=False,
    )


def _route_stdlib(stream: TextIO | None, renderer: Any, shared: list[Any], level: int) -> None:
    """Give the root logger one handler that renders like structlog's own events (replacing ours
    from an earlier call; handlers others installed, such as pytest's, stay)."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _StdlibHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_AT_INFO:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
