"""The business account's message templates as last fetched, and alerts raised once per cause."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select, tuple_, update

from notifier.domain import TemplateInfo
from notifier.store.dialect import insert_ignoring_duplicates, upsert
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
    # Not delete-all-then-insert: replicas starting together refresh at once, and on PostgreSQL
    # the second insert hit the first one's rows (a unique violation that stopped the daemon).
    kept = [(row["name"], row["language"]) for row in rows]
    gone = delete(templates)
    if kept:
        gone = gone.where(tuple_(templates.c.name, templates.c.language).not_in(kept))
    conn.execute(gone)
    upsert(conn, templates, rows, ["name", "language"])


def update_template(
    conn: Connection,
    name: str,
    language: str | None,
    *,
    status: str | None = None,
    category: str | None = None,
    now: datetime,
) -> list[TemplateInfo]:
    """Apply a change Meta announced (webhook) to the stored templates; returns those updated.

    ``language`` None means every language of ``name``. A template we never fetched is left
    alone: the next full refresh brings it with all its fields.
    """
    values: dict[str, object] = {"fetched_at": now}
    if status is not None:
        values["status"] = status.upper()
    if category is not None:
        values["category"] = category.upper()
    where = templates.c.name == name
    if language is not None:
        where = where & (templates.c.language == language)
    conn.execute(update(templates).where(where).values(values))
    return [
        info
        for key, info in load_templates(conn).items()
        if key[0] == name and (language is None or key[1] == language)
    ]


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
