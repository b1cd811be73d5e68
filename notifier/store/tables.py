"""The database schema: every table notifier keeps, as SQLAlchemy Core.

Column types make two promises the rest of the code relies on: datetimes come back UTC-aware on
every backend (SQLite keeps naive UTC text), and money comes back as ``Decimal`` (stored as text,
so SQLite never rounds through a float).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out; a naive datetime is a bug and is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} reached the database")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """Exact decimal money stored as text on every backend."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def _now_column(name: str, *, nullable: bool = False) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=nullable)


store_state = Table(
    "store_state",
    metadata,
    Column("store", String(100), primary_key=True),
    Column("watermark", UTCDateTime()),
    Column("baseline_at", UTCDateTime()),
    Column("last_poll_started_at", UTCDateTime()),
    Column("last_poll_ok_at", UTCDateTime()),
    Column("last_poll_error", Text),
    Column("lease_owner", String(100)),
    Column("lease_expires_at", UTCDateTime()),
    Column("poll_not_before", UTCDateTime()),
)

# Live replicas, each renewing its row on the lease heartbeat: how many share the stores.
replicas = Table(
    "replicas",
    metadata,
    Column("instance", String(100), primary_key=True),
    Column("seen_at", UTCDateTime(), nullable=False),
)

poll_runs = Table(
    "poll_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("store", String(100), nullable=False, index=True),
    _now_column("started_at"),
    _now_column("finished_at", nullable=True),
    Column("ok", Boolean),
    Column("baseline", Boolean, nullable=False, default=False),
    Column("pages", Integer, nullable=False, default=0),
    Column("orders_seen", Integer, nullable=False, default=0),
    Column("events", Integer, nullable=False, default=0),
    Column("queued", Integer, nullable=False, default=0),
    Column("error", Text),
)

order_snapshots = Table(
    "order_snapshots",
    metadata,
    Column("store", String(100), primary_key=True),
    Column("order_id", String(64), primary_key=True),
    Column("number", String(32)),
    Column("status", String(40)),
    Column("payment_status", String(40)),
    Column("fulfillment_status", String(40)),
    Column("updated_date", UTCDateTime()),
    _now_column("seen_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("store", String(100), nullable=False),
    Column("order_id", String(64)),
    Column("order_number", String(32)),
    Column("dedupe_key", String(300), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # template | text
    Column("event", String(80)),
    Column("urgency", String(16), nullable=False, default="normal"),
    Column("template", String(200)),
    Column("language", String(20)),
    Column("payload", JSON, nullable=False),
    Column("recipient", String(32)),
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), index=True),
    # An ambiguous send (timeout after the request left) is resent at most once, after a grace.
    Column(
        "resent_after_ambiguity", Boolean, nullable=False, default=False, server_default=false()
    ),
    Column("wamid", String(200), unique=True),
    Column("error_code", Integer),
    Column("error_title", Text),
    Column("error_details", Text),
    Column("pricing", JSON),
    _now_column("created_at"),
    _now_column("updated_at"),
    _now_column("sent_at", nullable=True),
    _now_column("delivered_at", nullable=True),
    _now_column("read_at", nullable=True),
    _now_column("failed_at", nullable=True),
    Index("ix_messages_recipient_sent_at", "recipient", "sent_at"),
)

ledger = Table(
    "ledger",
    metadata,
    Column("message_id", Integer, ForeignKey("messages.id"), primary_key=True),
    Column("store", String(100), nullable=False, index=True),
    Column("order_id", String(64)),
    Column("order_number", String(32)),
    Column("template", String(200)),
    Column("category", String(40), nullable=False),
    Column("market", String(8)),
    Column("recipient_masked", String(32)),
    Column("rate", DecimalText()),
    Column("currency", String(8)),
    Column("estimated_cost", DecimalText()),
    Column("confirmed_cost", DecimalText()),
    Column("free_reason", String(40)),
    Column("status", String(16), nullable=False),
    Column("priced_on", Date, nullable=False),
    _now_column("created_at"),
    _now_column("confirmed_at", nullable=True),
    Column("pricing_raw", JSON),
)

status_events = Table(
    "status_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("wamid", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("message_id", Integer, index=True),
    Column("callback_data", String(200)),
    Column("payload", JSON, nullable=False),
    Column("event_at", UTCDateTime()),
    _now_column("received_at"),
    Column("applied", Boolean, nullable=False, default=False),
    UniqueConstraint("wamid", "status"),
)

webhook_receipts = Table(
    "webhook_receipts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("body", Text, nullable=False),
    # sha256 of the raw bytes: Meta's retry of a body we already stored is acknowledged, not kept.
    Column("body_sha256", String(64), unique=True),
    _now_column("received_at"),
    _now_column("processed_at", nullable=True),
    Column("error", Text),
    Index("ix_webhook_receipts_processed_at", "processed_at"),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("from_wa_id", String(32)),
    Column("user_id", String(200)),
    Column("type", String(32), nullable=False),
    Column("text", Text),
    _now_column("sent_at", nullable=True),
    _now_column("received_at"),
    Column("reply_message_id", Integer),
)

service_windows = Table(
    "service_windows",
    metadata,
    Column("wa_id", String(32), primary_key=True),
    _now_column("last_inbound_at"),
)

opt_outs = Table(
    "opt_outs",
    metadata,
    Column("wa_id", String(32), primary_key=True),
    _now_column("opted_out_at"),
)

templates = Table(
    "templates",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("language", String(20), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("category", String(32), nullable=False),
    Column("parameter_format", String(16), nullable=False),
    Column("body_param_count", Integer, nullable=False),
    Column("body_param_names", JSON, nullable=False),
    Column("url_button_param_count", Integer, nullable=False),
    _now_column("fetched_at"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    Column("message", Text, nullable=False),
    _now_column("created_at"),
    _now_column("resolved_at", nullable=True),
)
