"""Poll leases on every backend: one owner at a time, taken over after expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from notifier.store import leases

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


def test_only_one_replica_holds_a_store(engine: Engine) -> None:
    """While A's lease is live, B cannot take it; A can renew it."""
    with engine.begin() as conn:
        assert leases.acquire(conn, "shop", "replica-a", now=NOW, ttl=TTL)
        assert not leases.acquire(
            conn, "shop", "replica-b", now=NOW + timedelta(seconds=10), ttl=TTL
        )
        assert leases.acquire(conn, "shop", "replica-a", now=NOW + timedelta(seconds=20), ttl=TTL)


def test_an_expired_lease_is_taken_over(engine: Engine) -> None:
    """A dead replica's lease passes to another once it expires, and not before."""
    with engine.begin() as conn:
        assert leases.acquire(conn, "shop", "replica-a", now=NOW, ttl=TTL)
        assert not leases.acquire(conn, "shop", "replica-b", now=NOW + TTL, ttl=TTL)
        assert leases.acquire(
            conn, "shop", "replica-b", now=NOW + TTL + timedelta(seconds=1), ttl=TTL
        )
        assert not leases.acquire(
            conn, "shop", "replica-a", now=NOW + TTL + timedelta(seconds=2), ttl=TTL
        )


def test_release_frees_the_store_at_once(engine: Engine) -> None:
    """A clean shutdown releases the lease so another replica need not wait for expiry."""
    with engine.begin() as conn:
        assert leases.acquire(conn, "shop", "replica-a", now=NOW, ttl=TTL)
        leases.release(conn, "shop", "replica-a")
        assert leases.acquire(conn, "shop", "replica-b", now=NOW, ttl=TTL)
