"""ReflectRM end to end on CPU (issue 16): train a judge with `reflectkit judge train` (data built through the engine,
GRPO), then the paper's ablation on LLMBar pairs with `judge bench`: base model plain, base + anchor-vote, base +
reflectrm, trained plain, trained + reflectrm, side by side with paired CIs (`--compare`).

    .venv/bin/python benchmarks/bench_judge_reflectrm.py --limit 2 --k 4 --max-tokens 64 --train-steps 8
    .venv/bin/python benchmarks/bench_judge_reflectrm.py --limit 1 --k 2 --trained OUT   # an existing judge

Prints the training cost (data calls, GRPO steps, wall, reward per step) and, per judge: single-order accuracy
(seeded random swap, the paper's Table 1 protocol), both-orders-correct (its Table 5), the share of judgments with
no parsable verdict (they count as wrong), calls and prompt/completion tokens per pair, wall time, each figure's ratio
to the plain base judge measured in the same run, and which confidence
picked the anchor. A 135M judge is near chance: the accuracies show the code path, the calls/tokens per pair the
cost of the procedure.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from reflectkit.engine.api import run
from reflectkit.evaluate.judge_metrics import compare_markdown
from reflectkit.evaluate.judge_step import JudgeBenchStep
from reflectkit.evaluate.judge_train import JudgeTrainStep


def bench(name: str, out: Path, model: str, limit: int, **opts: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    s = run(JudgeBenchStep, "llmbar", out / f"{name}.jsonl", models={"judge": model}, limit=limit,
            run_dir=out / f"run-{name}", progress=False, **opts)
    wall = time.monotonic() - t0
    rep = json.loads((out / f"{name}.bench.json").read_text())
    m = rep["metrics"]
    inv = s.manifest["invocations"][-1]  # the client's own token counts (this invocation)
    pairs = int(rep["counts"].get("pairs") or len((out / f"{name}.jsonl").read_text().splitlines()))
    return {"single_order": m["single_order_accuracy"], "strict": m["strict_accuracy"],
            "unknown_rate": m["unknown_rate"]["value"],
            "calls_per_pair": m["calls_per_pair"]["value"], "pairs": pairs, "wall_s": wall,
            "prompt_tokens_per_pair": (inv.get("tokens_in") or 0) / max(1, pairs),
            "completion_tokens_per_pair": (inv.get("tokens_out") or 0) / max(1, pairs),
            "confidence": rep["judge"].get("confidence_used"), "report": str(out / f"{name}.bench.json"),
            "compare": rep.get("compare")}


def train(out: Path, limit: int, steps: int, n: int, max_tokens: int, gen: int, completion: int) -> dict[str, Any]:
    t0 = time.monotonic()
    run(JudgeTrainStep, "llmbar", out / "judge", limit=limit, run_dir=out / "run-train", progress=False, n=n,
        data_max_tokens=max_tokens, num_generations=gen, max_completion_length=completion, max_steps=steps,
        save_steps=max(1, steps // 2))
    wall = time.monotonic() - t0
    man = json.loads((out / "judge" / "manifest.json").read_text())
    mix = json.loads((out / "judge" / "data" / "pairs.mix.json").read_text())
    with open(out / "judge" / "train_log.csv", encoding="utf-8") as fh:
        log = list(csv.DictReader(fh))
    return {"wall_s": wall, "mix": {k: mix[k] for k in ("response", "analysis", "response_candidates",
                                                       "analysis_candidates")},
            "pairs_by_category": mix.get("pairs_by_category"), "global_step": man["metrics"].get("global_step"),
            "rewards": [row.get("reward") for row in log], "losses": [row.get("loss") for row in log],
            "data_calls": n * 5 * limit}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=1, help="pairs per LLMBar subset (5 subsets)")
    ap.add_argument("--k", type=int, default=2, help="analyses per pair (the paper's N; default 8 in reflectkit)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--trained", default=None, help="an existing `reflectkit judge train` output directory")
    ap.add_argument("--train-steps", type=int, default=0, help="train a judge first (GRPO steps); 0: do not train")
    ap.add_argument("--data-n", type=int, default=4, help="analyses per pair when building the training data")
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--max-completion-length", type=int, default=48)
    ap.add_argument("--json", default="", help="also write every figure to this JSON file")
    a = ap.parse_args()
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        trained = a.trained
        if a.train_steps:
            res["train"] = t = train(out, a.limit, a.train_steps, a.data_n, a.max_tokens, a.num_generations,
                                     a.max_completion_length)
            trained = str(out / "judge")
            print(f"judge train: {t['wall_s']:.0f} s, {t['data_calls']} data calls, pairs {t['pairs_by_category']}, "
                  f"mix {t['mix']}, {t['global_step']} GRPO steps, reward per step {t['rewards']}", flush=True)
        judges: dict[str, dict[str, Any]] = {}
        judges["base plain"] = bench("base-plain", out, "embedded", a.limit, method="plain", max_tokens=a.max_tokens)
        for proc in ("anchor-vote", "reflectrm"):
            judges[f"base {proc}"] = bench(f"base-{proc}", out, "embedded", a.limit, method="reflective",
                                           procedure=proc, k=a.k, max_tokens=a.max_tokens)
        if trained:
            judges["trained plain"] = bench("trained-plain", out, trained, a.limit, method="plain",
                                            max_tokens=a.max_tokens)
            judges["trained reflectrm"] = bench(
                "trained-reflectrm", out, trained, a.limit, method="reflective", procedure="reflectrm", k=a.k,
                max_tokens=a.max_tokens,
                compare=[Path(f"{n}={judges[n]['report']}") for n in ("base plain", "base reflectrm", "trained plain")])
        res["judges"] = judges
    base = judges["base plain"]
    print(f"\n{'judge':<18} {'pairs':>5} {'single (95% CI)':>20} {'strict (95% CI)':>20} {'unknown':>7} "
          f"{'calls/pair':>10} {'x plain':>7} {'in tok/pair':>11} {'out tok/pair':>12} {'wall s':>7} {'x plain':>7}"
          f"  confidence")
    for name, r in judges.items():
        so, st = r["single_order"], r["strict"]
        print(f"{name:<18} {r['pairs']:>5} {so['value']:>6.2f} [{so['ci'][0]:.2f}, {so['ci'][1]:.2f}] "
              f"{st['value']:>6.2f} [{st['ci'][0]:.2f}, {st['ci'][1]:.2f}] {r['unknown_rate']:>7.2f} "
              f"{r['calls_per_pair']:>10.1f} {r['calls_per_pair'] / base['calls_per_pair']:>7.1f} "
              f"{r['prompt_tokens_per_pair']:>11.0f} {r['completion_tokens_per_pair']:>12.0f} "
              f"{r['wall_s']:>7.1f} {r['wall_s'] / base['wall_s']:>7.1f}  {r['confidence']}")
    last = judges.get("trained reflectrm")
    if last and last["compare"]:
        print(compare_markdown(last["compare"]))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
