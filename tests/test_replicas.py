"""Many replicas on one PostgreSQL (issue 5): three real `notifier run` processes share twenty stores.

Every transition is sent exactly once, polling is spread over the replicas, each store is polled by
one replica at a time, and a replica killed with SIGKILL has its stores taken over once its leases
expire. PostgreSQL only: SQLite serves one process on one machine.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, select

from notifier.bootstrap import LEASE_TTL_SECONDS, build, utc_now
from notifier.config import Secret, Settings
from notifier.sandbox.harness import Sandboxes, free_port, sandbox_settings
from notifier.sandbox.whatsapp_server import WhatsAppSandbox
from notifier.sandbox.wix_server import WixSandbox
from notifier.scheduler import start_scheduler
from notifier.serving import RunningServer, serve_in_thread
from notifier.store import outbox
from notifier.store.engine import make_engine
from notifier.store.migrate import upgrade
from notifier.store.tables import messages, order_snapshots, poll_runs, store_state
from notifier.wix_parse import parse_datetime
from tests.conftest import POSTGRES_URL, drop_schema, new_database_url
from tests.test_crash_safety import tea_order

REPLICAS = 3
STORES = 20
ORDERS_PER_STORE = 25
STEPS = (("paymentStatus", "PAID", "payment"), ("fulfillmentStatus", "FULFILLED", "fulfillment"))
TRANSITIONS = STORES * ORDERS_PER_STORE * len(STEPS)  # 1,000
KILL_AFTER = TRANSITIONS // 3
POLL_INTERVAL = 2.0
TAKEOVER_SLACK = timedelta(seconds=10)
WHATSAPP_SECRETS = {
    "NOTIFIER_WHATSAPP_ACCESS_TOKEN": "sandbox-wa-token",
    "NOTIFIER_WHATSAPP_APP_SECRET": "sandbox-app-secret",
    "NOTIFIER_WHATSAPP_VERIFY_TOKEN": "replicas-verify",
}


def store_name(index: int) -> str:
    return f"shop-{index:02d}"


def order_id(store: int, index: int) -> str:
    return str(uuid.UUID(int=store * 1000 + index + 1))


def _order(store: int, index: int) -> dict[str, Any]:
    return tea_order(order_id(store, index), str(10001 + index), f"+91 98{store:03d} {index:05d}")


class SiteRouter:
    """One loopback Wix host for many sites, chosen by the ``wix-site-id`` header as at wixapis.com.

    Each site is its own ``WixSandbox`` with its own key; an unknown site goes to the first one,
    which refuses it with ``SITE_NOT_FOUND``.
    """

    def __init__(self, sites: list[WixSandbox]) -> None:
        self._first = sites[0]
        self._by_id = {site.site_id: site for site in sites}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        site = self._first
        if scope["type"] == "http":
            wanted = dict(scope["headers"]).get(b"wix-site-id", b"").decode()
            site = self._by_id.get(wanted, self._first)
        await site.app(scope, receive, send)


@dataclass
class World:
    wix: list[WixSandbox]
    whatsapp: WhatsAppSandbox
    servers: list[RunningServer]
    engine: Engine
    database_url: str
    webhook_port: int

    def stop(self) -> None:
        self.whatsapp.close()
        for server in self.servers:
            server.stop()


def start_world(
    database_url: str,
    engine: Engine,
    orders_by_store: list[list[dict[str, Any]]],
    webhook_port: int,
) -> World:
    """One Wix site per store (each with its own key) behind one host, and the WhatsApp sandbox."""
    wix = [
        WixSandbox(api_key=f"key-{store_name(i)}", site_id=f"site-{i:02d}", clock=utc_now)
        for i in range(len(orders_by_store))
    ]
    for site, raws in zip(wix, orders_by_store, strict=True):
        site.add_orders(raws)
    whatsapp = WhatsAppSandbox(
        clock=utc_now,
        webhook_url=f"http://127.0.0.1:{webhook_port}/webhooks/whatsapp",
        webhook_attempts=40,
    )
    servers = [serve_in_thread(SiteRouter(wix)), serve_in_thread(whatsapp.app)]
    return World(wix, whatsapp, servers, engine, database_url, webhook_port)


def write_config(
    path: Path,
    world: World,
    port: int,
    *,
    interval: float = POLL_INTERVAL,
    ambiguous_grace: float = 30,
) -> Path:
    stores = "".join(
        f"""
[[stores]]
name = "{store_name(i)}"
site_id = "{site.site_id}"
wix_base_url = "{world.servers[0].url}"
poll_interval_seconds = {interval}
overlap_seconds = 120
default_country = "IN"
quiet_hours_enabled = false
request_timeout_seconds = 2
"""
        for i, site in enumerate(world.wix)
    )
    path.write_text(
        f"""
database_url = "{world.database_url}"

[web]
host = "127.0.0.1"
port = {port}

[dispatch]
interval_seconds = 0.2
recipient_spacing_seconds = 0
batch_size = 25
ambiguous_grace_seconds = {ambiguous_grace}

[whatsapp]
base_url = "{world.servers[1].url}"
api_version = "v24.0"
phone_number_id = "{world.whatsapp.phone_number_id}"
waba_id = "{world.whatsapp.waba_id}"
timeout_seconds = 2
{stores}""",
        encoding="utf-8",
    )
    return path


def wix_keys(world: World) -> dict[str, str]:
    return {
        f"NOTIFIER_WIX_API_KEY_{store_name(i).upper().replace('-', '_')}": site.api_key
        for i, site in enumerate(world.wix)
    }


class Replica:
    """One `notifier run` subprocess with its own web port and its own JSON log file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        self.log = log
        self._args = [sys.executable, "-m", "notifier.cli", "--config", str(config), "run"]
        self._env = {**os.environ, **WHATSAPP_SECRETS, **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self._args, env=self._env, stdout=log, stderr=log)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if f'"{name}"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                found.append(event)
        return found

    def polls(self) -> list[tuple[str, datetime]]:
        """(store, finished at) of every ``poll.finished`` this replica logged."""
        result = []
        for event in self.events("poll.finished"):
            stamp = parse_datetime(event.get("timestamp"))
            assert stamp is not None
            result.append((str(event["store"]), stamp))
        return result


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def baselines_done(engine: Engine, stores: int) -> bool:
    with engine.connect() as conn:
        done = conn.execute(
            select(store_state.c.store).where(store_state.c.baseline_at.is_not(None))
        ).all()
    return len(done) == stores


def settled(engine: Engine, expected: set[str]) -> bool:
    with engine.connect() as conn:
        rows = conn.execute(select(messages.c.dedupe_key, messages.c.status)).all()
    done = {key for key, status in rows if status in ("accepted", "sent", "delivered", "read")}
    pending = [s for _, s in rows if s in ("queued", "claimed", "sending", "ambiguous")]
    return expected <= done and not pending


def status_counts(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(select(messages.c.status)).scalars())


def lease_owners(engine: Engine) -> dict[str, tuple[str | None, datetime | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(store_state.c.store, store_state.c.lease_owner, store_state.c.lease_expires_at)
        ).all()
    return {store: (owner, expires) for store, owner, expires in rows}


def sends_per_key(world: World) -> Counter[str]:
    with world.engine.connect() as conn:
        key_of = dict(conn.execute(select(messages.c.id, messages.c.dedupe_key)).all())
    return Counter(
        key_of.get(int(m.callback_data or 0), "?") for m in world.whatsapp.sent_messages()
    )


def handovers_per_store(polls: dict[int, list[tuple[str, datetime]]]) -> dict[str, int]:
    """How often each store's poller changed, in the order the polls finished."""
    timeline = sorted((at, store, replica) for replica, ps in polls.items() for store, at in ps)
    last: dict[str, int] = {}
    changes: Counter[str] = Counter()
    for _, store, replica in timeline:
        if store in last and last[store] != replica:
            changes[store] += 1
        last[store] = replica
    return {store: changes[store] for store in last}


def first_run_after(engine: Engine, store: str, moment: datetime) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(
            select(poll_runs.c.started_at)
            .where(poll_runs.c.store == store, poll_runs.c.started_at > moment)
            .order_by(poll_runs.c.started_at)
            .limit(1)
        ).scalar()


def overlapping_runs(engine: Engine, killed_at: datetime) -> list[str]:
    """Stores with two poll runs open at once. A run never finished was cut short by a kill: the
    one mid-run at ``killed_at``, or the final one (it then ends where it started)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(poll_runs.c.store, poll_runs.c.started_at, poll_runs.c.finished_at).order_by(
                poll_runs.c.store, poll_runs.c.started_at
            )
        ).all()
    runs: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for store, started, finished in rows:
        runs[store].append((started, finished or max(started, killed_at)))
    return sorted(
        f"{store}: {a} and {b}"
        for store, spans in runs.items()
        for a, b in itertools.pairwise(spans)
        if b[0] < a[1]
    )


class Customers:
    """Moves every order of every store to paid, then to shipped, from a background thread.

    An order moves on only once a snapshot shows its previous state (a state that lives for less
    than one poll is no transition anyone could notify).
    """

    def __init__(
        self, world: World, stores: int, orders_per_store: int, rng: random.Random
    ) -> None:
        self._world, self._rng = world, rng
        self._progress = {(s, n): 0 for s in range(stores) for n in range(orders_per_store)}
        self.expected: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.expected)

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while self._advance_some():
            time.sleep(0.2)

    def _advance_some(self) -> bool:
        pending = [key for key, step in self._progress.items() if step < len(STEPS)]
        if not pending:
            return False
        ready = self._observed(pending)
        for key in self._rng.sample(ready, min(len(ready), 20)):
            self._advance(*key)
        return True

    def _observed(self, pending: list[tuple[int, int]]) -> list[tuple[int, int]]:
        with self._world.engine.connect() as conn:
            rows = conn.execute(
                select(
                    order_snapshots.c.store,
                    order_snapshots.c.order_id,
                    order_snapshots.c.payment_status,
                    order_snapshots.c.fulfillment_status,
                )
            ).all()
        seen = {(store, oid): (paid, shipped) for store, oid, paid, shipped in rows}
        ready = []
        for store, index in pending:
            step = self._progress[(store, index)]
            state = seen.get((store_name(store), order_id(store, index)))
            if step == 0 or (state is not None and _shows(state, step)):
                ready.append((store, index))
        return ready

    def _advance(self, store: int, index: int) -> None:
        field, value, kind = STEPS[self._progress[(store, index)]]
        oid = order_id(store, index)
        if field == "paymentStatus":
            self._world.wix[store].set_payment(oid, value)
        else:
            self._world.wix[store].set_fulfillment(oid, value)
        with self._lock:
            self.expected.add(f"{store_name(store)}:{oid}:{kind}:{value}")
        self._progress[(store, index)] += 1


def _shows(state: tuple[str | None, str | None], step: int) -> bool:
    field, value, _ = STEPS[step - 1]
    return (state[0] if field == "paymentStatus" else state[1]) == value


@contextmanager
def shared_database(backend: str, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A migrated database and the URL other processes reach it by."""
    url, extra = new_database_url(backend, tmp_path)
    schema = extra.pop("schema", None)
    # The daemons are other processes: the schema travels in the URL as a libpq option.
    shared = f"{url}?options={quote(f'-csearch_path={schema}')}" if schema else url
    engine = make_engine(shared)
    upgrade(engine)
    try:
        yield shared, engine
    finally:
        engine.dispose()
        if schema:
            drop_schema(str(schema))


@pytest.fixture
def pg_database(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    with shared_database("postgresql", tmp_path) as database:
        yield database


@pytest.fixture
def any_database(backend: str, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    with shared_database(backend, tmp_path) as database:
        yield database


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not POSTGRES_URL, reason="replicas need PostgreSQL (NOTIFIER_TEST_POSTGRES_URL)"
)
def test_three_replicas_share_twenty_stores_and_survive_a_kill(
    pg_database: tuple[str, Engine], tmp_path: Path
) -> None:
    """Three `notifier run` replicas, 20 stores, 1,000 transitions: exactly one message per
    transition, every replica polls, no store is polled by two replicas at once, and the stores of
    a replica killed mid-run are taken over only after its lease expired, within the lease TTL."""
    database_url, engine = pg_database
    ports = [free_port() for _ in range(REPLICAS)]
    # Status webhooks reach replica 0, which survives; replica `victim` is the one killed.
    orders_by_store = [[_order(s, n) for n in range(ORDERS_PER_STORE)] for s in range(STORES)]
    world = start_world(database_url, engine, orders_by_store, webhook_port=ports[0])
    replicas = [
        Replica(
            write_config(tmp_path / f"replica{i}.toml", world, ports[i]),
            tmp_path / f"replica{i}.log",
            wix_keys(world),
        )
        for i in range(REPLICAS)
    ]
    try:
        for replica in replicas:
            replica.start()
        assert wait_for(lambda: baselines_done(engine, STORES), 60), "baselines never finished"
        # The last replica to start gets its share from the others within a heartbeat or two.
        assert wait_for(lambda: all(r.polls() for r in replicas), 60), "a replica never polled"
        customers = Customers(world, STORES, ORDERS_PER_STORE, random.Random(5))
        customers.start()
        assert wait_for(lambda: customers.done >= KILL_AFTER, 120), "transitions stalled"

        owners = lease_owners(engine)
        victim = max(
            range(1, REPLICAS),
            key=lambda i: sum(f"-{replicas[i].pid}-" in (o or "") for o, _ in owners.values()),
        )
        killed_pid = replicas[victim].pid
        replicas[victim].kill()
        killed_at = utc_now()
        orphans = {s: exp for s, (o, exp) in owners.items() if f"-{killed_pid}-" in (o or "")}

        finished = customers.finish(240)
        all_settled = wait_for(lambda: settled(engine, customers.expected), 480)
    finally:
        for replica in replicas:
            replica.kill()
        world.stop()

    sends = sends_per_key(world)
    polls = {i: r.polls() for i, r in enumerate(replicas)}
    before_kill = {i: [p for p in ps if p[1] < killed_at] for i, ps in polls.items()}
    handovers = handovers_per_store(before_kill)
    takeovers = {store: first_run_after(engine, store, killed_at) for store in orphans}
    print(
        f"\nreplicas: {len(customers.expected)} transitions, {sum(sends.values())} sends; "
        f"polls per replica before the kill {[len(ps) for ps in before_kill.values()]}, "
        f"{sum(handovers.values())} handovers; "
        f"replica {victim} held {len(orphans)} stores, taken over "
        + ", ".join(f"{(at - killed_at).total_seconds():.1f}s" for at in takeovers.values() if at)
        + f" after the kill (lease TTL {LEASE_TTL_SECONDS}s)"
    )
    assert finished, "the customers' script did not finish"
    assert all_settled, f"the outbox never drained: {status_counts(engine)}"
    assert len(customers.expected) == TRANSITIONS
    assert {k: n for k, n in sends.items() if n != 1} == {}
    assert set(sends) == customers.expected
    assert all(before_kill[i] for i in range(REPLICAS)), "a replica never polled"
    # A store changes hands at most once before the kill: when a later replica takes its share.
    assert {s: n for s, n in handovers.items() if n > 1} == {}
    assert overlapping_runs(engine, killed_at) == []
    assert orphans, "the killed replica held no store"
    assert None not in takeovers.values(), f"stores never taken over: {takeovers}"
    for store, expired_at in orphans.items():
        taken = takeovers[store]
        assert expired_at is not None
        assert taken is not None
        assert taken >= expired_at, f"{store} was taken before its lease expired"
        # Liveness, not speed: a survivor's next poll tick after expiry, with room for a busy box.
        assert taken <= expired_at + TAKEOVER_SLACK, f"{store} waited past its lease TTL"


BR20_INTERVAL = 1.0


def poll_run_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(poll_runs.c.id)).all())


@pytest.mark.timeout(180)
def test_br20_two_instances_with_schedulers_poll_once_and_send_once(
    any_database: tuple[str, Engine], tmp_path: Path
) -> None:
    """BR-20: two `notifier run` instances with schedulers on one database and one Wix: 10150 flips
    to PAID, and over the following polls exactly one instance polls (one poll per interval
    cluster-wide), one message goes out, and the other instance logs that it skipped."""
    database_url, engine = any_database
    ports = [free_port(), free_port()]
    world = start_world(database_url, engine, [[_order(0, 148), _order(0, 149)]], ports[0])
    replicas = [
        Replica(
            write_config(tmp_path / f"br20-{i}.toml", world, ports[i], interval=BR20_INTERVAL),
            tmp_path / f"br20-{i}.log",
            wix_keys(world),
        )
        for i in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()
        assert wait_for(lambda: baselines_done(engine, 1), 60), "no baseline"
        assert wait_for(lambda: all(r.events("scheduler.started") for r in replicas), 60), (
            "an instance never started its scheduler"
        )
        world.wix[0].set_payment(order_id(0, 149), "PAID")
        assert wait_for(lambda: len(world.whatsapp.sent_messages()) >= 1, 60), "nothing sent"
        runs_after_send = poll_run_count(engine)
        assert wait_for(lambda: poll_run_count(engine) >= runs_after_send + 2, 30)
        # Both instances must have had the chance to poll after the flip, twice over.
        time.sleep(2 * BR20_INTERVAL)
    finally:
        for replica in replicas:
            replica.kill()
        world.stop()

    sent = world.whatsapp.sent_messages()
    finished = [len(r.events("poll.finished")) for r in replicas]
    skipped = [len(r.events("poll.skipped_not_leader")) for r in replicas]
    leader = finished.index(max(finished))
    assert [m.body_params[1] for m in sent] == ["10150"]
    assert finished[1 - leader] == 0, f"both instances polled: {finished}"
    assert skipped[1 - leader] > 0, "the instance without the lease did not log its skip"
    # Every run in the database is one the leader logged (bar one cut short by the final kill).
    assert poll_run_count(engine) - finished[leader] in (0, 1)
    assert overlapping_runs(engine, utc_now()) == []


ISOLATION_INTERVAL = 0.5
ISOLATION_WINDOW = 6.0
HUNG_STORES = 20  # twice what a shared pool of ten threads could absorb


def _settings_for(
    world: World, database_url: str, stores: list[tuple[str, int, str | None]]
) -> Settings:
    """Settings of ``(name, site, key)`` stores; a key of None is the site's real key."""
    boxes = Sandboxes(world.wix[0], world.whatsapp, world.servers[0], world.servers[1])
    base = sandbox_settings(boxes, database_url, request_timeout_seconds=2)
    return replace(
        base,
        stores=tuple(
            replace(
                base.stores[0],
                name=name,
                site_id=world.wix[site].site_id,
                api_key=Secret(key or world.wix[site].api_key),
                poll_interval_seconds=ISOLATION_INTERVAL,
            )
            for name, site, key in stores
        ),
    )


def _run_for(
    settings: Settings, engine: Engine, seconds: float, during: Callable[[], None]
) -> None:
    """Run the real scheduler of ``settings`` for ``seconds``, calling ``during`` half-way."""
    runtime = build(settings, engine=engine)
    runtime.refresh_templates()
    scheduler = start_scheduler(runtime, now=utc_now())
    try:
        time.sleep(seconds / 2)
        during()
        time.sleep(seconds / 2)
    finally:
        scheduler.shutdown(wait=True)
        runtime.close()


def ok_polls(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(
            conn.execute(select(poll_runs.c.store).where(poll_runs.c.ok.is_(True))).scalars()
        )


def failed_polls(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(
            conn.execute(select(poll_runs.c.store).where(poll_runs.c.ok.is_(False))).scalars()
        )


@pytest.mark.timeout(120)
def test_failing_stores_never_slow_the_healthy_ones(
    any_database: tuple[str, Engine], tmp_path: Path
) -> None:
    """Twenty stores whose Wix hangs, one with a bad key and one answering 429: the two healthy
    stores poll about as often as when they run alone, and a change in a healthy store is sent
    while the others are still failing."""
    database_url, engine = any_database
    sites = 2 + HUNG_STORES + 2
    world = start_world(
        database_url, engine, [[_order(s, n) for n in range(3)] for s in range(sites)], free_port()
    )
    hung = list(range(2, 2 + HUNG_STORES))
    bad_key, throttled = 2 + HUNG_STORES, 3 + HUNG_STORES
    try:
        _run_for(
            _settings_for(world, database_url, [("alone-0", 0, None), ("alone-1", 1, None)]),
            engine,
            ISOLATION_WINDOW,
            lambda: None,
        )
        for index in hung:
            world.wix[index].hang_next(10**6)
        world.wix[throttled].fail_next(429, 10**6, retry_after=30)
        stores = [
            ("good-0", 0, None),
            ("good-1", 1, None),
            *((f"hung-{s}", s, None) for s in hung),
            ("bad-key", bad_key, "revoked-key"),
            ("throttled", throttled, None),
        ]
        sent_while_failing: list[str] = []

        def change_a_healthy_order() -> None:
            world.wix[0].set_payment(order_id(0, 1), "PAID")

        def check_sent() -> None:
            sent_while_failing.extend(m.body_params[1] for m in world.whatsapp.sent_messages())

        _run_for(
            _settings_for(world, database_url, stores),
            engine,
            ISOLATION_WINDOW,
            change_a_healthy_order,
        )
        check_sent()
        still_failing = failed_polls(engine)
    finally:
        for wix in world.wix:
            wix.release()
        world.stop()

    ok = ok_polls(engine)
    alone = min(ok["alone-0"], ok["alone-1"])
    print(
        f"\nisolation: healthy stores alone {ok['alone-0']}, {ok['alone-1']} polls; beside "
        f"{HUNG_STORES} hung, a bad key and a 429: {ok['good-0']}, {ok['good-1']} polls"
    )
    assert alone >= 4, "the healthy-only run hardly polled"
    assert min(ok["good-0"], ok["good-1"]) * 4 >= alone * 3
    assert sent_while_failing == ["10002"]
    assert not any(ok[f"hung-{s}"] for s in hung)
    assert ok["bad-key"] == ok["throttled"] == 0
    assert still_failing["bad-key"] > 0
    assert still_failing["throttled"] > 0


def test_a_replica_started_later_gets_its_fair_share(
    any_database: tuple[str, Engine], tmp_path: Path
) -> None:
    """A replica alone takes all four stores; once a second one is heard from, the first gives two
    back on its next heartbeat, the second takes exactly those, and neither polls the other's."""
    database_url, engine = any_database
    world = start_world(database_url, engine, [[_order(s, 0)] for s in range(4)], free_port())
    settings = _settings_for(world, database_url, [(store_name(s), s, None) for s in range(4)])
    first, second = build(settings, engine=engine), build(settings, engine=engine)
    try:
        first.renew_leases()
        assert all(first.sync(store) is not None for store in first.stores)
        second.renew_leases()
        assert [second.sync(store) for store in second.stores] == [None] * 4

        assert first.renew_leases() == 2

        taken = {s.settings.name for s in second.stores if second.sync(s) is not None}
        kept = {s.settings.name for s in first.stores if first.sync(s) is not None}
        assert len(taken) == 2
        assert kept == {store_name(s) for s in range(4)} - taken
    finally:
        first.close()
        second.close()
        world.stop()


def test_of_two_dispatchers_holding_one_row_only_one_sends_it(engine: Engine) -> None:
    """A slow replica's claim requeued as stale and claimed again by another: both hold the row,
    and only the first to mark it ``sending`` may send; the other learns it lost the row."""
    now = utc_now()
    with engine.begin() as conn:
        message_id = outbox.enqueue(
            conn,
            store="shop",
            dedupe_key="shop:o1:payment:PAID",
            kind="template",
            payload={"name": "order_payment_received", "language": "en", "body": []},
            now=now,
            recipient="+919876500001",
        )
        [slow] = outbox.claim_due(conn, now=now, limit=10)
        later = now + timedelta(seconds=60)
        assert outbox.recover_stale_claims(conn, older_than=later, now=later) == 1
        [fast] = outbox.claim_due(conn, now=later, limit=10)
        assert slow.id == fast.id == message_id
        assert outbox.mark_sending(conn, [fast.id], now=later) == {message_id}
        assert outbox.mark_sending(conn, [slow.id], now=later) == set()
