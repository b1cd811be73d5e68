"""Servers the benchmarks run in their own processes: ``python -m bench._servers KIND --port N``.

- ``whatsapp``: the WhatsApp sandbox, plus ``GET /_bench/sent`` (unix times of accepted sends).
- ``daemon-web``: our daemon, role "web", on a prepared database, with sandboxes in threads.
- ``pywa``: the peer, a pywa + FastAPI webhook receiver whose handlers store nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pywa.client import WhatsApp
from pywa.handlers import MessageHandler, MessageStatusHandler
from pywa.types.message import Message
from pywa.types.message_status import MessageStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from bench._common import utc_now
from notifier import logs
from notifier.daemon import daemon_app, prepare
from notifier.sandbox.harness import sandbox_settings, start_sandboxes
from notifier.sandbox.whatsapp_server import WhatsAppSandbox
from notifier.store.engine import make_engine

WEBHOOK_PATH = "/webhooks/whatsapp"
VERIFY_TOKEN = "bench-verify-token"


def whatsapp_app() -> Starlette:
    sandbox = WhatsAppSandbox()

    async def sent(request: Request) -> Response:
        since = float(request.query_params.get("since", "0"))
        stamps = [m.at.timestamp() for m in sandbox.sent_messages()]
        return JSONResponse([s for s in stamps if s >= since])

    return Starlette(routes=[Route("/_bench/sent", sent), Mount("/", sandbox.app)])


def daemon_web_app(database_url: str, log_path: Path) -> Starlette:
    """Our daemon exactly as ``notifier run --role web`` builds it, on sandboxes in threads."""
    logs.configure(stream=log_path.open("a", encoding="utf-8"), json=True)
    boxes = start_sandboxes(utc_now)
    settings = sandbox_settings(boxes, database_url, store_name="bench-store")
    runtime = prepare(settings, engine=make_engine(database_url))
    return daemon_app(runtime, "web")


def pywa_app(app_secret: str, phone_id: str) -> FastAPI:
    """The peer: pywa validates the signature, parses the update and calls handlers doing nothing."""
    app = FastAPI()
    wa = WhatsApp(
        phone_id=phone_id,
        server=app,
        verify_token=VERIFY_TOKEN,
        app_secret=app_secret,
        webhook_endpoint=WEBHOOK_PATH,
        validate_updates=True,
    )

    def on_message(_: WhatsApp, message: Message) -> None:
        return None

    def on_status(_: WhatsApp, status: MessageStatus[Any]) -> None:
        return None

    wa.add_handlers(MessageHandler(on_message), MessageStatusHandler(on_status))
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["whatsapp", "daemon-web", "pywa"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", default="")
    parser.add_argument("--log", default="/dev/null")
    parser.add_argument("--app-secret", default="sandbox-app-secret")
    parser.add_argument("--phone-id", default="100000000000001")
    args = parser.parse_args()
    if args.kind == "whatsapp":
        app: Any = whatsapp_app()
    elif args.kind == "daemon-web":
        app = daemon_web_app(args.db, Path(args.log))
    else:
        app = pywa_app(args.app_secret, args.phone_id)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
