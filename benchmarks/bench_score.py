"""Benchmark: reflectkit's batched scorer vs the literal per-sample reference, same process, same rows, same model.

    .venv/bin/python benchmarks/bench_score.py --rows 500 [--threads 1] [--max-length 2048] [--json out.json]

Prints samples/s for each, their ratio, the worst relative difference over every loss/ppl/IFD/r-IFD value, and
peak memory (process max RSS; reflectkit runs first in each chunk, and the first chunk's peak is reflectkit's own),
and the work each did (positions through the transformer body and through the LM head). The two are interleaved
chunk by chunk so both see the same machine load.

It also measures this machine's float32 matmul roofline (best GFLOP/s of the student's MLP-shaped matmul, before and
after the run) and prints ``exact_method_speedup_ceiling``: the reference's time divided by the time the
unavoidable linear-layer FLOPs would take at that peak. No implementation that computes the same numbers can beat
that ratio on this machine. Coherence is off in both (the reference has none).
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


def matmul_gflops(hidden: int, inner: int, seconds: float = 3.0) -> float:
    """Best float32 GFLOP/s of plain ``torch`` matmuls with the student's MLP shape ([M x hidden] @ [hidden x inner]),
    at the current thread count: the roofline no implementation of the same arithmetic can beat on this machine."""
    import torch

    best = 0.0
    for m in (256, 1024, 4096):
        a, b = torch.randn(m, hidden), torch.randn(hidden, inner)
        for _ in range(2):
            a @ b
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            n += 1
        best = max(best, 2 * m * hidden * inner * n / (time.perf_counter() - t0) / 1e9)
    return best


def minimum_work(plans: list) -> tuple[int, int]:
    """Positions any exact method must run through the body and the LM head: a position's hidden state depends on
    its whole prefix, so it is computed once per *distinct* token prefix over all sequences of all passes (a trie),
    and the LM head is needed once per distinct prefix that predicts a target token. (Accounting only: this loops
    in Python over tokens, the scorer never does.)"""
    from reflectkit.scoring.plan import PARTS

    trie: dict[tuple[int, int], int] = {}
    head: set[int] = set()
    for p in plans:
        for part in PARTS:
            seq = p.seqs[part]
            node, first = 0, max(seq.start, 1)
            for j, tok in enumerate(seq.ids):
                node = trie.setdefault((node, tok), len(trie) + 1)
                if first <= j + 1 < len(seq.ids):  # this position predicts a target token
                    head.add(node)
    return len(trie), len(head)


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
    cfg = model.config
    peak_before = matmul_gflops(cfg.hidden_size, cfg.intermediate_size)

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

    plans = build_plans([t for t in triples if t[2].strip()], scorer.wrapper, scorer.tokenize, args.max_length)
    for p in plans:
        for seq in p.seqs.values():
            ref_tokens += len(seq.ids)
    min_body, min_head = minimum_work(plans)
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
    # Work in multiply-accumulates of the linear layers (81% of CPU time in a profile; attention scores excluded):
    # every position through the body costs ``body_macs``, every position through the LM head ``head_macs``. The
    # ratio is the speed-up a method doing exactly this work would get if time were proportional to MACs; the
    # "minimum work" figure is for the least work any exact method must do (see minimum_work).
    body_macs = sum(p.numel() for n, p in model.get_decoder().named_parameters() if p.dim() == 2 and "embed" not in n)
    head_macs = model.get_output_embeddings().weight.numel()
    fast_body = scorer.work.get("body_tokens", 0)
    fast_pad = scorer.work.get("padding", 0)
    fast_head = scorer.work.get("head_positions", 0)
    ref_macs = ref_tokens * (body_macs + head_macs)
    fast_macs = fast_body * body_macs + fast_head * head_macs
    ideal_macs = min_body * body_macs + min_head * head_macs
    peak = max(peak_before, matmul_gflops(cfg.hidden_size, cfg.intermediate_size))
    # The fastest an exact method could possibly be: the unavoidable linear-layer FLOPs (no padding, LM head on
    # target positions only, shared prefixes once) at the best matmul rate measured on this machine, everything else
    # (attention, norms, softmax, Python) free. If even this is under the target, no exact method reaches it here.
    ceiling = t_ref / (2 * ideal_macs / (peak * 1e9)) if ideal_macs else None
    res = {
        "rows": len(rows), "threads": torch.get_num_threads(), "max_length": args.max_length,
        "reflectkit_s": round(t_fast, 2), "reference_s": round(t_ref, 2),
        "reflectkit_samples_per_s": round(len(rows) / t_fast, 3), "reference_samples_per_s": round(len(rows) / t_ref, 3),
        "speedup": round(t_ref / t_fast, 2), "values_compared": compared, "nan_in_both": nan_both,
        "worst_relative_difference": worst, "truncated_rows": sum(1 for f in fast if f and f["truncated"]),
        "body_tokens_reference": ref_tokens, "body_tokens_reflectkit": scorer.work.get("body_tokens", 0),
        "padding_tokens_reflectkit": scorer.work.get("padding", 0),
        "lm_head_positions_reference": ref_head, "lm_head_positions_reflectkit": scorer.work.get("head_positions", 0),
        "body_macs_per_position": body_macs, "head_macs_per_position": head_macs,
        "linear_mac_ratio": round(ref_macs / fast_macs, 3) if fast_macs else None,
        "minimum_body_positions": min_body, "minimum_head_positions": min_head,
        "linear_mac_ratio_minimum_work": round(ref_macs / ideal_macs, 3) if ideal_macs else None,
        "matmul_peak_gflops": round(peak, 1),
        "achieved_linear_gflops_reference": round(2 * ref_macs / t_ref / 1e9, 1),
        "achieved_linear_gflops_reflectkit": round(2 * fast_macs / t_fast / 1e9, 1),
        "exact_method_speedup_ceiling": round(ceiling, 2) if ceiling else None,
        "rss_after_load_mib": round(base_rss, 1), "peak_rss_mib_during_reflectkit": round(peak_fast, 1),
        "peak_rss_mib_incl_reference": round(peak_ref, 1),
        "load_avg_1m": round(__import__("os").getloadavg()[0], 2), "cpus": __import__("os").cpu_count(),
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
