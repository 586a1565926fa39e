"""Training throughput (tokens/s) and peak memory of the default student on CPU: LoRA (baseline) vs full SFT.

Each variant runs in its own process (peak RSS is per process) on the first ``--rows`` GSM8K train problems::

    .venv/bin/python benchmarks/bench_train.py --rows 16 --steps 4 --max-length 256
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys
from reflectkit.train.api import train
a = json.loads(sys.argv[1])
m = train(a["data"], a["out"], student=a["student"], full=a["full"], max_steps=a["steps"], max_length=a["max_length"],
          batch_size=a["batch"], save_steps=10**6, seed=0)
print("RESULT " + json.dumps({"metrics": m["metrics"], "examples": m["data"]["examples"], "precision": m["precision"],
                              "device": m["device"]}))
"""


def run_variant(full: bool, data: Path, work: Path, args: argparse.Namespace) -> dict:
    spec = {"data": str(data), "out": str(work / ("full" if full else "lora")), "student": args.student, "full": full,
            "steps": args.steps, "max_length": args.max_length, "batch": args.batch}
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"variant full={full} failed:\n{r.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--student", default="embedded")
    args = p.parse_args()
    from reflectkit.evalsets import builtin_path

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        data = work / "gsm8k.jsonl"
        lines = builtin_path("gsm8k_train").read_text(encoding="utf-8").splitlines()[: args.rows]
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        lora = run_variant(False, data, work, args)
        full = run_variant(True, data, work, args)
    print(f"default student, {lora['device']}/{lora['precision']}, {args.rows} GSM8K rows, {args.steps} steps x batch "
          f"{args.batch}, max length {args.max_length}")
    print(f"{'variant':8s} {'tokens/s':>9s} {'peak MB':>9s} {'trainable':>12s} {'loss first->last':>20s}")
    for name, r in (("LoRA", lora), ("full", full)):
        m = r["metrics"]
        print(f"{name:8s} {m['tokens_per_s']:>9.1f} {m['peak_memory_mb']:>9.0f} {m['trainable_params']:>12,d} "
              f"{m['first_loss']:>9.3f} -> {m['last_loss']:.3f}")
    lm, fm = lora["metrics"], full["metrics"]
    print(f"ratios full/LoRA: throughput {fm['tokens_per_s'] / lm['tokens_per_s']:.2f}x, "
          f"peak memory {fm['peak_memory_mb'] / lm['peak_memory_mb']:.2f}x, "
          f"trainable params {fm['trainable_params'] / lm['trainable_params']:.0f}x")


if __name__ == "__main__":
    main()
