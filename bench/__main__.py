"""``python -m bench [NAME ...] [--quick]``: run the benchmarks and print every figure.

Names: wix_calls, diff_persist, dispatch, webhooks, memory, latency (default: all six).
"""

from __future__ import annotations

import argparse
import importlib
import time

from bench._common import Row, machine, markdown_table

BENCHMARKS = ("wix_calls", "diff_persist", "dispatch", "webhooks", "memory", "latency")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], metavar="NAME")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    names = args.names or list(BENCHMARKS)
    info = machine()
    print(
        f"notifier benchmarks on {info['nproc']} cores, {info['memory']} RAM, "
        f"{info['cpu']}, Python {info['python']} ({'quick' if args.quick else 'full'} sizes)"
    )
    rows: list[Row] = []
    failures: list[str] = []
    started = time.monotonic()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        try:
            rows.extend(module.run(args.quick))
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            print(f"  {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
    print(f"\n== summary ({time.monotonic() - started:.0f} s) ==\n")
    print(markdown_table(rows))
    missed = [f"{r.bench}: {r.metric}" for r in rows if r.met is False]
    print(f"\ntargets met: {sum(r.met is True for r in rows)}, missed: {len(missed)}")
    for line in missed:
        print(f"  missed: {line}")
    for line in failures:
        print(f"  failed to run: {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
