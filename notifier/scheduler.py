"""The only module that imports APScheduler: a dumb in-process alarm clock.

Memory job store, fixed job ids, ``max_instances=1`` and ``coalesce=True``: a slow poll is never run
twice at once and missed runs collapse into one. Every real state lives in the database.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from notifier.bootstrap import LEASE_HEARTBEAT_SECONDS, Runtime, StoreRuntime

log = structlog.get_logger("notifier.scheduler")

WEBHOOK_SWEEP_SECONDS = 2  # how soon a --role poller applies what the web process stored
MAX_SWEEP_PASSES = 100  # up to 10,000 receipts a sweep
HOUSEKEEPING_THREADS = 4  # dispatch, webhooks, templates: one each, and a spare
# One poll thread per store (a hung store blocks only itself), up to a bound on threads.
MAX_POLL_THREADS = 64


def start_scheduler(
    runtime: Runtime, *, now: datetime, rng: random.Random | None = None
) -> BackgroundScheduler:
    """Start the poll job of every store, the dispatch job and the housekeeping jobs.

    Each store's first poll comes at a random point of its first interval, so replicas started
    together take different stores' leases; the lease heartbeat then evens out what each holds
    (a replica started later gets its fair share from the others).
    """
    jitter = rng or random.Random()
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
        # Pools apart, so a store whose Wix hangs or throttles holds only its own poll thread:
        # other stores' polls, the dispatcher and the lease heartbeat keep their schedule.
        executors={
            "default": ThreadPoolExecutor(HOUSEKEEPING_THREADS),
            "polls": ThreadPoolExecutor(max(1, min(len(runtime.stores), MAX_POLL_THREADS))),
            "leases": ThreadPoolExecutor(1),
        },
    )
    scheduler.add_job(
        _guarded(runtime.renew_leases, "leases"),
        "interval",
        seconds=LEASE_HEARTBEAT_SECONDS,
        id="leases",
        executor="leases",
        next_run_time=now,  # counted among the live replicas before its first poll
    )
    for store in runtime.stores:
        scheduler.add_job(
            _poll,
            "interval",
            seconds=store.settings.poll_interval_seconds,
            id=f"poll:{store.settings.name}",
            executor="polls",
            args=[runtime, store],
            next_run_time=now
            + timedelta(seconds=jitter.uniform(0, store.settings.poll_interval_seconds)),
        )
    scheduler.add_job(
        _guarded(runtime.dispatch, "dispatch"),
        "interval",
        seconds=runtime.settings.dispatch.interval_seconds,
        id="dispatch",
        next_run_time=now,
    )
    scheduler.add_job(
        _guarded(runtime.refresh_templates, "templates"),
        "interval",
        seconds=runtime.settings.whatsapp.template_recheck_seconds,
        id="templates",
    )
    scheduler.add_job(
        _guarded(lambda: drain_webhooks(runtime), "webhooks"),
        "interval",
        seconds=WEBHOOK_SWEEP_SECONDS,
        id="webhooks",
    )
    scheduler.start()
    log.info("scheduler.started", stores=len(runtime.stores))
    return scheduler


def _poll(runtime: Runtime, store: StoreRuntime) -> None:
    try:
        runtime.sync(store)
    except Exception:  # a crashed job must not kill the scheduler; the next interval tries again
        log.exception("job.crashed", job=f"poll:{store.settings.name}")


def drain_webhooks(runtime: Runtime) -> int:
    """Apply stored receipts until none is left (one pass takes at most a batch of 100): the
    sweep behind the web process's worker, and all a ``--role poller`` process has."""
    total = 0
    for _ in range(MAX_SWEEP_PASSES):  # bounded: a receipt that keeps failing cannot spin it
        handled = runtime.process_webhooks()
        if not handled:
            break
        total += handled
    return total


def _guarded(job: Callable[[], object], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:
            log.exception("job.crashed", job=name)

    return run
