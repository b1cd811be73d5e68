"""The business account's message templates as last fetched, and alerts raised once per cause."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

from notifier.domain import TemplateInfo
from notifier.store.dialect import insert_ignoring_duplicates
from notifier.store.tables import alerts, templates


def replace_templates(conn: Connection, infos: Iterable[TemplateInfo], *, now: datetime) -> None:
    rows = [
        {
            "name": t.name,
            "language": t.language,
            "status": t.status,
            "category": t.category,
            "parameter_format": t.parameter_format,
            "body_param_count": t.body_param_count,
            "body_param_names": list(t.body_param_names),
            "url_button_param_count": t.url_button_param_count,
            "fetched_at": now,
        }
        for t in infos
    ]
    conn.execute(delete(templates))
    if rows:
        conn.execute(templates.insert(), rows)


def load_templates(conn: Connection) -> dict[tuple[str, str], TemplateInfo]:
    return {
        (r.name, r.language): TemplateInfo(
            name=r.name,
            language=r.language,
            status=r.status,
            category=r.category,
            parameter_format=r.parameter_format,
            body_param_count=r.body_param_count,
            body_param_names=tuple(r.body_param_names),
            url_button_param_count=r.url_button_param_count,
        )
        for r in conn.execute(select(templates))
    }


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str
    message: str
    created_at: datetime


def raise_alert(conn: Connection, *, key: str, kind: str, message: str, now: datetime) -> bool:
    """Record an alert; True only the first time for this key (so ops hear it once)."""
    return insert_ignoring_duplicates(
        conn, alerts, {"key": key, "kind": kind, "message": message, "created_at": now}
    )


def open_alerts(conn: Connection) -> list[Alert]:
    rows = conn.execute(select(alerts).where(alerts.c.resolved_at.is_(None)).order_by(alerts.c.id))
    return [Alert(r.key, r.kind, r.message, r.created_at) for r in rows]
