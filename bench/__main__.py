"""``python -m bench [NAME ...] [--quick]``: run the benchmarks and print every figure.

Names: wix_calls, diff_persist, dispatch, webhooks, memory, latency (default: all six).
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from pathlib import Path

from pyinstrument import Profiler

from bench._common import Row, load_average, machine, markdown_table

BENCHMARKS = ("wix_calls", "diff_persist", "dispatch", "webhooks", "memory", "latency")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="profile each benchmark's own process with pyinstrument; text reports go to DIR",
    )
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    names = args.names or list(BENCHMARKS)
    info = machine()
    print(
        f"notifier benchmarks on {info['nproc']} cores, {info['memory']} RAM, "
        f"{info['cpu']}, Python {info['python']} ({'quick' if args.quick else 'full'} sizes); "
        f"load average {load_average()}"
    )
    rows: list[Row] = []
    failures: list[str] = []
    started = time.monotonic()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        try:
            rows.extend(_run(module.run, args.quick, name, args.profile))
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            last = (str(exc).strip().splitlines() or [""])[-1][:300]
            failures.append(f"{name}: {type(exc).__name__}: {last}")
            print(f"  {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
    print(f"\n== summary ({time.monotonic() - started:.0f} s, load average {load_average()}) ==\n")
    print(markdown_table(rows))
    missed = [f"{r.bench}: {r.metric}" for r in rows if r.met is False]
    print(f"\ntargets met: {sum(r.met is True for r in rows)}, missed: {len(missed)}")
    for line in missed:
        print(f"  missed: {line}")
    for line in failures:
        print(f"  failed to run: {line}")
    return 1 if failures else 0


def _run(
    run: Callable[[bool], list[Row]], quick: bool, name: str, profile: str | None
) -> list[Row]:
    if profile is None:
        return run(quick)
    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        return run(quick)
    finally:
        profiler.stop()
        path = Path(profile) / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(profiler.output_text(unicode=False, color=False), encoding="utf-8")
        print(f"  profile: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
