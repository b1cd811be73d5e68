"""The WhatsApp sandbox's webhook sender: signed POSTs to the daemon from one worker thread.

Sends queue their status webhooks here so the sandbox's HTTP handler never waits on the
daemon; a failed POST is retried a few times, then dropped (as Meta eventually does).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import httpx
import structlog

from notifier.signatures import sign


class WebhookAttempt(NamedTuple):
    """One POST to the daemon: its HTTP status (None = no answer) and the exact body."""

    status: int | None
    body: bytes


@dataclass
class _Delivery:
    due: float
    bodies: list[bytes]


class WebhookPoster:
    """Posts signed webhook bodies to ``url`` from one worker thread, with a few retries.

    The worker starts when ``url`` is first set. ``url`` may change at any time; while it is
    None nothing is posted and queued bodies are dropped unsent.
    """

    def __init__(
        self,
        app_secret: str,
        url: str | None = None,
        *,
        attempts: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
    ) -> None:
        self.delay = 0.0
        self._url: str | None = None
        self._app_secret = app_secret
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._queue: queue.Queue[_Delivery] = queue.Queue()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._log_lock = threading.Lock()
        self._log: list[WebhookAttempt] = []
        self._thread = threading.Thread(target=self._run, name="wa-sandbox-webhooks", daemon=True)
        self.url = url

    @property
    def url(self) -> str | None:
        return self._url

    @url.setter
    def url(self, url: str | None) -> None:
        with self._idle:
            self._url = url
            if url is not None and not self._thread.is_alive() and not self._stop.is_set():
                self._thread.start()

    def submit(self, bodies: list[bytes], delay: float) -> None:
        """Queue ``bodies`` to be signed and posted in order, ``delay`` seconds from now."""
        with self._idle:
            self._pending += 1
        self._queue.put(_Delivery(time.monotonic() + delay, bodies))

    def post(self, client: httpx.Client, body: bytes, signature: str | None) -> int | None:
        """POST ``body``; retry a failed POST a few times, then drop it (and log that)."""
        status: int | None = None
        for attempt in range(self._attempts):
            if self.delay and self._stop.wait(self.delay):
                break
            url = self.url
            if url is None:
                break
            status = self._post_once(client, url, body, signature)
            if status is not None and status < 300:
                return status
            last_attempt = attempt == self._attempts - 1
            if last_attempt or self._stop.wait(min(self._backoff * 2**attempt, self._max_backoff)):
                break
        structlog.get_logger().warning("sandbox.webhook.dropped", url=self.url, status=status)
        return status

    def post_now(self, body: bytes, signature: str | None) -> int | None:
        """POST ``body`` from the calling thread, with ``signature`` as given (None = none)."""
        if self.url is None:
            raise RuntimeError("the sandbox has no webhook_url")
        with httpx.Client(timeout=5.0) as client:
            return self.post(client, body, signature)

    def log(self) -> list[WebhookAttempt]:
        with self._log_lock:
            return list(self._log)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop the worker for good (queued webhooks are dropped)."""
        with self._idle:
            self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _post_once(
        self, client: httpx.Client, url: str, body: bytes, signature: str | None
    ) -> int | None:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        try:
            status: int | None = client.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            status = None
        with self._log_lock:
            self._log.append(WebhookAttempt(status, body))
        return status

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                try:
                    delivery = self._queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                try:
                    self._deliver(client, delivery)
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _deliver(self, client: httpx.Client, delivery: _Delivery) -> None:
        if self._stop.wait(max(0.0, delivery.due - time.monotonic())):
            return
        for body in delivery.bodies:
            if self.url is None:
                return
            self.post(client, body, sign(self._app_secret, body))
