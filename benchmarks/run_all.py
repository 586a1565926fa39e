"""Run every benchmark script in this folder with its defaults (`make bench`), one after the other, each in its own
process, and keep each one's output in ``benchmarks/out/NAME.log``.

    .venv/bin/python benchmarks/run_all.py [--only engine,verify] [--skip ray]

Each script prints its own figures as ratios to a baseline measured in the same run; this runner only says which
ones finished, how long each took, and where the logs are. ``RESULTS.md`` records the commands (some with
arguments other than the defaults) and the figures. Exit status: the number of scripts that failed (0: all ran).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated names (engine for bench_engine.py, ...)")
    ap.add_argument("--skip", default="", help="comma-separated names to leave out")
    a = ap.parse_args()
    only = {x for x in a.only.split(",") if x}
    skip = {x for x in a.skip.split(",") if x}
    scripts = sorted(HERE.glob("bench_*.py"))
    names = {p.stem[len("bench_"):] for p in scripts}
    unknown = (only | skip) - names
    if unknown:
        print(f"run_all: no benchmark named {', '.join(sorted(unknown))} (there are {', '.join(sorted(names))})",
              file=sys.stderr)
        return 2
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    failed = 0
    for p in scripts:
        name = p.stem[len("bench_"):]
        if (only and name not in only) or name in skip:
            continue
        log = out / f"{name}.log"
        print(f"{p.name}: running (log: {log.relative_to(HERE.parent)})", flush=True)
        t0 = time.monotonic()
        with open(log, "w", encoding="utf-8") as fh:
            rc = subprocess.run([sys.executable, str(p)], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=HERE.parent).returncode
        took = time.monotonic() - t0
        failed += rc != 0
        print(f"{p.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {took:.0f} s", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
