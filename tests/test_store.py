"""Storage behaviour on every backend: dedupe keys, claims, monotonic statuses, money and time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Connection, Engine, text

from notifier.domain import Price, Snapshot, TemplateInfo
from notifier.store import inbox, ledger, orders, outbox, registry
from notifier.store.engine import begin_promptly
from notifier.store.migrate import (
    DatabaseNotAtHeadError,
    current_revisions,
    downgrade,
    head_revisions,
    require_head,
)

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)


def _enqueue(conn: Connection, key: str = "s:o1:payment:PAID") -> int | None:
    return outbox.enqueue(
        conn,
        store="s",
        dedupe_key=key,
        kind="template",
        payload={"name": "order_payment_received", "language": "en", "body": [[None, "Priya"]]},
        now=NOW,
        recipient="+919820000001",
        order_id="o1",
    )


def test_dedupe_key_admits_one_row(engine: Engine) -> None:
    """A second enqueue with the same dedupe key writes nothing and says so."""
    with engine.begin() as conn:
        first = _enqueue(conn)
        second = _enqueue(conn)
    assert first is not None
    assert second is None
    with engine.connect() as conn:
        assert outbox.count_by_status(conn) == {"queued": 1}


def _new(key: str, status: str = "queued") -> outbox.NewMessage:
    return outbox.NewMessage(
        store="s",
        dedupe_key=key,
        kind="template",
        payload={"name": "order_payment_received", "language": "en", "body": [[None, "Priya"]]},
        recipient="+919820000001" if status == "queued" else None,
        order_id=key,
        status=status,
        error_title=None if status == "queued" else "missing phone",
    )


def test_enqueue_many_writes_new_keys_and_returns_only_their_ids(engine: Engine) -> None:
    """One batch with a key already taken, two new keys and one of them twice: two rows written,
    and the returned ids are exactly those rows'."""
    with engine.begin() as conn:
        taken = _enqueue(conn, "k:taken")
        written = outbox.enqueue_many(
            conn,
            [_new("k:taken"), _new("k:a"), _new("k:b", "skipped"), _new("k:a")],
            now=NOW,
        )
    assert set(written) == {"k:a", "k:b"}
    with engine.connect() as conn:
        stored = {key: outbox.get(conn, message_id) for key, message_id in written.items()}
        assert outbox.count_by_status(conn) == {"queued": 2, "skipped": 1}
        assert taken is not None
        assert outbox.get(conn, taken).dedupe_key == "k:taken"
        assert outbox.enqueue_many(conn, [], now=NOW) == {}
    assert {key: m.dedupe_key for key, m in stored.items()} == {"k:a": "k:a", "k:b": "k:b"}
    assert stored["k:b"].status == "skipped"
    assert stored["k:a"].template.name == "order_payment_received"


def test_record_new_estimates_writes_one_ledger_row_per_message(engine: Engine) -> None:
    """Ledger rows written in one batch keep each message's id, status and exact zero cost."""
    free = Price(Decimal(0), None, None, "utility", None, "skipped")
    with engine.begin() as conn:
        written = outbox.enqueue_many(
            conn, [_new("k:1", "skipped"), _new("k:2", "skipped")], now=NOW
        )
        ledger.record_new_estimates(
            conn,
            [
                ledger.Estimate(
                    message_id=message_id,
                    store="s",
                    order_id=key,
                    order_number=None,
                    template="order_payment_received",
                    price=free,
                    status="skipped",
                    recipient_masked=None,
                    priced_on=NOW.date(),
                )
                for key, message_id in written.items()
            ],
            now=NOW,
        )
    with engine.connect() as conn:
        rows = ledger.rows(conn)
    assert sorted(r.message_id for r in rows) == sorted(written.values())
    assert {(r.status, r.cost, r.free_reason) for r in rows} == {
        (
            "skipped",
            Decimal(0),
            "skipped",
        )
    }


def test_claim_moves_a_row_once(engine: Engine) -> None:
    """Two claims in a row hand a queued message out exactly once."""
    with engine.begin() as conn:
        _enqueue(conn)
    with engine.begin() as conn:
        first = outbox.claim_due(conn, now=NOW, limit=10)
    with engine.begin() as conn:
        second = outbox.claim_due(conn, now=NOW, limit=10)
    assert [m.status for m in first] == ["claimed"]
    assert first[0].attempts == 1
    assert second == []


def test_statuses_never_move_backwards(engine: Engine) -> None:
    """A late `sent` after `read` changes nothing, and nothing follows `failed`."""
    with engine.begin() as conn:
        message_id = _enqueue(conn)
        assert message_id is not None
        outbox.set_status(conn, message_id, "accepted", now=NOW, wamid="wamid.1")
        assert outbox.advance_status(conn, message_id, "read", at=NOW, now=NOW)
        assert not outbox.advance_status(conn, message_id, "sent", at=NOW, now=NOW)
        assert not outbox.advance_status(conn, message_id, "delivered", at=NOW, now=NOW)
        assert outbox.get(conn, message_id).status == "read"


def test_failed_is_final(engine: Engine) -> None:
    """After `failed`, a later `delivered` is ignored."""
    with engine.begin() as conn:
        message_id = _enqueue(conn)
        assert message_id is not None
        outbox.set_status(conn, message_id, "accepted", now=NOW, wamid="wamid.2")
        assert outbox.advance_status(conn, message_id, "failed", at=NOW, now=NOW, error_code=131026)
        assert not outbox.advance_status(conn, message_id, "delivered", at=NOW, now=NOW)
        assert outbox.get(conn, message_id).status == "failed"


def test_ledger_keeps_decimal_and_confirms_once(engine: Engine) -> None:
    """Money round-trips exactly and the confirmed cost is written only by the first status."""
    price = Price(Decimal("0.115"), "INR", Decimal("0.115"), "utility", "IN")
    with engine.begin() as conn:
        message_id = _enqueue(conn)
        assert message_id is not None
        ledger.record_estimate(
            conn,
            message_id=message_id,
            store="s",
            order_id="o1",
            order_number="1023",
            template="order_payment_received",
            price=price,
            status="accepted",
            recipient_masked="+91•••0001",
            priced_on=date(2026, 6, 20),
            now=NOW,
        )
        assert ledger.confirm(conn, message_id, price, now=NOW, pricing_raw={"type": "regular"})
        free = Price(Decimal(0), "INR", Decimal("0.115"), "utility", "IN", "free_customer_service")
        assert not ledger.confirm(conn, message_id, free, now=NOW, pricing_raw=None)
    with engine.connect() as conn:
        [row] = ledger.rows(conn)
    assert row.estimated_cost == Decimal("0.115")
    assert row.confirmed_cost == Decimal("0.115")
    assert row.created_at.tzinfo is not None


def test_status_dedupe_and_snapshot_upsert(engine: Engine) -> None:
    """(wamid, status) is stored once; saving a snapshot twice updates it in place."""
    with engine.begin() as conn:
        assert inbox.record_status(
            conn, wamid="w", status="sent", callback_data="1", payload={}, event_at=NOW, now=NOW
        )
        assert not inbox.record_status(
            conn, wamid="w", status="sent", callback_data="1", payload={}, event_at=NOW, now=NOW
        )
        orders.ensure_store_state(conn, "s")
        orders.save_snapshots(
            conn, "s", [Snapshot("o1", "1", "APPROVED", "NOT_PAID", None)], now=NOW
        )
        orders.save_snapshots(conn, "s", [Snapshot("o1", "1", "APPROVED", "PAID", None)], now=NOW)
        assert orders.load_snapshots(conn, "s", ["o1"])["o1"].payment_status == "PAID"
        assert orders.count_snapshots(conn, "s") == 1


def test_service_window_measured_from_inbound_time(engine: Engine) -> None:
    """The window is open for 24 h after the inbound timestamp and never moved backwards."""
    with engine.begin() as conn:
        inbox.open_window(conn, "4915123456789", NOW)
        inbox.open_window(conn, "4915123456789", datetime(2026, 6, 19, tzinfo=UTC))
        assert inbox.window_open(conn, "4915123456789", datetime(2026, 6, 21, 11, 59, tzinfo=UTC))
        assert not inbox.window_open(
            conn, "4915123456789", datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
        )


def test_daemon_refuses_a_database_not_at_head(engine: Engine) -> None:
    """After a downgrade to base, require_head names the command that fixes it."""
    assert current_revisions(engine) == head_revisions()
    downgrade(engine, "base")
    with pytest.raises(DatabaseNotAtHeadError, match="notifier db upgrade"):
        require_head(engine)


def test_begin_promptly_waits_out_a_held_write_lock_then_commits(engine: Engine) -> None:
    """A prompt writer (the webhook ingest) blocked by another write transaction does not fail:
    it gets the lock once that ends, commits, and leaves the normal busy timeout on SQLite."""
    holder = engine.connect()
    holder.begin()
    holder.execute(text("UPDATE store_state SET watermark = NULL WHERE store = 'none'"))
    released = threading.Event()

    def release() -> None:
        time.sleep(0.3)
        released.set()
        holder.rollback()
        holder.close()

    threading.Thread(target=release).start()
    with begin_promptly(engine) as conn:
        got_lock_after_release = released.is_set()
        inbox.store_receipts(conn, [b'{"prompt": 1}'], now=NOW)
    if engine.dialect.name == "sqlite":  # PostgreSQL writers do not queue on one lock
        assert got_lock_after_release
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30_000
    released.wait(5)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_receipts")).scalar_one() == 1


def test_begin_promptly_rolls_back_when_the_block_raises(engine: Engine) -> None:
    """An exception inside the block leaves nothing written."""

    def write_then_fail() -> None:
        with begin_promptly(engine) as conn:
            inbox.store_receipts(conn, [b'{"prompt": 2}'], now=NOW)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_then_fail()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_receipts")).scalar_one() == 0


def test_replicas_refreshing_templates_at_once_do_not_collide(engine: Engine) -> None:
    """Two replicas starting together both replace the stored templates: the second waits for the
    first and succeeds (on PostgreSQL it hit the first one's rows and the daemon died at start),
    and a template gone from the account is gone from the table."""
    old = TemplateInfo("order_old", "en", "APPROVED", "UTILITY")
    infos = [
        TemplateInfo("order_shipped", "en", "APPROVED", "UTILITY", body_param_count=3),
        TemplateInfo("order_shipped", "hi", "APPROVED", "UTILITY", body_param_count=3),
    ]
    with engine.begin() as conn:
        registry.replace_templates(conn, [old], now=NOW)
    first = engine.connect()
    first.begin()
    registry.replace_templates(first, infos, now=NOW)
    errors: list[Exception] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                registry.replace_templates(conn, infos, now=NOW)
        except Exception as exc:  # the assertion below reports it
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)  # the second replica is now waiting on the first one's transaction
    first.commit()
    first.close()
    thread.join(30)
    assert errors == []
    with engine.connect() as conn:
        assert set(registry.load_templates(conn)) == {(t.name, t.language) for t in infos}
