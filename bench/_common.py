"""What every benchmark shares: result rows, databases, quiet logs, loopback servers, the machine.

Benchmarks print numbers and never assert timing; a row says our figure, the target, the peer's
figure from the same run (when there is a peer) and the ratio.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from notifier import logs
from notifier.sandbox.wix_query import (
    HIDDEN_BY_DEFAULT,
    QueryError,
    compile_filter,
    encode_cursor,
    mentions_status,
    resolve_search,
    sort_orders,
)
from notifier.sandbox.wix_server import WixSandbox, validation_error
from notifier.store.engine import make_engine
from notifier.store.migrate import upgrade

POSTGRES_DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STORE = "bench-store"


@dataclass(frozen=True)
class Row:
    """One printed figure: ours, the target, and the peer's figure from the same run."""

    bench: str
    metric: str
    ours: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    peer: float | None = None
    peer_name: str = ""
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """How many times better than the peer (>1 = we win), whatever the unit's direction."""
        if self.ours is None or self.peer is None or self.ours == 0 or self.peer == 0:
            return None
        return self.ours / self.peer if self.higher_is_better else self.peer / self.ours

    def line(self) -> str:
        parts = [f"{self.metric}: {fmt(self.ours)} {self.unit}"]
        if self.target:
            verdict = {True: "met", False: "MISSED", None: "n/a"}[self.met]
            parts.append(f"target {self.target} ({verdict})")
        if self.peer is not None:
            parts.append(f"{self.peer_name}: {fmt(self.peer)} {self.unit}")
            parts.append(f"ratio {fmt(self.ratio)}x" if self.ratio is not None else "ratio n/a")
        if self.note:
            parts.append(self.note)
        return "  " + " | ".join(parts)


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def emit(rows: list[Row], row: Row) -> Row:
    """Print a row as soon as it is known and keep it for the summary."""
    print(row.line(), flush=True)
    rows.append(row)
    return row


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| bench | metric | ours | target | met | peer | peer figure | ratio | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        peer = f"{fmt(r.peer)} {r.unit}" if r.peer is not None else ""
        ratio = f"{fmt(r.ratio)}x" if r.ratio is not None else ""
        lines.append(
            f"| {r.bench} | {r.metric} | {fmt(r.ours)} {r.unit} | {r.target} | {met} "
            f"| {r.peer_name} | {peer} | {ratio} | {r.note} |"
        )
    return "\n".join(lines)


def header(title: str, quick: bool, sizes: str) -> None:
    mode = "quick" if quick else "full"
    print(f"\n== {title} ({mode}: {sizes}) ==", flush=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Stopwatch:
    """``with Stopwatch() as w: ...`` then ``w.seconds``."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def max_in_window(stamps: Sequence[float], width: float) -> int:
    """The most events inside any window ``[t, t + width)`` (sliding, starting at each event)."""
    ordered = sorted(stamps)
    best, low = 0, 0
    for high, stamp in enumerate(ordered):
        while ordered[low] <= stamp - width:
            low += 1
        best = max(best, high - low + 1)
    return best


# -- logs, files, databases ------------------------------------------------------------------


def work_dir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"notifier-bench-{name}-"))


def quiet_logs(folder: Path) -> Path:
    """JSON logs to a file, as production writes them, so the terminal shows only numbers."""
    path = folder / "notifier.log"
    logs.configure(stream=path.open("a", encoding="utf-8"), json=True)
    return path


def sqlite_url(folder: Path, name: str = "notifier.db") -> str:
    return f"sqlite:///{folder / name}"


def migrated(url: str, **kwargs: Any) -> Engine:
    engine = make_engine(url, **kwargs)
    upgrade(engine)
    return engine


def postgres_url() -> str | None:
    """The PostgreSQL to measure on, or None when neither the env URL nor the local one answers."""
    url = os.environ.get("NOTIFIER_BENCH_POSTGRES_URL") or POSTGRES_DEFAULT_URL
    engine = make_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        print(f"  PostgreSQL not reachable at {redact(url)}: {type(exc).__name__}")
        return None
    finally:
        engine.dispose()
    return url


def redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    _, at, host = rest.rpartition("@")
    return f"{scheme}://***@{host}" if at else url


@contextlib.contextmanager
def postgres_engine(url: str) -> Iterator[Engine]:
    """A migrated engine on a fresh schema, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = migrated(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- the Wix sandbox, with a result cache for 100,000-order stores -----------------------------


class CachingWixSandbox(WixSandbox):
    """Answers exactly like WixSandbox, but keeps each sorted result until the store changes.

    The plain sandbox re-filters and re-sorts every order on every page; a naive poller of 100,000
    orders would spend ~20 minutes in the fake server. Request counting is unchanged.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._generation = 0
        self._results: dict[str, list[dict[str, Any]]] = {}

    def _change(self, order_id: str, **fields: str) -> None:
        super()._change(order_id, **fields)
        self._generation += 1

    def add_orders(self, raws: Any) -> None:
        super().add_orders(raws)
        self._generation += 1

    def _search(self, request: Request, body: Any) -> Response:
        search = body.get("search", {}) if isinstance(body, dict) else None
        if not isinstance(search, dict):
            return validation_error("search", "body must be {'search': {...}}")
        try:
            query, offset, limit = resolve_search(search)
            ordered = self._ordered(query)
        except QueryError as exc:
            return validation_error(exc.field, exc.description)
        cursors = {}
        if offset + limit < len(ordered):
            cursors["next"] = encode_cursor({**query, "offset": offset + limit, "limit": limit})
        page = ordered[offset : offset + limit]
        metadata = {"count": len(page), "cursors": cursors, "hasNext": "next" in cursors}
        return JSONResponse({"orders": page, "metadata": metadata})

    def _ordered(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        key = f"{self._generation}:{json.dumps(query, sort_keys=True)}"
        cached = self._results.get(key)
        if cached is None:
            matches = compile_filter(query["filter"])
            shown = [o for o in self._searchable() if matches(o)]
            if not mentions_status(query["filter"]):
                shown = [o for o in shown if o.get("status") not in HIDDEN_BY_DEFAULT]
            cached = sort_orders(shown, query["sort"])
            self._results = {key: cached}
        return cached


# -- servers in child processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ChildServer:
    """A server started with ``python -m bench._servers KIND``; ``url`` has no trailing slash."""

    process: subprocess.Popen[bytes]
    url: str
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_child(kind: str, *args: str, log: Path, ready: float = 60.0) -> ChildServer:
    """Start a loopback server in its own process (its own GIL) and wait until it accepts."""
    port = free_port()
    command = [sys.executable, "-m", "bench._servers", kind, "--port", str(port), *args]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = ChildServer(process, f"http://127.0.0.1:{port}", port)
    deadline = time.monotonic() + ready
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{kind} server did not start in {ready:g} s; see {log}")


@contextlib.contextmanager
def child_server(kind: str, *args: str, log: Path) -> Iterator[ChildServer]:
    server = start_child(kind, *args, log=log)
    try:
        yield server
    finally:
        server.stop()


def run_child_json(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m module args`` and parse the JSON object on its last stdout line."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the numbers ran on: cores, memory, Python, CPU model."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = _command(["free", "-h"])
    total = next((ln.split()[1] for ln in memory.splitlines() if ln.startswith("Mem:")), "?")
    return {
        "nproc": _command(["nproc"]).strip() or str(os.cpu_count()),
        "memory": total,
        "python": platform.python_version(),
        "cpu": cpu,
        "platform": platform.platform(),
    }


def load_average() -> str:
    """1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _command(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def timed(fn: Callable[[], object]) -> float:
    with Stopwatch() as watch:
        fn()
    return watch.seconds
