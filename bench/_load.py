"""An open-loop HTTP/1.1 load generator on asyncio streams: a fixed arrival rate, whatever the
server does, so a slow answer never delays the next request (no coordinated omission).

Requests are pre-built bytes; keep-alive connections are reused when idle and opened when not.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from bench._common import percentile

TIMEOUT = 10.0
KEEP_ALIVE_SECONDS = 4.0  # below uvicorn's 5 s keep-alive timeout


@dataclass
class LoadResult:
    """Latencies in seconds, measured from the moment the request was written."""

    sent: int = 0
    total: int = 0
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def achieved_rate(self) -> float:
        """Requests answered per second over the whole run, warm-up included."""
        return self.total / self.seconds if self.seconds else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct) if self.latencies else float("nan")

    def p_from_schedule(self, pct: float) -> float:
        """Latency counted from the scheduled send time (includes the generator's own lag)."""
        total = [lat + lag for lat, lag in zip(self.latencies, self.lags, strict=True)]
        return percentile(total, pct) if total else float("nan")


def http_post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run_load(port: int, requests: list[bytes], rate: float, warmup: int) -> LoadResult:
    """Send ``requests`` at ``rate``/s; the first ``warmup`` are sent but not counted."""
    return asyncio.run(_load(port, requests, rate, warmup))


async def _load(port: int, requests: list[bytes], rate: float, warmup: int) -> LoadResult:
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    result = LoadResult()

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A kept-alive connection used within KEEP_ALIVE_SECONDS, else a new one: both servers
        (uvicorn) close a connection idle for 5 s, and a request written into that close is lost
        to the client's timing, not the server's (httpx's pool expires them the same way)."""
        while idle:
            reader, writer, last_used = idle.pop()
            if loop.time() - last_used < KEEP_ALIVE_SECONDS:
                return reader, writer
            writer.close()
        return await asyncio.open_connection("127.0.0.1", port)

    async def one(index: int, request: bytes, scheduled: float) -> None:
        reader, writer = await connection()
        written = loop.time()
        try:
            writer.write(request)
            status = await asyncio.wait_for(_response(reader), TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            if index >= warmup:
                result.errors += 1
            return
        done = loop.time()
        idle.append((reader, writer, done))
        if index < warmup:
            return
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status != 200:
            result.errors += 1
        result.latencies.append(done - written)
        result.lags.append(max(0.0, written - scheduled))

    start = loop.time() + 0.1
    tasks = []
    for index, request in enumerate(requests):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, request, scheduled)))
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - start
    result.sent = len(requests) - warmup
    result.total = len(requests)
    for _, writer, _ in idle:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return result


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status
