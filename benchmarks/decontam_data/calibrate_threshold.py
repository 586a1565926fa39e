"""Choose the embedding threshold on a held-out split (GSM8K *train* only, never the test set used for scoring).

Negatives: each of 1,000 GSM8K train questions against its most similar *other* GSM8K train question (the
hardest same-domain negatives there are). Positives: the same 1,000 questions against a number-substituted copy.
The threshold maximises Youden's J (recall on positives minus false-positive rate on hard negatives, i.e. equal
weight to a missed leak and a wrongly removed row) on a 0.01 grid; the grid value at which at most 1% of hard
negatives are flagged is printed as the high-precision alternative. The LLM judge's candidate floor
(``--judge-min-similarity``) is the largest grid value that keeps every held-out positive.

    .venv/bin/python benchmarks/decontam_data/calibrate_threshold.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from perturb import change_numbers  # noqa: E402

from reflectkit.embed import encode  # noqa: E402
from reflectkit.evalsets import data_dir  # noqa: E402


def main() -> None:
    path = data_dir() / "instructions" / "gsm8k_train.jsonl"
    qs = [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(len(qs), size=1000, replace=False).tolist())
    emb = encode(qs)
    sims = emb[sample] @ emb.T
    for row, i in enumerate(sample):
        sims[row, i] = -1.0
    neg = sims.max(axis=1)
    pert = encode([change_numbers(qs[i], seed=i) for i in sample])
    pos = np.sum(pert * emb[sample], axis=1)
    grid = np.round(np.arange(0.50, 1.0, 0.01), 2)
    fpr1 = next(float(t) for t in grid if float(np.mean(neg >= t)) <= 0.01)
    j = [float(np.mean(pos >= t) - np.mean(neg >= t)) for t in grid]
    thr = float(grid[int(np.argmax(j))])
    print(f"hard negatives: n={len(neg)} median={np.median(neg):.3f} p95={np.quantile(neg, .95):.3f} p99={np.quantile(neg, .99):.3f} max={neg.max():.3f}")
    print(f"number-substituted positives: n={len(pos)} min={pos.min():.3f} p1={np.quantile(pos, .01):.3f} median={np.median(pos):.3f}")
    for t in sorted({0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, thr, fpr1}):
        print(f"threshold {t:.2f}: negatives flagged {np.mean(neg >= t):.3%}, positives recalled {np.mean(pos >= t):.3%}")
    print(f"high-precision alternative (<=1% hard-negative FPR): {fpr1:.2f}")
    floor = max(float(t) for t in grid if float(np.mean(pos >= t)) >= 1.0)
    print(f"judge candidate floor (largest value keeping every held-out positive): {floor:.2f}")
    print(f"chosen threshold (max Youden's J = {max(j):.3f}): {thr:.2f}")


if __name__ == "__main__":
    main()
