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


def test_the_heartbeat_renews_only_the_leases_still_held(engine: Engine) -> None:
    """renew_all pushes back every lease the owner holds and leaves one another replica took over."""
    later = NOW + TTL + timedelta(seconds=1)
    with engine.begin() as conn:
        assert leases.acquire(conn, "shop-a", "replica-a", now=NOW, ttl=TTL)
        assert leases.acquire(conn, "shop-b", "replica-a", now=NOW, ttl=TTL)
        assert leases.acquire(conn, "shop-b", "replica-b", now=later, ttl=TTL)
        assert leases.renew_all(conn, "replica-a", now=later, ttl=TTL) == 1
        assert leases.held_by(conn, "replica-a", now=later) == ["shop-a"]
        assert leases.held_by(conn, "replica-b", now=later) == ["shop-b"]
        assert not leases.acquire(
            conn, "shop-a", "replica-b", now=later + timedelta(seconds=1), ttl=TTL
        )


def test_fair_share_counts_replicas_heard_from_within_the_ttl(engine: Engine) -> None:
    """Ten stores over three live replicas is four each; a silent or departed replica stops counting."""
    with engine.begin() as conn:
        assert leases.fair_share(conn, 10, now=NOW, ttl=TTL) == 10
        for name in ("replica-a", "replica-b", "replica-c"):
            leases.announce(conn, name, now=NOW)
        assert leases.fair_share(conn, 10, now=NOW, ttl=TTL) == 4
        leases.forget(conn, "replica-c")
        assert leases.fair_share(conn, 10, now=NOW, ttl=TTL) == 5
        leases.announce(conn, "replica-a", now=NOW + TTL)
        assert leases.fair_share(conn, 10, now=NOW + TTL, ttl=TTL) == 10
