"""Precision and recall of each detector, and of their union, on the labelled set (against GSM8K test).

    .venv/bin/python benchmarks/decontam_data/eval_quality.py [--llm] [--judge-min-similarity X] [--threshold T]

Runs the real pipeline (``reflectkit.decontam.api.decontaminate`` with ``mark_only=True``), then scores each row:
a detector "flags" a row when one of the row's matches lists it in ``flagged_by``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from reflectkit.decontam.api import decontaminate  # noqa: E402
from reflectkit.decontam.step import DEFAULT_JUDGE_MIN_SIMILARITY, DEFAULT_THRESHOLD  # noqa: E402


def prf(flags: list[bool], labels: list[int]) -> tuple[float, float, int, int, int]:
    tp = sum(f and lab == 1 for f, lab in zip(flags, labels))
    fp = sum(f and lab == 0 for f, lab in zip(flags, labels))
    fn = sum((not f) and lab == 1 for f, lab in zip(flags, labels))
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    return p, r, tp, fp, fn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labelled", default=str(HERE / "labelled.jsonl"))
    ap.add_argument("--llm", action="store_true")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--judge-min-similarity", type=float, default=DEFAULT_JUDGE_MIN_SIMILARITY)
    ap.add_argument("--judge-model")
    ap.add_argument("--judge-base-url")
    ap.add_argument("--run-dir")
    args = ap.parse_args()
    from reflectkit.llm.factory import ModelSpec

    spec = ModelSpec(model=args.judge_model, base_url=args.judge_base_url) if args.llm else None
    tmp = Path(tempfile.mkdtemp(prefix="rk-decontam-eval-"))
    s = decontaminate(args.labelled, ["gsm8k"], tmp / "marked.jsonl", mark_only=True, llm=args.llm, judge=spec,
                      threshold=args.threshold, judge_min_similarity=args.judge_min_similarity,
                      run_dir=args.run_dir or tmp / "run", progress=False)
    rows = [json.loads(line) for line in (tmp / "marked.jsonl").read_text(encoding="utf-8").splitlines()]
    labels = [r["label"] for r in rows]
    dets = ["ngram", "embedding", "llm"] if args.llm else ["ngram", "embedding"]
    flags: dict[str, list[bool]] = {}
    for d in dets:
        flags[d] = [d in (r["reflectkit"]["decontam"].get("detectors") or []) for r in rows]
    flags["combined"] = [r["reflectkit"]["decontam"]["status"] == "contaminated" for r in rows]
    print(f"labelled rows: {len(rows)} ({sum(labels)} contaminated); embedding threshold {s.threshold}; "
          f"judge calls {s.judge_calls}, cache hits {s.cache_hits}; {s.wall_time_s:.1f}s")
    kinds = sorted({r["kind"] for r in rows})
    print("| detector | precision | recall | TP | FP | FN | " + " | ".join(f"{k} flagged" for k in kinds) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(kinds))
    for d, fl in flags.items():
        p, r, tp, fp, fn = prf(fl, labels)
        per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for f, row in zip(fl, rows):
            per_kind[row["kind"]][0] += int(f)
            per_kind[row["kind"]][1] += 1
        cells = " | ".join(f"{per_kind[k][0]}/{per_kind[k][1]}" for k in kinds)
        print(f"| {d} | {p:.3f} | {r:.3f} | {tp} | {fp} | {fn} | {cells} |")
    if args.llm:
        verdicts: dict[str, int] = defaultdict(int)
        for row in rows:
            for m in row["reflectkit"]["decontam"].get("matches", []):
                if m.get("verdict"):
                    verdicts[m["verdict"]] += 1
        print("judge verdicts on candidate pairs:", dict(verdicts))


if __name__ == "__main__":
    main()
