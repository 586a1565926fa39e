"""Benchmark: reflectkit's batched scorer vs the literal per-sample reference, same process, same rows, same model.

    .venv/bin/python benchmarks/bench_score.py --rows 500 [--threads 1] [--max-length 2048] [--json out.json]

Prints samples/s for each, their ratio, the worst relative difference over every loss/ppl/IFD/r-IFD value, and
peak memory (process max RSS; reflectkit runs first in each chunk, and the first chunk's peak is reflectkit's own),
and the work each did (positions through the transformer body and through the LM head). The two are interleaved
chunk by chunk so both see the same machine load. Coherence is off in both (the reference has none).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "scoring"))
ALPACA = ROOT.parent / "shared" / "data" / "instructions" / "alpaca_cherry_5pct.json"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--chunk", type=int, default=32, help="rows per fast-path call (as the Step's batch_size)")
    ap.add_argument("--token-budget", type=int, default=4096)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from reference import reference_sample, reference_scores
    from reflectkit.scoring.scorer import Scorer
    from reflectkit.student import load_student

    model, tok, info = load_student("embedded", device="cpu")
    rows = json.loads(ALPACA.read_text())[: args.rows]
    triples = [(r["instruction"], r.get("input", ""), r["output"]) for r in rows]
    scorer = Scorer(model, tok, max_length=args.max_length, token_budget=args.token_budget, coherence=False)
    base_rss = current_rss_mib()

    # Interleaved: each chunk is scored by reflectkit, then by the reference, so both see the same (noisy) load.
    fast: list = []
    ref: list = []
    t_fast = t_ref = 0.0
    peak_fast = peak_ref = base_rss
    for i in range(0, len(triples), args.chunk):
        t0 = time.perf_counter()
        fast.extend(scorer.score(triples[i : i + args.chunk]))
        t_fast += time.perf_counter() - t0
        peak_fast = max(peak_fast, rss_mib())
        t0 = time.perf_counter()
        ref.extend(reference_sample(tok, model, r, args.max_length) for r in rows[i : i + args.chunk])
        t_ref += time.perf_counter() - t0
        peak_ref = max(peak_ref, rss_mib())
        print(f"  rows {i + args.chunk}: reflectkit {t_fast:.1f}s, reference {t_ref:.1f}s", file=sys.stderr, flush=True)
    ref_tokens = ref_head = 0
    from reflectkit.scoring.plan import build_plans

    for p in build_plans([t for t in triples if t[2].strip()], scorer.wrapper, scorer.tokenize, args.max_length):
        for seq in p.seqs.values():
            ref_tokens += len(seq.ids)
    ref_head = ref_tokens

    worst, compared, nan_both = 0.0, 0, 0
    parts = ("ins_alone", "out_alone", "ins_condition", "out_condition")
    for f, r in zip(fast, ref):
        if not r:
            assert f is None
            continue
        rs = reference_scores(r)
        pairs = [(f[f"loss_{p}"], r["loss"][k]) for k, p in enumerate(parts)] + [(f[f"ppl_{p}"], r["ppl"][k]) for k, p in enumerate(parts)]
        pairs += [(f[k], rs[k]) for k in ("ifd_ppl", "rifd_ppl", "ifd_loss", "rifd_loss")]
        for a, b in pairs:
            if isinstance(b, float) and math.isnan(b):
                assert a is None
                nan_both += 1
                continue
            worst = max(worst, abs(a - b) / abs(b))
            compared += 1
    res = {
        "rows": len(rows), "threads": torch.get_num_threads(), "max_length": args.max_length,
        "reflectkit_s": round(t_fast, 2), "reference_s": round(t_ref, 2),
        "reflectkit_samples_per_s": round(len(rows) / t_fast, 3), "reference_samples_per_s": round(len(rows) / t_ref, 3),
        "speedup": round(t_ref / t_fast, 2), "values_compared": compared, "nan_in_both": nan_both,
        "worst_relative_difference": worst, "truncated_rows": sum(1 for f in fast if f and f["truncated"]),
        "body_tokens_reference": ref_tokens, "body_tokens_reflectkit": scorer.work.get("body_tokens", 0),
        "padding_tokens_reflectkit": scorer.work.get("padding", 0),
        "lm_head_positions_reference": ref_head, "lm_head_positions_reflectkit": scorer.work.get("head_positions", 0),
        "rss_after_load_mib": round(base_rss, 1), "peak_rss_mib_during_reflectkit": round(peak_fast, 1),
        "peak_rss_mib_incl_reference": round(peak_ref, 1),
        "load_avg_1m": round(__import__("os").getloadavg()[0], 2), "cpus": __import__("os").cpu_count(),
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
