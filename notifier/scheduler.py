"""The only module that imports APScheduler: a dumb in-process alarm clock.

Memory job store, fixed job ids, ``max_instances=1`` and ``coalesce=True``: a slow poll is never run
twice at once and missed runs collapse into one. Every real state lives in the database.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from notifier.bootstrap import Runtime, StoreRuntime

log = structlog.get_logger("notifier.scheduler")

WEBHOOK_SWEEP_SECONDS = 5


def start_scheduler(
    runtime: Runtime, *, now: datetime, rng: random.Random | None = None
) -> BackgroundScheduler:
    """Start the poll job of every store, the dispatch job and the housekeeping jobs.

    Each store's first poll comes at a random point of its first interval, so replicas started
    together take different stores' leases (and keep them) instead of one replica taking all.
    """
    jitter = rng or random.Random()
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
    )
    for store in runtime.stores:
        scheduler.add_job(
            _poll,
            "interval",
            seconds=store.settings.poll_interval_seconds,
            id=f"poll:{store.settings.name}",
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
        _guarded(runtime.process_webhooks, "webhooks"),
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


def _guarded(job: Callable[[], object], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:
            log.exception("job.crashed", job=name)

    return run
