"""Scale benchmark for ``reflectkit decontaminate`` (n-gram + embedding stages).

Synthesises N training rows (default 50,000) by repeating the shared Alpaca rows with word-level perturbations
(every copy is a distinct text, so nothing is free in the embedding cache) plus a few hundred planted leaks
(GSM8K test and IFEval prompts), and checks them against GSM8K test + IFEval + the five pairwise eval sets.

Each measurement runs in its own subprocess so that peak RSS (ru_maxrss) belongs to it alone:

* ``pipeline-cold``: the full API (read, n-gram, embed with an empty disk cache, chunked search, write, report);
* ``pipeline-warm``: the same again with the embedding cache filled (repeated runs / repeated benchmarks);
* ``ngram``: the n-gram detector alone;
* ``baseline``: plain ``SentenceTransformer.encode`` (no cache) + ``sentence_transformers.util.semantic_search``
  (top-k per benchmark item), i.e. the LLM Decontaminator recipe; in the same process both searches are also
  timed on identical embeddings and their top-k results compared.

    .venv/bin/python benchmarks/bench_decontam.py [--rows 50000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCHES = ["gsm8k", "ifeval", "vicuna", "koala", "wizardlm", "sinstruct", "lima"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthesise(n: int, out: Path) -> dict[str, int]:
    from reflectkit.evalsets import data_dir, load_evalset

    d = data_dir()
    alpaca = json.loads((d / "instructions" / "alpaca_cherry_5pct.json").read_text(encoding="utf-8"))
    rng = random.Random(0)
    vocab = [w for a in alpaca[:500] for w in a["instruction"].split()]
    leaks = [(it.question, it.answer or "") for it in load_evalset("gsm8k")[:200]]
    leaks += [(it.question, "") for it in load_evalset("ifeval")[:100]]
    rows = []
    for i in range(n - len(leaks)):
        a = alpaca[i % len(alpaca)]
        copy = i // len(alpaca)
        ins = a["instruction"]
        if copy:
            w = ins.split()
            for _ in range(1 + copy % 3):
                op = rng.random()
                j = rng.randrange(len(w))
                if op < 0.4 and len(w) > 3:
                    del w[j]
                elif op < 0.7 and len(w) > 1:
                    k = min(len(w) - 1, j + 1)
                    w[j], w[k] = w[k], w[j]
                else:
                    w.insert(j, rng.choice(vocab))
            ins = " ".join(w) + f" (variant {copy})"
        rows.append({"instruction": ins, "input": a.get("input", ""), "output": a["output"]})
    for q, ans in leaks:
        rows.insert(rng.randrange(len(rows) + 1), {"instruction": q, "input": "", "output": ans or "Sure."})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return {"rows": len(rows), "planted_leaks": len(leaks)}


def measure_pipeline(train: Path, work: Path, cache: Path, ngram: bool, embedding: bool, tag: str) -> dict[str, Any]:
    from reflectkit.decontam.api import decontaminate

    t0 = time.perf_counter()
    s = decontaminate(train, BENCHES, work / f"clean-{tag}.jsonl", ngram=ngram, embedding=embedding,
                      run_dir=work / f"run-{tag}", cache_dir=cache)
    wall = time.perf_counter() - t0
    timings = json.loads(s.manifest_path.read_text())["decontam"].get("timings", {})
    return {"wall_s": wall, "rows": s.rows_in, "rows_per_s": s.rows_in / wall, "peak_rss_mb": _peak_mb(),
            "counts": s.counts, "timings": timings}


def measure_baseline(train: Path, work: Path, cache: Path, sample: int = 0) -> dict[str, Any]:
    import numpy as np
    import torch
    from sentence_transformers import util

    from reflectkit.data.io import read_dataset
    from reflectkit.decontam.benchmarks import load_benchmarks
    from reflectkit.decontam.search import top_k_search
    from reflectkit.embed import encode, load_model

    ds = read_dataset(train)
    texts = [f"{r.instruction}\n{r.input}" if r.input else r.instruction for r in ds.records]
    all_texts = texts
    if sample and sample < len(texts):  # plain encode on a prefix only (CPU time); search below uses every row
        texts = texts[:sample]
    bench_texts = [it.question for b in load_benchmarks(BENCHES) for it in b.items]
    t0 = time.perf_counter()
    model = load_model()
    temb = model.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    bemb = model.encode(bench_texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    t_enc = time.perf_counter() - t0
    t1 = time.perf_counter()
    ref = util.semantic_search(bemb, temb, top_k=1)
    t_ss = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    peak = _peak_mb()
    # search-only comparison on identical (cached) embeddings
    b_np = encode(bench_texts, cache_dir=cache)
    t_np = encode(all_texts, cache_dir=cache)
    t2 = time.perf_counter()
    st = top_k_search(b_np, t_np, k=1)
    t_ours = time.perf_counter() - t2
    t3 = time.perf_counter()
    ref2 = util.semantic_search(torch.from_numpy(b_np), torch.from_numpy(t_np), top_k=1)
    t_ss2 = time.perf_counter() - t3
    agree = float(np.mean([h[0]["corpus_id"] == r for h, r in zip(ref2, st.top_rows[:, 0].tolist())]))
    ref_scores = np.array([h[0]["score"] for h in ref2])
    return {"wall_s": wall, "baseline_rows": len(texts), "encode_s": t_enc, "semantic_search_s": t_ss, "rows_per_s": len(texts) / wall,
            "peak_rss_mb": peak, "search_only": {"ours_s": t_ours, "semantic_search_s": t_ss2, "top1_agreement": agree,
                                                  "max_abs_score_diff": float(np.max(np.abs(ref_scores - st.top_scores[:, 0])))},
            "baseline_top1_hits_over_0.86": int(sum(h[0]["score"] >= 0.86 for h in ref))}


def search_only(n_rows: int, n_items: int = 2890, dim: int = 384) -> dict[str, Any]:
    """Search alone at full scale on random unit vectors (no encoding): reflectkit's chunked search vs semantic_search."""
    import numpy as np
    import torch
    from sentence_transformers import util

    from reflectkit.decontam.search import top_k_search

    rng = np.random.default_rng(0)
    t = rng.normal(size=(n_rows, dim)).astype(np.float32)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    b = rng.normal(size=(n_items, dim)).astype(np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    t0 = time.perf_counter()
    st = top_k_search(b, t, k=1)
    ours = time.perf_counter() - t0
    t1 = time.perf_counter()
    ref = util.semantic_search(torch.from_numpy(b), torch.from_numpy(t), top_k=1)
    base = time.perf_counter() - t1
    agree = float(np.mean([h[0]["corpus_id"] == r for h, r in zip(ref, st.top_rows[:, 0].tolist())]))
    return {"rows": n_rows, "items": n_items, "ours_s": ours, "semantic_search_s": base, "top1_agreement": agree,
            "ours_also_gives_row_best": True}


def _child(args: argparse.Namespace) -> None:
    work, train, cache = Path(args.work), Path(args.work) / "train.jsonl", Path(args.work) / "cache"
    m = args.measure
    if m == "baseline":
        res = measure_baseline(train, work, cache, args.baseline_sample)
    else:
        res = measure_pipeline(train, work, cache, ngram=m != "embedding", embedding=m != "ngram", tag=m)
    print("RESULT " + json.dumps(res))


def _spawn(work: Path, measure: str, sample: int) -> dict[str, Any]:
    env = {**os.environ, "REFLECTKIT_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    p = subprocess.run([sys.executable, __file__, "--work", str(work), "--measure", measure,
                        "--baseline-sample", str(sample)], capture_output=True,
                       text=True, env=env)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        raise SystemExit(f"{measure} failed:\n{p.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--work")
    ap.add_argument("--measure")
    ap.add_argument("--search-only", action="store_true", help="only time the search on random vectors of full size")
    ap.add_argument("--baseline-sample", type=int, default=0,
                    help="plain-encode only the first N rows in the baseline (0 = all); its search still uses all rows")
    args = ap.parse_args()
    if args.measure:
        _child(args)
        return
    if args.search_only:
        r = search_only(args.rows)
        print(json.dumps(r))
        print(f"search only, {r['rows']} rows x {r['items']} items: semantic_search {r['semantic_search_s']:.2f}s, "
              f"reflectkit {r['ours_s']:.2f}s, ratio {r['semantic_search_s'] / r['ours_s']:.2f}x, "
              f"top-1 agreement {r['top1_agreement']:.4f}")
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="rk-bench-decontam-"))
    work.mkdir(parents=True, exist_ok=True)
    info = synthesise(args.rows, work / "train.jsonl")
    print(f"work dir {work}; {info['rows']} training rows ({info['planted_leaks']} planted leaks); "
          f"benchmarks: {', '.join(BENCHES)}; {os.cpu_count()} CPUs", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for m in ("ngram", "pipeline-cold", "pipeline-warm", "baseline"):
        results[m] = r = _spawn(work, m, args.baseline_sample)
        print(f"{m:14s} wall {r['wall_s']:8.1f}s  {r['rows_per_s']:9.0f} rows/s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
              + json.dumps({k: v for k, v in r.items() if k not in ("wall_s", "rows_per_s", "peak_rss_mb")}), flush=True)
    cold, warm, base = results["pipeline-cold"], results["pipeline-warm"], results["baseline"]
    emb_cold = cold["timings"].get("embedding_s", float("nan"))
    emb_warm = warm["timings"].get("embedding_s", float("nan"))
    so = base["search_only"]
    print("\nratios (baseline / reflectkit; > 1 means reflectkit is faster):")
    scale = cold["rows"] / base["baseline_rows"]  # 1.0 unless --baseline-sample
    base_wall = base["encode_s"] * scale + base["semantic_search_s"]
    note = "" if scale == 1 else f" (baseline encode measured on {base['baseline_rows']} rows, scaled x{scale:.2f})"
    print(f"  embedding stage, cold cache : {base_wall / emb_cold:.2f}x  ({base_wall:.1f}s vs {emb_cold:.1f}s){note}")
    print(f"  embedding stage, warm cache : {base_wall / emb_warm:.2f}x  ({base_wall:.1f}s vs {emb_warm:.1f}s)")
    print(f"  search only (same vectors)  : {so['semantic_search_s'] / so['ours_s']:.2f}x  "
          f"({so['semantic_search_s']:.2f}s vs {so['ours_s']:.2f}s), top-1 agreement {so['top1_agreement']:.4f}")
    print(f"  peak RSS baseline / pipeline-cold: {base['peak_rss_mb']:.0f} / {cold['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
