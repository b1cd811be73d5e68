"""Per-store poll leases: with several replicas on one database, one polls each store at a time.

A lease is a row in ``store_state`` (owner + expiry). Taking it is a single conditional UPDATE, so
two replicas can never both win; a replica that dies simply stops renewing and its lease expires.
A live replica renews every lease it holds with one UPDATE (``renew_all``) on a heartbeat, so the
expiry can be short (a dead replica's stores wait little) however long a poll interval or a poll is.
On the same heartbeat it says it is alive (``announce``); ``fair_share`` is then how many stores
one replica should hold, so a replica started late, or restarted, gets its part of the work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, or_, select, update

from notifier.store.dialect import insert_ignoring_duplicates, upsert
from notifier.store.tables import replicas, store_state


def acquire(conn: Connection, store: str, owner: str, *, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease on ``store``; False while another live owner holds it."""
    insert_ignoring_duplicates(conn, store_state, {"store": store})
    result = conn.execute(
        update(store_state)
        .where(
            store_state.c.store == store,
            or_(
                store_state.c.lease_owner.is_(None),
                store_state.c.lease_owner == owner,
                store_state.c.lease_expires_at < now,
            ),
        )
        .values(lease_owner=owner, lease_expires_at=now + ttl)
    )
    return result.rowcount == 1


def renew_all(conn: Connection, owner: str, *, now: datetime, ttl: timedelta) -> int:
    """Push back the expiry of every lease ``owner`` still holds; returns how many it holds.

    A lease another replica took over (after it expired) has another owner and is left alone.
    """
    result = conn.execute(
        update(store_state)
        .where(store_state.c.lease_owner == owner)
        .values(lease_expires_at=now + ttl)
    )
    return result.rowcount


def release(conn: Connection, store: str, owner: str) -> None:
    conn.execute(
        update(store_state)
        .where(store_state.c.store == store, store_state.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )


def announce(conn: Connection, owner: str, *, now: datetime) -> None:
    """Record that ``owner`` is alive now."""
    upsert(conn, replicas, [{"instance": owner, "seen_at": now}], ["instance"])


def forget(conn: Connection, owner: str) -> None:
    """A replica shutting down cleanly stops counting at once."""
    conn.execute(delete(replicas).where(replicas.c.instance == owner))


def fair_share(conn: Connection, stores: int, *, now: datetime, ttl: timedelta) -> int:
    """Stores per live replica, rounded up (a replica silent for ``ttl`` counts as gone)."""
    live = conn.execute(
        select(func.count()).select_from(replicas).where(replicas.c.seen_at > now - ttl)
    ).scalar_one()
    return -(-stores // max(int(live), 1))


def held_by(conn: Connection, owner: str, *, now: datetime) -> list[str]:
    """The stores whose live lease ``owner`` holds, in name order."""
    rows = conn.execute(
        select(store_state.c.store)
        .where(store_state.c.lease_owner == owner, store_state.c.lease_expires_at >= now)
        .order_by(store_state.c.store)
    )
    return list(rows.scalars())
