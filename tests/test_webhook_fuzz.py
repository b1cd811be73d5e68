"""Fuzz the running webhook endpoint over HTTP with well over 10,000 generated and mutated bodies.

Hypothesis-generated JSON and webhook-shaped values, byte mutations and truncations of real
payload shapes, wrong types at random paths and huge batches; most signed correctly, about one in
eight with a bad or missing signature. The daemon must never answer 5xx, must store exactly the
correctly signed posts (nothing for a bad signature), and its worker must still be alive and
answering afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from structlog.testing import capture_logs

from notifier.sandbox import whatsapp_templates as meta
from notifier.signatures import sign
from notifier.store.tables import webhook_receipts
from tests.conftest import Clock
from tests.test_web import NOA, OWNER, SEED_REPLY, LiveDaemon, br16_body, live_daemon

# NOTIFIER_FUZZ_SCALE=0.1 posts a tenth as many bodies (a quick run on a busy machine); 1 is the full run.
SCALE = float(os.environ.get("NOTIFIER_FUZZ_SCALE", "1"))
MINIMUM_POSTS = int(10_000 * SCALE)
POSTING_THREADS = 24
SENDERS = (NOA, "919811122233", "5511987654321", "15550009999", "")
WAMID = "wamid.HBgLMTU1NTAwMDk5OTkVAgARGBI5QUNGRTEyMzQ1Njc4OUFCAA=="


class Poster:
    """Posts bodies to the daemon from a few threads sharing one client, signed or not, and keeps
    the tallies the test asserts on.

    Several threads because each loopback request waits on the server's delayed ACK (~40 ms, see
    the report on ``serving.serve_in_thread``); generation (and the RNG) stays on the caller's
    thread.
    """

    def __init__(self, daemon: LiveDaemon, client: httpx.Client, rng: random.Random) -> None:
        self.daemon = daemon
        self.client = client
        self.rng = rng
        self.secret = daemon.whatsapp.app_secret
        self.posts = 0
        self.signed_ok = 0
        self.signed_distinct: set[bytes] = set()  # a body posted twice is stored once
        self.bad_signature = 0
        self.statuses: dict[int, int] = {}
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[bytes, str | None, bool] | None] = queue.Queue(256)
        self._threads = [threading.Thread(target=self._run) for _ in range(POSTING_THREADS)]
        for thread in self._threads:
            thread.start()

    def post(self, body: bytes) -> None:
        """Queue ``body``: about 7 in 8 signed correctly, the rest with a bad signature."""
        bad = self.rng.random() < 0.125
        header = self._bad_header(body) if bad else sign(self.secret, body)
        self._queue.put((body, header, bad))

    def close(self) -> None:
        """Wait until everything queued was posted."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(60)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            self._post(*job)

    def _post(self, body: bytes, header: str | None, bad: bool) -> None:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["X-Hub-Signature-256"] = header
        try:
            status = self.client.post(self.daemon.url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            status = -1
            self._problem(f"no answer ({exc!r})", body)
        expected = (401, 403) if bad else (200,)
        if status not in expected:
            self._problem(f"answered {status}, expected {expected}", body)
        with self._lock:
            self.posts += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if bad:
                self.bad_signature += 1
            else:
                self.signed_ok += 1
                self.signed_distinct.add(body)

    def _problem(self, what: str, body: bytes) -> None:
        with self._lock:
            self.problems.append(f"{what}: {body[:200]!r}")

    def _bad_header(self, body: bytes) -> str | None:
        good = sign(self.secret, body)
        choice = self.rng.randrange(7)
        if choice == 0:
            return None
        if choice == 1:
            return sign("not-the-app-secret", body)
        if choice == 2:
            return sign(self.secret, body + b" ")
        if choice == 3:
            digit = "0" if good[-1] != "0" else "1"
            return good[:-1] + digit
        if choice == 4:
            return good.replace("sha256=", "sha1=")
        if choice == 5:
            return good[: self.rng.randrange(len(good))]
        return "sha256=" + "".join(self.rng.choice("0123456789abcdefXYZ") for _ in range(64))


# --- seed bodies: the shapes Meta really sends --------------------------------------------------


def _envelope(value: dict[str, Any]) -> dict[str, Any]:
    return meta.envelope("100000000000001", "200000000000002", value, "15550001111")


def seed_payloads(now: datetime) -> list[dict[str, Any]]:
    """Inbound text/image/unsupported/button/username, statuses with pricing and errors, a
    template update and BR-17's three-change body."""
    text = meta.inbound_text_message(NOA, "wamid.SEED.IN.1", now, "Where is order #10126?")
    image = {**meta.inbound_text_message(NOA, "wamid.SEED.IN.2", now, "x"), "type": "image"}
    image["image"] = {"id": "1", "mime_type": "image/jpeg", "sha256": "abc"}
    del image["text"]
    button = {
        "from": NOA,
        "id": "wamid.SEED.IN.3",
        "timestamp": meta.unix(now),
        "type": "button",
        "button": {"payload": "STOP", "text": "Stop updates"},
        "context": {"from": "15550001111", "id": WAMID},
    }
    username = {
        "from": "",
        "from_user_id": "US.13491208655302741918",
        "id": "wamid.SEED.IN.4",
        "timestamp": meta.unix(now),
        "type": "text",
        "text": {"body": "1023"},
    }
    unsupported = {
        "from": NOA,
        "id": "wamid.SEED.IN.5",
        "type": "unsupported",
        "errors": [{"code": 131051, "title": "Message type unknown"}],
    }
    delivered = meta.status_item(WAMID, "delivered", now, NOA, "17")
    delivered["pricing"] = meta.pricing("utility", free=False)
    delivered["conversation"] = {"id": "c1", "origin": {"type": "utility"}}
    failed = meta.failed_status(meta.StatusTarget(WAMID, NOA, None), now, 131026, "Undeliverable.")
    template_update = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "time": 1735725600,
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "PAUSED",
                            "message_template_id": 123,
                            "message_template_name": "order_shipped",
                            "message_template_language": "en",
                            "reason": None,
                        },
                    }
                ],
            }
        ],
    }
    contacts = [{"profile": {"name": "Noa B"}, "wa_id": NOA}]
    return [
        _envelope({"contacts": contacts, "messages": [text]}),
        _envelope({"contacts": contacts, "messages": [image, unsupported]}),
        _envelope({"contacts": contacts, "messages": [button]}),
        _envelope(
            {"contacts": [{"user_id": "US.1", "profile": {"name": "u"}}], "messages": [username]}
        ),
        _envelope({"statuses": [delivered]}),
        _envelope({"statuses": [failed], "errors": [{"code": 130429, "title": "Rate limit hit"}]}),
        template_update,
        json.loads(br16_body()),
    ]


def seed_bodies(now: datetime) -> list[bytes]:
    return [meta.meta_json(p) for p in seed_payloads(now)] + [br16_body()]


# --- mutations ---------------------------------------------------------------------------------

WRONG_VALUES: tuple[Any, ...] = (
    None,
    0,
    -1,
    2**70,
    1e308,
    True,
    "",
    "x" * 5000,
    "9" * 40,
    "\u0000\ud800",
    [],
    [None],
    {},
    {"id": None},
    [[[]]],
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def wrong_type(payload: dict[str, Any], rng: random.Random) -> bytes:
    """``payload`` with one value (at a random path) replaced by a value of another type."""
    mutated = copy.deepcopy(payload)
    path = rng.choice([p for p in _paths(mutated) if p])
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = copy.deepcopy(rng.choice(WRONG_VALUES))
    if rng.random() < 0.5:
        return meta.meta_json(mutated)
    return json.dumps(mutated, ensure_ascii=False).encode("utf-8", "surrogatepass")


def byte_mutation(body: bytes, rng: random.Random) -> bytes:
    """Flip, delete, insert, duplicate or swap a few bytes."""
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        if not data:
            data.extend(rng.randbytes(4))
        at = rng.randrange(len(data))
        kind = rng.randrange(5)
        if kind == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del data[at : at + rng.randint(1, 16)]
        elif kind == 2:
            data[at:at] = rng.choice(
                [
                    b"{",
                    b"}",
                    b"[",
                    b"]",
                    b'"',
                    b",",
                    b":",
                    b"\\",
                    b"\\u",
                    b"\x00",
                    b"\xff",
                    rng.randbytes(3),
                ]
            )
        elif kind == 3:
            end = min(len(data), at + rng.randint(1, 64))
            data[at:at] = data[at:end]
        else:
            data[at] = rng.choice(b"0123456789-.eE")
    return bytes(data)


def huge_batches(now: datetime) -> Iterator[bytes]:
    """Batches Meta could send: 1,000 statuses, 200 changes, 50 inbound messages, and 300
    copies of one status."""
    statuses = [
        {
            **meta.status_item(f"wamid.HUGE.{i}", "delivered", now, NOA, None),
            "pricing": meta.pricing("utility", i % 2 == 0),
        }
        for i in range(1000)
    ]
    yield meta.meta_json(_envelope({"statuses": statuses}))
    changes = [
        {
            "field": "messages",
            "value": {"statuses": [meta.status_item(f"wamid.CH.{i}", "sent", now, NOA, None)]},
        }
        for i in range(100)
    ]
    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}] * 2}
    yield meta.meta_json(body)
    messages = [
        meta.inbound_text_message("15550009999", f"wamid.HUGE.IN.{i}", now, f"order {1000 + i}")
        for i in range(50)
    ]
    yield meta.meta_json(_envelope({"messages": messages}))
    yield meta.meta_json(_envelope({"statuses": [{"id": WAMID, "status": "read"}] * 300}))


# --- hypothesis strategies ---------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
any_json = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | _scalars | st.just([]) | st.just({})


_status_item = st.fixed_dictionaries(
    {},
    optional={
        "id": _maybe(st.sampled_from([WAMID, "wamid.X", ""]) | st.text(max_size=20)),
        "status": _maybe(
            st.sampled_from(["sent", "delivered", "read", "failed", "deleted", "SENT"])
        ),
        "timestamp": _maybe(st.sampled_from(["1735725600", "0", "-1", "99999999999999"])),
        "recipient_id": _maybe(st.sampled_from(SENDERS)),
        "biz_opaque_callback_data": _maybe(st.sampled_from(["1", "17", "x", "9" * 30])),
        "pricing": _maybe(
            st.fixed_dictionaries(
                {}, optional={"type": _scalars, "category": _scalars, "billable": _scalars}
            )
        ),
        "errors": _maybe(
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"code": _scalars, "title": _scalars, "error_data": any_json}
                ),
                max_size=2,
            )
        ),
    },
)
_message_item = st.fixed_dictionaries(
    {},
    optional={
        "from": _maybe(st.sampled_from(SENDERS)),
        "id": _maybe(st.text(min_size=1, max_size=20).map(lambda s: "wamid.HYP." + s)),
        "timestamp": _maybe(st.sampled_from(["1735725600", "", "abc", "1e3"])),
        "type": _maybe(
            st.sampled_from(["text", "image", "button", "interactive", "unsupported", "reaction"])
        ),
        "text": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "body": _maybe(
                        st.sampled_from(["1023", "hi", "STOP", "start", "#10126", ""])
                        | st.text(max_size=40)
                    )
                },
            )
        ),
        "button": any_json,
        "interactive": any_json,
        "errors": any_json,
    },
)
_value = st.fixed_dictionaries(
    {},
    optional={
        "messaging_product": _maybe(st.just("whatsapp")),
        "metadata": any_json,
        "contacts": _maybe(
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"wa_id": _scalars, "user_id": _scalars, "profile": any_json}
                ),
                max_size=2,
            )
        ),
        "statuses": _maybe(st.lists(_status_item, max_size=3)),
        "messages": _maybe(st.lists(_message_item, max_size=2)),
        "errors": any_json,
    },
)
_change = st.fixed_dictionaries(
    {},
    optional={
        "field": _maybe(
            st.sampled_from(
                [
                    "messages",
                    "message_template_status_update",
                    "template_category_update",
                    "account_update",
                ]
            )
        ),
        "value": _maybe(_value),
    },
)
webhook_shaped = st.fixed_dictionaries(
    {},
    optional={
        "object": _maybe(st.just("whatsapp_business_account")),
        "entry": _maybe(
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"id": _scalars, "changes": _maybe(st.lists(_change, max_size=3))}
                ),
                max_size=2,
            )
        ),
    },
)


def _encode(value: Any, ascii_only: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


def _scaled(count: int) -> int:
    return max(1, int(count * SCALE))


def run_hypothesis(
    strategy: st.SearchStrategy[Any], examples: int, post: Callable[[bytes], None]
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(value=strategy, ascii_only=st.booleans())
    def post_generated(value: Any, ascii_only: bool) -> None:
        post(_encode(value, ascii_only))

    post_generated()


# --- the test --------------------------------------------------------------------------------


@pytest.fixture
def fuzz_daemon(engine: Engine, clock: Clock) -> Iterator[LiveDaemon]:
    """The daemon with the sandbox's own status webhooks off: only the fuzzer posts."""
    clock.now = datetime(2025, 1, 1, 10, 5, tzinfo=UTC)
    # An idle extra connection: with make_engine's NullPool, SQLite otherwise checkpoints (and
    # fsyncs) the WAL each time its last connection closes, i.e. after every write (~10 ms each).
    keeper = engine.connect() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    with keeper, live_daemon(engine, clock) as daemon:
        daemon.whatsapp.webhook_url = None
        yield daemon


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~2-2.5 min alone; CPU-bound, so much slower on a busy machine
def test_fuzzed_webhooks_never_5xx_never_store_bad_signatures_never_kill_the_worker(
    fuzz_daemon: LiveDaemon, clock: Clock
) -> None:
    """≥10,000 generated/mutated bodies: no 5xx, bad signatures never stored, worker still answers."""
    rng = random.Random(20250101)
    started = time.monotonic()
    seeds = seed_payloads(clock())
    bodies = seed_bodies(clock())
    with (
        capture_logs() as logs,
        httpx.Client(timeout=30, limits=httpx.Limits(max_connections=POSTING_THREADS)) as client,
    ):
        poster = Poster(fuzz_daemon, client, rng)
        for body in bodies:
            poster.post(body)
        run_hypothesis(any_json, _scaled(1000), poster.post)
        run_hypothesis(webhook_shaped, _scaled(2000), poster.post)
        for _ in range(_scaled(4400)):
            poster.post(byte_mutation(rng.choice(bodies), rng))
        for _ in range(_scaled(2000)):
            poster.post(wrong_type(rng.choice(seeds), rng))
        for body in bodies:
            for cut in sorted(rng.sample(range(len(body)), _scaled(80))):
                poster.post(body[:cut])
        for body in huge_batches(clock()):
            poster.post(body)
        poster.close()
        posted_in = time.monotonic() - started
        fuzz_daemon.settle(timeout=600)
        workers = [t for t in threading.enumerate() if t.name == "webhook-worker"]
        assert workers
        assert all(t.is_alive() for t in workers)
        question = meta.inbound_text_message(OWNER, "wamid.FINAL", clock(), "1023")
        assert fuzz_daemon.post_signed({"messages": [question]}) == 200
        fuzz_daemon.settle()
    elapsed = time.monotonic() - started
    print(
        f"\nwebhook fuzz: {poster.posts} posts ({poster.signed_ok} signed, "
        f"{poster.bad_signature} bad signatures) in {posted_in:.1f} s, settled in "
        f"{elapsed:.1f} s; answers {dict(sorted(poster.statuses.items()))}"
    )
    failures: dict[str, int] = {}
    for event in logs:
        if event["log_level"] in ("error", "critical") and event["event"] != "message.failed":
            failures[event["event"]] = failures.get(event["event"], 0) + 1
    print(f"item failures logged: {failures}")
    assert poster.problems == []
    assert poster.posts >= MINIMUM_POSTS
    assert poster.bad_signature >= _scaled(500)
    with fuzz_daemon.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(webhook_receipts)).scalar_one()
    # every distinct signed body and the final one, once each; no bad one
    assert stored == len(poster.signed_distinct) + 1
    assert fuzz_daemon.unprocessed() == 0
    assert [m.text for m in fuzz_daemon.sent_to(OWNER)] == [SEED_REPLY]
    assert not [e for e in logs if e["event"] == "webhook_worker.crashed"]
