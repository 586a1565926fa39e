"""Does verified Reflection-format data help a student on GSM8K? An end-to-end, CPU-sized experiment.

1. Synthesize Reflection-format (``<thinking>/<reflection>/<output>``) and plain-CoT answers for the first
   ``--n-train`` GSM8K *train* problems with the oracle (embedded SmolLM2-135M by default, or an
   OpenAI-compatible endpoint), verifying each against the GSM8K reference and retrying mismatches.
2. Train the default student three times with equal example counts and equal steps on
   (a) the original GSM8K answers, (b) verified plain-CoT answers, (c) verified Reflection answers
   (trained and evaluated with the Reflection 70B system prompt).
3. Generate answers for a fixed GSM8K *test* subset with each model (``reflectkit generate``) and score them with
   ``reflectkit eval gsm8k``, which reads only ``<output>`` when a response has one; print accuracy with 95%
   bootstrap CIs. The untrained student is the reference row.

With the 135M oracle almost nothing verifies, so (b)/(c) may have no training data: the script then says so and
trains (a) on all problems (its count is flagged as unequal). Run it with a strong oracle to get a real comparison::

    python examples/reflection_gsm8k/run.py --n-train 300 --n-test 200 --max-steps 200 \\
        --oracle-model gpt-4o-mini --oracle-base-url https://api.openai.com/v1 --oracle-api-key-env OPENAI_API_KEY
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from reflectkit.evalsets import builtin_path
from reflectkit.evaluate import api as ev
from reflectkit.llm.factory import ModelSpec
from reflectkit.prompts import load_prompt_set
from reflectkit.synth.api import synthesize
from reflectkit.train.api import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/reflection_gsm8k"), help="working directory")
    p.add_argument("--n-train", type=int, default=4, help="GSM8K train problems to synthesize for")
    p.add_argument("--n-test", type=int, default=8, help="GSM8K test problems to evaluate on (the first N)")
    p.add_argument("--attempts", type=int, default=2, help="oracle samples per problem (verification retries)")
    p.add_argument("--synth-max-tokens", type=int, default=192)
    p.add_argument("--max-steps", type=int, default=4, help="optimizer steps per arm (equal for all arms)")
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--gen-max-tokens", type=int, default=128)
    p.add_argument("--student", default="embedded")
    p.add_argument("--glaive", action="store_true", help="(c) with the six tag tokens and dual-mask duplication")
    p.add_argument("--oracle-model")
    p.add_argument("--oracle-base-url")
    p.add_argument("--oracle-api-key-env")
    return p.parse_args(argv)


def verified_rows(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip() and json.loads(line)["reflectkit"]["synth"]["status"] == "verified")


def first_rows(src: Path, dst: Path, n: int) -> Path:
    lines = [x for x in src.read_text(encoding="utf-8").splitlines() if x.strip()][:n]
    dst.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return dst


def evaluate(model: str, out: Path, n_test: int, max_tokens: int, system: str | None) -> dict[str, Any]:
    answers = out / "answers.jsonl"
    ev.generate("gsm8k", answers, model=model, limit=n_test, max_tokens=max_tokens, system=system,
                run_dir=out / "generate-run", concurrency=1)
    report = ev.eval_gsm8k(answers, json_path=out / "gsm8k.json", md_path=out / "gsm8k.md")
    return report["metrics"]


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    oracle = ModelSpec(model=a.oracle_model, base_url=a.oracle_base_url, api_key_env=a.oracle_api_key_env)
    refl_system = load_prompt_set("synth", "paper")["reflection.system"]
    train_src = first_rows(builtin_path("gsm8k_train"), out / "gsm8k_train_subset.jsonl", a.n_train)

    synth: dict[str, dict[str, Any]] = {}
    for fmt, name in (("plain-cot", "cot"), ("reflection", "refl")):
        s = synthesize(train_src, out / f"{name}.jsonl", format=fmt, oracle=oracle, answer_field="answer",
                       max_attempts=a.attempts, max_tokens=a.synth_max_tokens, run_dir=out / f"synth-{name}", concurrency=1)
        synth[name] = s.manifest["synthesis"]
        print(f"[synth {fmt}] {json.dumps({k: v for k, v in synth[name].items() if k != 'rejected_file'})}", flush=True)

    n_cot, n_refl = verified_rows(out / "cot.jsonl"), verified_rows(out / "refl.jsonl")
    n_equal = min(n_cot, n_refl)
    arms: list[tuple[str, Path, str | None, int, dict[str, Any]]] = []
    if n_equal:
        arms.append(("(a) original answers", train_src, None, n_equal, {}))
        arms.append(("(b) verified plain-CoT", out / "cot.jsonl", None, n_equal, {}))
        arms.append(("(c) verified reflection", out / "refl.jsonl", refl_system, n_equal,
                     {"add_tag_tokens": a.glaive, "dual_mask": a.glaive}))
    else:
        print(f"NOTE: verified examples: plain-CoT {n_cot}, reflection {n_refl}; arms (b)/(c) have no training data. "
              f"Training (a) on all {a.n_train} problems (counts NOT equal). Use a stronger oracle.", flush=True)
        arms.append(("(a) original answers [unequal count]", train_src, None, a.n_train, {}))

    results: list[dict[str, Any]] = []
    base = evaluate(a.student, out / "eval-base", a.n_test, a.gen_max_tokens, None)
    results.append({"arm": "untrained student", "n_train": 0, "metrics": base})
    for i, (label, data, system, n, extra) in enumerate(arms):
        tdir = out / f"train-{'abc'[i]}"
        subset = take(data, n, out / f"train-{'abc'[i]}-data.jsonl")
        m = train(subset, tdir, student=a.student, max_steps=a.max_steps, lr=a.lr, max_length=a.max_length,
                  batch_size=2, system_prompt=system, save_steps=a.max_steps, **extra)
        metrics = evaluate(str(tdir), tdir / "eval", a.n_test, a.gen_max_tokens, system)
        results.append({"arm": label, "n_train": m["data"]["conversations"], "steps": m["metrics"]["global_step"],
                        "train_loss": m["metrics"]["train_loss"], "metrics": metrics})

    print("\nGSM8K test subset: first %d problems; accuracy [95%% bootstrap CI]; only <output> scored when present" % a.n_test)
    print(f"{'arm':42s} {'n_train':>7s}  {'strict-match':>22s}  {'flexible-extract':>22s}")
    for r in results:
        cells = []
        for k in ("strict_match", "flexible_extract"):
            v = r["metrics"][k]
            lo, hi = v["ci"]
            cells.append(f"{v['value']:.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"{r['arm']:42s} {r['n_train']:>7d}  {cells[0]:>22s}  {cells[1]:>22s}")
    summary = {"args": {k: str(v) for k, v in vars(a).items()}, "synthesis": synth, "verified": {"plain-cot": n_cot, "reflection": n_refl},
               "results": results, "wall_time_s": round(time.monotonic() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nsummary: {out / 'summary.json'} ({summary['wall_time_s']} s)")
    return 0


def take(data: Path, n: int, dst: Path) -> Path:
    """The first n rows that are verified (synthesized data) or unchecked (original answers)."""
    rows = [x for x in data.read_text(encoding="utf-8").splitlines() if x.strip()]
    keep = [x for x in rows if json.loads(x).get("reflectkit", {}).get("synth", {}).get("status", "verified") == "verified"]
    dst.write_text("\n".join(keep[:n]) + "\n", encoding="utf-8")
    return dst


if __name__ == "__main__":
    sys.exit(main())
