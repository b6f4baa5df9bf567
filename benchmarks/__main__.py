"""``python -m benchmarks [--only NAME] [--repeats N] [--quick]``: run the benchmarks, print the table."""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.harness import Context, Figure, table
from harness import stopping_on_signals

#: in the order they run
BENCHMARKS = (
    *("dispatch", "throughput", "status", "submit", "fanout", "parallel", "memory", "coldstart", "schedules"),
    "triggers",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this one (repeatable)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each measurement, the median kept (≥ 5)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a run of a few minutes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, registries)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    figures: list[Figure] = []
    failed: list[str] = []
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="nectar-bench-"))
    interrupted = False
    with stopping_on_signals():
        try:
            for name in args.only or BENCHMARKS:
                module = importlib.import_module(f"benchmarks.{name}")
                print(f"== {name}: {module.__doc__}", flush=True)
                started = time.monotonic()
                try:
                    found = module.run(Context(root, args.repeats, args.quick))
                except Exception:  # one broken benchmark must not hide the others' figures
                    traceback.print_exc()
                    failed.append(name)
                    continue
                figures += found
                print(table(found), f"\n({time.monotonic() - started:.0f} s)\n", flush=True)
        except KeyboardInterrupt as exc:  # every process was stopped on the way here; show what was measured
            print(f"\ninterrupted ({exc}): the figures so far", file=sys.stderr)
            interrupted = True
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    mode = "quick" if args.quick else "full"
    print(f"\n## Benchmarks ({mode}, {args.repeats} repeats, {time.monotonic() - began:.0f} s)\n")
    print(table(figures))
    if failed:
        print(f"\nfailed: {', '.join(failed)}" + (f" (logs in {root})" if args.keep else ""), file=sys.stderr)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
