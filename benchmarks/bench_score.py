"""Benchmark: reflectkit's batched scorer vs the literal per-sample reference, same process, same rows, same model,
and peers side by side.

    .venv/bin/python benchmarks/bench_score.py --rows 500 [--threads 1] [--max-length 2048] [--json out.json]
    .venv/bin/python benchmarks/bench_score.py --rows 40 --threads 2 --peers wana,llama-cpp --json peers.json
    python3 benchmarks/bench_score.py --device cuda --dtype float32 --bf16 --rows 500     # on a GPU machine

**Reference vs reflectkit** (always, unless ``--no-reference``): samples/s of each on the same device and dtype,
their ratio, the worst relative difference over every loss/ppl/IFD/r-IFD value (``--max-rel-diff`` makes it exit
1 when exceeded: this is where the 200/500-row exactness comparisons live, the suite checks 48 seeded rows), peak
memory, and the work each did. The two are interleaved chunk by chunk so both see the same machine load. On CPU it
also measures the float32 matmul roofline and prints ``exact_method_speedup_ceiling`` (the reference's time divided
by the time the unavoidable linear-layer FLOPs would take at that peak). Coherence is off (the reference has none).

**``--bf16``**: reflectkit again at bfloat16 (float16 where the GPU has no bf16) on the same rows: samples/s and
agreement with float32 (Spearman of IFD and r-IFD, max relative difference, Cherry top-5% overlap).

**``--peers wana,llama-cpp``**: same rows, same run, against reflectkit's exact values:

* ``llama-cpp``: llama-cpp-python in-process (``logits_all=True``, the GGUF as shipped) computing the four passes of
  the recipe on the *same token sequences* as reflectkit (vicuna wrapper);
* ``wana``: wana 0.5.1 (PyPI), Cherry-style IFD with llama.cpp in-process on the same SmolLM2 GGUF, run in its own
  virtual environment (``--wana-venv``, created on first use with the AVX2 llama-cpp-python wheel of ``make venv``).
  wana's IFD is ``mean NLL(response | chat-template prompt) / mean NLL(response | BOS)``, two passes, no r-IFD, so it
  is compared with reflectkit's ``--prompt chat`` ``ifd_loss`` (the same definition; the remaining difference is
  wana's BOS before the unconditional response);

with rows/s, passes/s, and IFD agreement (Spearman, Cherry top-5% overlap, max relative difference).

``--student``: ``embedded`` (default), a local HF directory, or ``random:DIR`` -- a seeded random-weight model with
the config and tokenizer in DIR (the embedded student's weights, 98 MB as GGUF and 514 MB as float32, cannot travel
to a GPU machine that is reached with 64 MiB; throughput and exactness do not depend on the weights, the bf16
agreement does, so it is measured on the real student on CPU: see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "scoring"))
sys.path.insert(0, str(ROOT / "src"))
ALPACA = ROOT.parent / "shared" / "data" / "instructions" / "alpaca_cherry_5pct.json"
PARTS = ("ins_alone", "out_alone", "ins_condition", "out_condition")
LLAMA_VERSION = "0.3.36"
WANA_VERSION = "0.5.1"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def matmul_gflops(hidden: int, inner: int, device: str = "cpu", dtype: Any = None, seconds: float = 3.0) -> float:
    """Best GFLOP/s of plain ``torch`` matmuls with the student's MLP shape ([M x hidden] @ [hidden x inner]) at the
    current thread count / on the GPU: the roofline no implementation of the same arithmetic can beat here."""
    import torch

    best = 0.0
    for m in (256, 1024, 4096):
        a = torch.randn(m, hidden, device=device, dtype=dtype)
        b = torch.randn(hidden, inner, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        sync(device)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            n += 1
        sync(device)
        best = max(best, 2 * m * hidden * inner * n / (time.perf_counter() - t0) / 1e9)
    return best


def minimum_work(plans: list) -> tuple[int, int]:
    """Positions any exact method must run through the body and the LM head: a position's hidden state depends on
    its whole prefix, so it is computed once per *distinct* token prefix over all sequences of all passes (a trie),
    and the LM head is needed once per distinct prefix that predicts a target token. (Accounting only: this loops
    in Python over tokens, the scorer never does.)"""
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


# ------------------------------------------------------------------------------------------------ models


def load(student: str, device: str, dtype: str) -> tuple[Any, Any, dict[str, Any]]:
    import torch

    td = getattr(torch, dtype)
    if student.startswith("random:"):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        d = student[len("random:"):]
        torch.manual_seed(0)
        cfg = AutoConfig.from_pretrained(d)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)  # seeded: the same weights every run
        model = model.to(device=device, dtype=td).eval()
        tok = AutoTokenizer.from_pretrained(d)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return model, tok, {"student": "random weights, config and tokenizer of " + d}
    from reflectkit.student import load_student

    model, tok, info = load_student(student, device=device, dtype=td)
    return model, tok, {"student": info.identity}


def to_dtype(model: Any, dtype: str) -> Any:
    import torch

    return model.to(dtype=getattr(torch, dtype))


# ------------------------------------------------------------------------------------------------ agreement


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3:
        return None
    return float(spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic)


def cherry_top(values: list[float | None], frac: float = 0.05) -> set[int]:
    """Cherry LLM's selection: the highest IFD among rows with IFD < 1 (above 1 the instruction does not help),
    top ``frac`` of all rows (at least one)."""
    k = max(1, math.ceil(frac * len(values)))
    ok = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v) and v < 1]
    return {i for _, i in sorted(ok, reverse=True)[:k]}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def agreement(exact: list[float | None], other: list[float | None]) -> dict[str, Any]:
    """How far ``other`` is from ``exact`` (per row; rows where either has no value are left out)."""
    exact = [e if _finite(e) else None for e in exact]
    other = [o if _finite(o) else None for o in other]
    diffs = [abs(o - e) / abs(e) for e, o in zip(exact, other) if e is not None and o is not None and e != 0]
    a, b = cherry_top(exact), cherry_top(other)
    return {"spearman": round(spearman(exact, other) or float("nan"), 4),
            "cherry_top5pct_overlap": round(len(a & b) / max(1, len(a)), 3), "top5pct_rows": len(a),
            "max_relative_difference": max(diffs) if diffs else None,
            "median_relative_difference": sorted(diffs)[len(diffs) // 2] if diffs else None}


def field(scores: list[dict[str, Any] | None], key: str) -> list[float | None]:
    return [s.get(key) if s else None for s in scores]


# ------------------------------------------------------------------------------------------------ peers


def llama_cpp_peer(plans: list, threads: int, n_ctx: int) -> tuple[list[dict[str, Any] | None], float]:
    """The four passes from llama-cpp-python in-process on the same token sequences (``logits_all=True``).
    ``scores[t]`` are the logits after token t (they predict token t+1), so token t's log-prob is row t-1."""
    import numpy as np
    from llama_cpp import Llama

    from reflectkit.llm.embedded import embedded_gguf_path

    llm = Llama(model_path=str(embedded_gguf_path()), n_ctx=n_ctx, logits_all=True, n_threads=threads or None,
                n_batch=512, verbose=False)
    out: list[dict[str, Any] | None] = []
    t0 = time.perf_counter()
    for p in plans:
        losses = {}
        for part in PARTS:
            s = p.seqs[part]
            lo = max(s.start, 1)
            if len(s.ids) <= lo:
                losses[part] = math.nan
                continue
            llm.reset()
            llm.eval(s.ids)
            rows = np.asarray(llm.scores[lo - 1 : len(s.ids) - 1], dtype=np.float64)
            m = rows.max(axis=1, keepdims=True)
            lse = (m[:, 0] + np.log(np.exp(rows - m).sum(axis=1)))
            losses[part] = float(np.mean(lse - rows[np.arange(len(rows)), s.ids[lo:]]))
        out.append(_from_losses(losses))
    return out, time.perf_counter() - t0


def _from_losses(loss: dict[str, float]) -> dict[str, Any]:
    d: dict[str, Any] = {f"loss_{p}": loss[p] for p in PARTS}
    ppl = {p: math.exp(v) if math.isfinite(v) else math.nan for p, v in loss.items()}
    ratio = lambda a, b: a / b if math.isfinite(a) and math.isfinite(b) and b else None  # noqa: E731
    d["ifd_ppl"] = ratio(ppl["out_condition"], ppl["out_alone"])
    d["ifd_loss"] = ratio(loss["out_condition"], loss["out_alone"])
    d["rifd_ppl"] = ratio(ppl["ins_condition"], ppl["ins_alone"])
    return d


WANA_DRIVER = r"""
import json, sys, time
from wana.adapters.logprob.bundled import BundledLogProbProvider
from wana.adapters.scoring.ifd import IFDScorer
from wana.domain.example import Example, Message, Role
rows = [json.loads(l) for l in open(sys.argv[1])]
provider = BundledLogProbProvider(max_tokens=int(sys.argv[2]), threads=int(sys.argv[3]))
scorer = IFDScorer(provider)
out, t0 = [], time.perf_counter()
for k, r in enumerate(rows):
    user = r["instruction"] + ("\nInput:\n" + r["input"] if r.get("input") else "")
    ex = Example(str(k), (Message(Role.USER, user), Message(Role.ASSISTANT, r["output"])))
    try:
        s = {x.name: x.value for x in scorer.score(ex)}
        out.append({"ifd": s["ifd"]})
    except ValueError as exc:
        out.append({"error": str(exc)})
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": out, "model": provider.model_name}))
"""


def wana_python(venv: Path) -> Path:
    """The wana venv's interpreter; the venv is created on first use (wana 0.5.1 + the AVX2 llama-cpp-python wheel
    that ``make venv`` built: a native build segfaults on this CPU, and pip would otherwise compile one)."""
    py = venv / "bin" / "python"
    if py.exists():
        return py
    wheels = sorted((Path.home() / ".cache" / "reflectkit-wheels" / f"llama-{LLAMA_VERSION}-avx2").glob("*.whl"))
    if not wheels:
        raise SystemExit("no AVX2 llama-cpp-python wheel in ~/.cache/reflectkit-wheels: run `make venv` first")
    print(f"creating {venv} (wana {WANA_VERSION})", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheels[-1]), f"wana=={WANA_VERSION}"], check=True)
    return py


def wana_peer(rows: list[dict[str, Any]], venv: Path, threads: int, max_length: int, tmp: Path) -> tuple[list[float | None], float, str]:
    py = wana_python(venv)
    src = tmp / "wana_rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = subprocess.run([str(py), "-c", WANA_DRIVER, str(src), str(max_length), str(threads or os.cpu_count())],
                         capture_output=True, text=True, check=True)
    data = json.loads(res.stdout.strip().splitlines()[-1])
    version = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('wana'))"],
                             capture_output=True, text=True).stdout.strip()
    return [r.get("ifd") for r in data["rows"]], float(data["seconds"]), version


# ------------------------------------------------------------------------------------------------ main


def compare(fast: list, ref: list) -> tuple[float, int, int]:
    from reference import reference_scores

    worst, compared, nan_both = 0.0, 0, 0
    for f, r in zip(fast, ref):
        if not r:
            assert f is None
            continue
        rs = reference_scores(r)
        pairs = [(f[f"loss_{p}"], r["loss"][k]) for k, p in enumerate(PARTS)] + [(f[f"ppl_{p}"], r["ppl"][k]) for k, p in enumerate(PARTS)]
        pairs += [(f[k], rs[k]) for k in ("ifd_ppl", "rifd_ppl", "ifd_loss", "rifd_loss")]
        for a, b in pairs:
            if isinstance(b, float) and math.isnan(b):
                assert a is None
                nan_both += 1
                continue
            worst = max(worst, abs(a - b) / abs(b))
            compared += 1
    return worst, compared, nan_both


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0, help="torch (and llama.cpp) threads (0: their default)")
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--chunk", type=int, default=32, help="rows per fast-path call (as the Step's batch_size)")
    ap.add_argument("--token-budget", type=int, default=4096)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--student", default="embedded", help="embedded, an HF dir, or random:DIR (config + tokenizer)")
    ap.add_argument("--bf16", action="store_true", help="also score at bf16 (fp16 without bf16) and compare")
    ap.add_argument("--no-reference", action="store_true", help="skip the literal reference (peers only)")
    ap.add_argument("--peers", default="", help="comma list: wana, llama-cpp")
    ap.add_argument("--wana-venv", type=Path, default=Path("/tmp/bench-venv-wana"))
    ap.add_argument("--max-rel-diff", type=float, default=None, help="exit 1 if reflectkit differs more from the reference")
    ap.add_argument("--data", type=Path, default=ALPACA, help="the Alpaca JSON file (default: ../shared/...)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from reference import reference_sample
    from reflectkit.scoring.plan import build_plans
    from reflectkit.scoring.scorer import Scorer

    dev = args.device
    model, tok, ident = load(args.student, dev, args.dtype)
    rows = json.loads(args.data.read_text())[: args.rows]
    triples = [(r["instruction"], r.get("input", ""), r["output"]) for r in rows]
    scorer = Scorer(model, tok, max_length=args.max_length, token_budget=args.token_budget, coherence=False)
    base_rss = current_rss_mib()
    cfg = model.config
    mm_dtype = getattr(torch, args.dtype)
    peak_before = matmul_gflops(cfg.hidden_size, cfg.intermediate_size, dev, mm_dtype)
    res: dict[str, Any] = {
        "rows": len(rows), "device": dev, "device_name": torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "cpu",
        "dtype": args.dtype, "threads": torch.get_num_threads(), "max_length": args.max_length, **ident,
        "torch": torch.__version__, "cpus": os.cpu_count()}

    # Interleaved: each chunk is scored by reflectkit, then by the reference, so both see the same (noisy) load.
    fast: list = []
    ref: list = []
    t_fast = t_ref = 0.0
    peak_fast = peak_ref = base_rss
    if dev.startswith("cuda"):  # warm up kernels and the allocator once, outside the timings
        scorer.score(triples[:2])
        reference_sample(tok, model, rows[0], args.max_length)
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(0, len(triples), args.chunk):
        t0 = time.perf_counter()
        fast.extend(scorer.score(triples[i : i + args.chunk]))
        sync(dev)
        t_fast += time.perf_counter() - t0
        peak_fast = max(peak_fast, rss_mib())
        if not args.no_reference:
            t0 = time.perf_counter()
            ref.extend(reference_sample(tok, model, r, args.max_length) for r in rows[i : i + args.chunk])
            sync(dev)
            t_ref += time.perf_counter() - t0
            peak_ref = max(peak_ref, rss_mib())
        print(f"  rows {min(i + args.chunk, len(rows))}: reflectkit {t_fast:.1f}s, reference {t_ref:.1f}s",
              file=sys.stderr, flush=True)
    res.update({"reflectkit_s": round(t_fast, 3), "reflectkit_samples_per_s": round(len(rows) / t_fast, 3),
                "reflectkit_passes_per_s": round(4 * len(rows) / t_fast, 3),
                "truncated_rows": sum(1 for f in fast if f and f["truncated"])})
    plans = build_plans([t for t in triples if t[2].strip()], scorer.wrapper, scorer.tokenize, args.max_length)
    if not args.no_reference:
        worst, compared, nan_both = compare(fast, ref)
        ref_tokens = sum(len(seq.ids) for p in plans for seq in p.seqs.values())
        min_body, min_head = minimum_work(plans)
        # Work in multiply-accumulates of the linear layers (81% of CPU time in a profile; attention scores
        # excluded): every position through the body costs ``body_macs``, through the LM head ``head_macs``.
        body_macs = sum(p.numel() for n, p in model.get_decoder().named_parameters() if p.dim() == 2 and "embed" not in n)
        head_macs = model.get_output_embeddings().weight.numel()
        fast_body, fast_head = scorer.work.get("body_tokens", 0), scorer.work.get("head_positions", 0)
        ref_macs = ref_tokens * (body_macs + head_macs)
        fast_macs = fast_body * body_macs + fast_head * head_macs
        ideal_macs = min_body * body_macs + min_head * head_macs
        peak = max(peak_before, matmul_gflops(cfg.hidden_size, cfg.intermediate_size, dev, mm_dtype))
        # The fastest an exact method could possibly be: the unavoidable linear-layer FLOPs (no padding, LM head
        # on target positions only, shared prefixes once) at the best matmul rate measured here, the rest free.
        ceiling = t_ref / (2 * ideal_macs / (peak * 1e9)) if ideal_macs else None
        res.update({
            "reference_s": round(t_ref, 3), "reference_samples_per_s": round(len(rows) / t_ref, 3),
            "reference_passes_per_s": round(4 * len(rows) / t_ref, 3),
            "speedup": round(t_ref / t_fast, 2), "values_compared": compared, "nan_in_both": nan_both,
            "worst_relative_difference": worst,
            "body_tokens_reference": ref_tokens, "body_tokens_reflectkit": fast_body,
            "padding_tokens_reflectkit": scorer.work.get("padding", 0),
            "lm_head_positions_reference": ref_tokens, "lm_head_positions_reflectkit": fast_head,
            "linear_mac_ratio": round(ref_macs / fast_macs, 3) if fast_macs else None,
            "minimum_body_positions": min_body, "minimum_head_positions": min_head,
            "linear_mac_ratio_minimum_work": round(ref_macs / ideal_macs, 3) if ideal_macs else None,
            "matmul_peak_gflops": round(peak, 1),
            "achieved_linear_gflops_reference": round(2 * ref_macs / t_ref / 1e9, 1),
            "achieved_linear_gflops_reflectkit": round(2 * fast_macs / t_fast / 1e9, 1),
            "exact_method_speedup_ceiling": round(ceiling, 2) if ceiling else None,
        })
    if dev.startswith("cuda"):
        res["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    else:
        res.update({"rss_after_load_mib": round(base_rss, 1), "peak_rss_mib_during_reflectkit": round(peak_fast, 1),
                    "peak_rss_mib_incl_reference": round(peak_ref, 1)})

    if args.bf16:  # same rows, same scorer settings, half precision; agreement with the float32 values
        half = "bfloat16" if (not dev.startswith("cuda") or torch.cuda.is_bf16_supported()) else "float16"
        model16 = to_dtype(model, half)
        s16 = Scorer(model16, tok, max_length=args.max_length, token_budget=args.token_budget, coherence=False)
        if dev.startswith("cuda"):
            s16.score(triples[:2])
        t0 = time.perf_counter()
        low: list = []
        for i in range(0, len(triples), args.chunk):
            low.extend(s16.score(triples[i : i + args.chunk]))
        sync(dev)
        t16 = time.perf_counter() - t0
        res["half"] = {"dtype": half, "reflectkit_s": round(t16, 3), "reflectkit_samples_per_s": round(len(rows) / t16, 3),
                       "speedup_vs_float32_reflectkit": round(t_fast / t16, 2),
                       "ifd_ppl": agreement(field(fast, "ifd_ppl"), field(low, "ifd_ppl")),
                       "rifd_ppl": agreement(field(fast, "rifd_ppl"), field(low, "rifd_ppl"))}
        model = to_dtype(model16, args.dtype)

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if peers:
        res["peers"] = {"reflectkit": {"rows_per_s": res["reflectkit_samples_per_s"],
                                       "passes_per_s": res["reflectkit_passes_per_s"]}}
        if "reference_s" in res:
            res["peers"]["reference"] = {"rows_per_s": res["reference_samples_per_s"],
                                         "passes_per_s": res["reference_passes_per_s"],
                                         "ifd_ppl": agreement(field(fast, "ifd_ppl"),
                                                              [(r["ppl"][3] / r["ppl"][1]) if r else None for r in ref])}
    if "llama-cpp" in peers:
        import llama_cpp

        kept = [k for k, t in enumerate(triples) if t[2].strip()]
        lc, t_lc = llama_cpp_peer(plans, args.threads, args.max_length + 8)
        lc_full: list = [None] * len(triples)
        for k, s in zip(kept, lc):
            lc_full[k] = s
        res["peers"]["llama-cpp-python"] = {
            "version": llama_cpp.__version__, "seconds": round(t_lc, 2), "rows_per_s": round(len(rows) / t_lc, 3),
            "passes_per_s": round(4 * len(kept) / t_lc, 3),
            "ifd_ppl": agreement(field(fast, "ifd_ppl"), field(lc_full, "ifd_ppl")),
            "rifd_ppl": agreement(field(fast, "rifd_ppl"), field(lc_full, "rifd_ppl")),
            "losses_max_relative_difference": max(
                (abs(s[f"loss_{p}"] - f[f"loss_{p}"]) / abs(f[f"loss_{p}"]) for f, s in zip(fast, lc_full)
                 if f and s for p in PARTS if f[f"loss_{p}"] is not None and math.isfinite(s[f"loss_{p}"])), default=None)}
        print("  llama-cpp-python done", file=sys.stderr, flush=True)
    if "wana" in peers:
        import tempfile

        chat = Scorer(model, tok, prompt="chat", max_length=args.max_length, token_budget=args.token_budget,
                      coherence=False)
        t0 = time.perf_counter()
        chat_scores: list = []
        for i in range(0, len(triples), args.chunk):
            chat_scores.extend(chat.score(triples[i : i + args.chunk]))
        t_chat = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            w, t_w, version = wana_peer(rows, args.wana_venv, args.threads, args.max_length, Path(tmp))
        res["peers"]["wana"] = {
            "version": version, "seconds": round(t_w, 2), "rows_per_s": round(len(rows) / t_w, 3),
            "passes_per_s": round(2 * sum(1 for x in w if x is not None) / t_w, 3),
            "rows_scored": sum(1 for x in w if x is not None),
            "vs_reflectkit_chat_ifd_loss": agreement(field(chat_scores, "ifd_loss"), w),
            "reflectkit_chat_rows_per_s": round(len(rows) / t_chat, 3)}
        print("  wana done", file=sys.stderr, flush=True)

    res["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if args.max_rel_diff is not None and res.get("worst_relative_difference", 0) > args.max_rel_diff:
        print(f"FAIL: worst relative difference {res['worst_relative_difference']:.3g} > {args.max_rel_diff}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
