"""Start-up checks and the two ways to run: the long-lived daemon and a single pass for cron."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import structlog
import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette

from notifier.bootstrap import Runtime, build
from notifier.config import Settings
from notifier.errors import NotifierError
from notifier.progress import SyncProgress
from notifier.scheduler import start_scheduler
from notifier.store.engine import make_engine
from notifier.store.migrate import require_head
from notifier.web import create_app

log = structlog.get_logger("notifier.daemon")

ROLES = ("all", "poller", "web")


class StartupError(NotifierError):
    """The daemon cannot do its job safely and says why before doing anything."""


def prepare(settings: Settings, *, engine: Engine | None = None, **build_kwargs: Any) -> Runtime:
    """Build the runtime, refusing a stale schema (before anything else exists) or missing templates (BR-10)."""
    engine = engine or make_engine(settings.database_url)
    try:
        require_head(engine)
    except Exception:
        engine.dispose()
        raise
    runtime = build(settings, engine=engine, **build_kwargs)
    try:
        missing = runtime.refresh_templates()
    except Exception:
        runtime.close()
        raise
    if missing:
        runtime.close()
        raise StartupError(
            "configured templates are missing from the WhatsApp business account:\n"
            + "\n".join(f"- {m}" for m in missing)
        )
    return runtime


def daemon_app(runtime: Runtime, role: str) -> Starlette:
    """The web app of ``notifier run``; roles all/poller also start the scheduler with it."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")

    def start_background() -> Callable[[], None]:
        scheduler = start_scheduler(runtime, now=runtime.clock())
        return lambda: scheduler.shutdown(wait=True)

    return create_app(runtime, start_background=start_background if role != "web" else None)


def run_daemon(
    settings: Settings, *, role: str = "all", progress: SyncProgress | None = None
) -> int:
    _exit_cleanly_on_sigterm()
    runtime = prepare(settings)
    runtime.progress = progress
    try:
        if role == "poller":
            return _run_poller_only(runtime)
        web = settings.web
        log.info(
            "daemon.starting", role=role, host=web.host, port=web.port, stores=len(runtime.stores)
        )
        uvicorn.run(  # log_config=None: uvicorn's lines go through our (JSON) logging
            daemon_app(runtime, role),
            host=web.host,
            port=web.port,
            log_level="warning",
            log_config=None,
        )
        return 0
    finally:
        runtime.close()


def _exit_cleanly_on_sigterm() -> None:
    """uvicorn shuts down on SIGTERM and then raises the signal again; with the default handler
    the process died right there, before ``runtime.close`` handed the store leases over."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _run_poller_only(runtime: Runtime) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    scheduler = start_scheduler(runtime, now=runtime.clock())
    log.info("daemon.starting", role="poller", stores=len(runtime.stores))
    stop.wait()
    scheduler.shutdown(wait=True)
    return 0


def poll_once(
    settings: Settings, *, progress: SyncProgress | None = None, **build_kwargs: Any
) -> int:
    """One sync of every store, then dispatch what is due; exit 1 if any store failed."""
    runtime = prepare(settings, **build_kwargs)
    runtime.progress = progress
    try:
        results = runtime.sync_all()
        sent = 0
        while True:
            outcome = runtime.dispatch()
            sent += outcome.sent
            if outcome.sent + outcome.failed + outcome.skipped + outcome.retried == 0:
                break
        failed = [r for r in results if not r.ok]
        log.info("poll_once.finished", stores=len(results), failed_stores=len(failed), sent=sent)
        return 1 if failed else 0
    finally:
        runtime.close()
