"""Composition root: build every adapter and use case from settings, in one place.

Tests and the demo call ``build`` too, handing in a clock, an RNG or HTTP transports; nothing is
constructed at import time.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import httpx
import structlog
from sqlalchemy import Connection, Engine

from notifier.config import Settings, StoreSettings
from notifier.dispatch import Dispatcher
from notifier.dispatch_outcomes import DispatchResult
from notifier.domain import TemplateInfo
from notifier.guard import SendGuard, alert_template_drift, resolve_budget
from notifier.lookup import Responder, StoreLookup
from notifier.pricing import DEFAULT_RATE_CARD_PACKAGE, DEFAULT_RATE_CARD_RESOURCE, RateCard
from notifier.progress import SyncProgress
from notifier.quiet import QuietHours
from notifier.ratelimit import SlidingWindow
from notifier.retry import RetryPolicy
from notifier.store import leases, registry
from notifier.store.engine import make_engine
from notifier.sync import SyncResult, sync_store
from notifier.webhooks import WriteTurns, process_pending_receipts
from notifier.whatsapp import WhatsAppClient
from notifier.wix import WixClient

log = structlog.get_logger("notifier.bootstrap")


# A store's poll lease lives this long unless renewed; the heartbeat renews it three times as often,
# so two missed beats still hold it. A killed replica's stores are polled again within
# LEASE_TTL_SECONDS plus one poll interval of the replica that takes them over.
LEASE_TTL_SECONDS = 15
LEASE_HEARTBEAT_SECONDS = LEASE_TTL_SECONDS / 3
LEASE_TTL = timedelta(seconds=LEASE_TTL_SECONDS)


def instance_name() -> str:
    """Who holds a lease: readable in the database, unique per process."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def utc_now() -> datetime:
    """The one real clock; everything else receives ``now`` or a clock."""
    return datetime.now(UTC)


@dataclass
class StoreRuntime:
    settings: StoreSettings
    wix: WixClient


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    clock: Callable[[], datetime]
    stores: list[StoreRuntime]
    whatsapp: WhatsAppClient
    rate_cards: dict[str, RateCard]
    dispatcher: Dispatcher
    instance_id: str = field(default_factory=instance_name)
    progress: SyncProgress | None = None  # a terminal's live line for big syncs
    responder: Responder = field(init=False)
    _polling: set[str] = field(init=False, default_factory=set)
    _polling_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.responder = Responder(
            self.engine,
            [StoreLookup(s.settings, s.wix) for s in self.stores],
            self.settings.lookup,
            self.clock,
            on_queued=self.dispatch,
        )

    def sync(self, store: StoreRuntime) -> SyncResult | None:
        """Poll one store if this replica holds (or can take) its lease; None when another does (BR-20)."""
        name = store.settings.name
        with self._polling_lock:  # before the lease, so the heartbeat never sheds a running poll
            self._polling.add(name)
        try:
            with self.engine.begin() as conn:
                leader = self._take_lease(conn, name, self.clock())
            if not leader:
                log.info("poll.skipped_not_leader", store=name, instance=self.instance_id)
                return None
            return self._sync_leased(store)
        finally:
            with self._polling_lock:
                self._polling.discard(name)

    def _take_lease(self, conn: Connection, name: str, now: datetime) -> bool:
        """Renew our lease, or take a free or expired one while we hold less than a fair share."""
        held = leases.held_by(conn, self.instance_id, now=now)
        if name not in held:
            share = leases.fair_share(conn, len(self.stores), now=now, ttl=LEASE_TTL)
            if len(held) >= share:
                return False
        return leases.acquire(conn, name, self.instance_id, now=now, ttl=LEASE_TTL)

    def _sync_leased(self, store: StoreRuntime) -> SyncResult:
        if self.progress is None:
            return sync_store(store.settings, store.wix, self.engine, self.clock)
        try:
            return sync_store(
                store.settings, store.wix, self.engine, self.clock, self.progress.page
            )
        finally:
            self.progress.finish(store.settings.name)

    def sync_all(self) -> list[SyncResult]:
        results = (self.sync(store) for store in self.stores)
        return [r for r in results if r is not None]

    def renew_leases(self) -> int:
        """The heartbeat: say this replica is alive, keep its leases for another TTL, and let go
        of stores beyond its fair share (idle ones) for a replica that holds fewer; returns how
        many stores it keeps."""
        now = self.clock()
        with self._polling_lock, self.engine.begin() as conn:
            leases.announce(conn, self.instance_id, now=now)
            leases.renew_all(conn, self.instance_id, now=now, ttl=LEASE_TTL)
            held = leases.held_by(conn, self.instance_id, now=now)
            share = leases.fair_share(conn, len(self.stores), now=now, ttl=LEASE_TTL)
            shed = [name for name in held[share:] if name not in self._polling]
            for name in shed:
                leases.release(conn, name, self.instance_id)
        if shed:
            log.info("leases.shed", stores=shed, share=share, instance=self.instance_id)
        return len(held) - len(shed)

    def release_leases(self) -> None:
        with self.engine.begin() as conn:
            for store in self.stores:
                leases.release(conn, store.settings.name, self.instance_id)
            leases.forget(conn, self.instance_id)

    def dispatch(self) -> DispatchResult:
        return self.dispatcher.dispatch_due()

    def process_webhooks(self, turns: WriteTurns | None = None) -> int:
        return process_pending_receipts(
            self.engine, self.rate_cards, self.clock, self.responder.handle, turns=turns
        )

    def refresh_templates(self) -> list[str]:
        """Fetch the business account's templates; returns every configured pair that is missing."""
        infos = self.whatsapp.list_templates()
        with self.engine.begin() as conn:
            registry.replace_templates(conn, infos, now=self.clock())
            self._alert_drifted(conn, infos)
        available = {(t.name, t.language) for t in infos}
        missing = sorted(
            f"{store.settings.name}: template {rule.template!r} in language {language!r}"
            for store in self.stores
            for rule in store.settings.rules
            for language in rule.languages
            if (rule.template, language) not in available
        )
        for problem in missing:
            log.error("templates.missing", problem=problem)
        log.info("templates.refreshed", count=len(infos), missing=len(missing))
        return missing

    def _alert_drifted(self, conn: Connection, infos: list[TemplateInfo]) -> None:
        """A configured template re-categorised, paused or disabled alerts now, before any send."""
        configured = {
            (rule.template, language)
            for store in self.stores
            for rule in store.settings.rules
            for language in rule.languages
        }
        for info in infos:
            if (info.name, info.language) in configured:
                alert_template_drift(conn, info, now=self.clock())

    def close(self) -> None:
        self.release_leases()
        for store in self.stores:
            store.wix.close()
        self.whatsapp.close()
        self.engine.dispose()


def load_rate_card(settings: Settings, store: StoreSettings) -> RateCard:
    """The shipped card, then the deployment's override, then the store's own (later wins)."""
    text = (resources.files(DEFAULT_RATE_CARD_PACKAGE) / DEFAULT_RATE_CARD_RESOURCE).read_text(
        "utf-8"
    )
    card = RateCard.from_toml(text, source="shipped rate card")
    for path in (settings.rate_card_path, store.rate_card_path):
        if path is not None:
            card = card.merged(RateCard.from_toml(Path(path).read_text("utf-8"), source=str(path)))
    return card


def quiet_hours_of(store: StoreSettings) -> QuietHours:
    return QuietHours(store.zone, store.quiet_start, store.quiet_end, store.quiet_hours_enabled)


def build(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    rng: random.Random | None = None,
    engine: Engine | None = None,
    wix_transport: httpx.BaseTransport | None = None,
    whatsapp_transport: httpx.BaseTransport | None = None,
) -> Runtime:
    engine = engine or make_engine(settings.database_url)
    stores = [
        StoreRuntime(
            s,
            WixClient(
                base_url=s.wix_base_url,
                api_key=s.api_key.reveal(),
                site_id=s.site_id,
                timeout=s.request_timeout_seconds,
                transport=wix_transport,
            ),
        )
        for s in settings.stores
    ]
    wa = settings.whatsapp
    whatsapp = WhatsAppClient(
        base_url=wa.base_url,
        api_version=wa.api_version,
        phone_number_id=wa.phone_number_id,
        waba_id=wa.waba_id,
        access_token=wa.access_token.reveal(),
        timeout=wa.timeout_seconds,
        transport=whatsapp_transport,
    )
    rate_cards = {s.name: load_rate_card(settings, s) for s in settings.stores}
    dispatch = settings.dispatch
    dispatcher = Dispatcher(
        engine=engine,
        sender=whatsapp,
        rate_cards=rate_cards,
        default_languages={s.name: s.default_language for s in settings.stores},
        clock=clock,
        rng=rng or random.Random(),
        policy=RetryPolicy(max_attempts=dispatch.max_attempts),
        recipient_spacing=timedelta(seconds=dispatch.recipient_spacing_seconds),
        stop_pause=timedelta(seconds=dispatch.stop_pause_seconds),
        batch_size=dispatch.batch_size,
        quiet_hours={s.name: quiet_hours_of(s) for s in settings.stores},
        throughput=SlidingWindow(rate=dispatch.messages_per_second),
        concurrent_sends=dispatch.concurrent_sends,
        stale_sending=timedelta(seconds=2 * wa.timeout_seconds + 5),
        ambiguous_grace=timedelta(seconds=dispatch.ambiguous_grace_seconds),
        unreachable_skip=timedelta(days=dispatch.unreachable_skip_days),
        guard=SendGuard(
            engine,
            budgets={
                s.name: resolve_budget(
                    s.monthly_budget,
                    rate_cards[s.name],
                    store=s.name,
                    country=s.default_country,
                    on=clock().date(),
                )
                for s in settings.stores
                if s.monthly_budget
            },
            recheck=timedelta(seconds=wa.template_recheck_seconds),
        ),
    )
    return Runtime(settings, engine, clock, stores, whatsapp, rate_cards, dispatcher)
