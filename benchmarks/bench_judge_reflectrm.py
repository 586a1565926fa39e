"""Judge accuracy and compute per pair: plain (baseline) vs reflective anchor-vote vs reflective reflectrm, and
optionally a judge trained by `reflectkit judge train` (--trained OUT), on LLMBar pairs with the embedded model.

    .venv/bin/python benchmarks/bench_judge_reflectrm.py --limit 1 --k 2 --max-tokens 48 [--trained OUT]

Prints, per judge: single-order / strict accuracy, calls and completion tokens per pair, wall time, and each
figure's ratio to the plain judge measured in the same run. A 135M judge is near chance: the accuracies show the
code path, the calls/tokens per pair the cost of the procedure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from reflectkit.engine.api import run
from reflectkit.evaluate.judge_step import JudgeBenchStep


def one(name: str, out: Path, model: str, limit: int, **opts: object) -> dict[str, float]:
    t0 = time.monotonic()
    s = run(JudgeBenchStep, "llmbar", out / f"{name}.jsonl", models={"judge": model}, limit=limit,
            run_dir=out / f"run-{name}", **opts)
    wall = time.monotonic() - t0
    rep = json.loads((out / f"{name}.bench.json").read_text())
    m = rep["metrics"]
    rows = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
    ct = s.manifest.get("tokens", {}).get("completion") if isinstance(s.manifest, dict) else None
    return {"single_order": m["single_order_accuracy"]["value"], "strict": m["strict_accuracy"]["value"],
            "calls_per_pair": m["calls_per_pair"]["value"], "pairs": len(rows), "wall_s": wall,
            "completion_tokens": ct, "confidence": rep["judge"].get("confidence_used")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=1, help="pairs per LLMBar subset (5 subsets)")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--trained", default=None, help="a `reflectkit judge train` output directory")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        res = {"plain": one("plain", out, "embedded", a.limit, method="plain", max_tokens=a.max_tokens)}
        for proc in ("anchor-vote", "reflectrm"):
            res[proc] = one(proc, out, "embedded", a.limit, method="reflective", procedure=proc, k=a.k,
                            max_tokens=a.max_tokens)
        if a.trained:
            res["trained+reflectrm"] = one("trained", out, a.trained, a.limit, method="reflective",
                                           procedure="reflectrm", k=a.k, max_tokens=a.max_tokens)
    base = res["plain"]
    print(f"{'judge':<20} {'pairs':>5} {'single':>7} {'strict':>7} {'calls/pair':>10} {'x plain':>8} "
          f"{'wall s':>7} {'x plain':>8}  confidence")
    for name, r in res.items():
        print(f"{name:<20} {r['pairs']:>5} {r['single_order']:>7.2f} {r['strict']:>7.2f} {r['calls_per_pair']:>10.1f} "
              f"{r['calls_per_pair'] / base['calls_per_pair']:>8.1f} {r['wall_s']:>7.1f} "
              f"{r['wall_s'] / base['wall_s']:>8.1f}  {r['confidence']}")


if __name__ == "__main__":
    main()
