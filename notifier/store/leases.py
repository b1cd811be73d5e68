"""Per-store poll leases: with several replicas on one database, one polls each store at a time.

A lease is a row in ``store_state`` (owner + expiry). Taking it is a single conditional UPDATE, so
two replicas can never both win; a replica that dies simply stops renewing and its lease expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, or_, update

from notifier.store.dialect import insert_ignoring_duplicates
from notifier.store.tables import store_state


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


def release(conn: Connection, store: str, owner: str) -> None:
    conn.execute(
        update(store_state)
        .where(store_state.c.store == store, store_state.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
