"""Start both sandboxes and build daemon settings pointing at them (demo and tests share this)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from notifier.config import (
    DispatchSettings,
    LookupSettings,
    Secret,
    Settings,
    StoreSettings,
    WebSettings,
    WhatsAppSettings,
)
from notifier.rules import DEFAULT_RULES
from notifier.sandbox.whatsapp_server import WhatsAppSandbox
from notifier.sandbox.wix_server import WixSandbox
from notifier.serving import RunningServer, serve_in_thread

VERIFY_TOKEN = "sandbox-verify-token"  # noqa: S105 - a public sandbox value


@dataclass
class Sandboxes:
    wix: WixSandbox
    whatsapp: WhatsAppSandbox
    wix_server: RunningServer
    whatsapp_server: RunningServer

    def stop(self) -> None:
        self.whatsapp.close()
        self.whatsapp_server.stop()
        self.wix_server.stop()

    def __enter__(self) -> Sandboxes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandboxes(
    clock: Callable[[], datetime], *, webhook_url: str | None = None, webhook_attempts: int = 3
) -> Sandboxes:
    wix = WixSandbox(clock=clock)
    whatsapp = WhatsAppSandbox(
        clock=clock, webhook_url=webhook_url, webhook_attempts=webhook_attempts
    )
    return Sandboxes(wix, whatsapp, serve_in_thread(wix.app), serve_in_thread(whatsapp.app))


def free_port() -> int:
    """A loopback port free right now (for a server whose URL others must know before it starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sandbox_settings(
    boxes: Sandboxes,
    database_url: str,
    *,
    store_name: str = "sandbox-store",
    web_port: int = 8080,
    **store_overrides: Any,
) -> Settings:
    """Settings of one store on the Wix sandbox and a number on the WhatsApp sandbox."""
    store = StoreSettings(
        name=store_name,
        site_id=boxes.wix.site_id,
        api_key=Secret(boxes.wix.api_key),
        wix_base_url=boxes.wix_server.url,
        poll_interval_seconds=2,
        overlap_seconds=120,
        default_country="IN",
        rules=DEFAULT_RULES,
        quiet_hours_enabled=False,
        request_timeout_seconds=5,
    )
    whatsapp = WhatsAppSettings(
        base_url=boxes.whatsapp_server.url,
        api_version="v24.0",
        phone_number_id=boxes.whatsapp.phone_number_id,
        waba_id=boxes.whatsapp.waba_id,
        access_token=Secret(boxes.whatsapp.access_token),
        app_secret=Secret(boxes.whatsapp.app_secret),
        verify_token=Secret(VERIFY_TOKEN),
        timeout_seconds=5,
    )
    return Settings(
        database_url=database_url,
        stores=(replace(store, **store_overrides),),
        whatsapp=whatsapp,
        web=WebSettings(port=web_port),
        dispatch=DispatchSettings(interval_seconds=0.5),
        lookup=LookupSettings(),
    )
