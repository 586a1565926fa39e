"""Recycle benchmark: reflectkit vs a bare load generator against the same local llama.cpp server.

    .venv/bin/python benchmarks/bench_recycle.py [--rows 200] [--max-tokens 128] [--concurrency 4]

1. Starts ``python -m llama_cpp.server`` with the embedded SmolLM2 GGUF on a free loopback port.
2. Baseline: a bare asyncio+httpx load generator sends the exact prompts reflectkit would send (response
   reflection, paper prompts, temperature 0) with the same concurrency; completion tokens/s.
3. reflectkit: ``recycle --phase response`` over the same rows (fresh cache + run dir); rows/s, completion tokens/s.
4. Saturation ratio = reflectkit tokens/s / baseline tokens/s (target >= 0.9).
5. Cached re-run in a fresh run directory: wall time as a fraction of the first run (target < 5%) and oracle calls (0).

The two runs alternate order across repeats (``--repeats``) so drift on a shared machine hits both equally.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import ALPACA, LlamaServer  # noqa: E402
from reflectkit.data.io import read_dataset  # noqa: E402
from reflectkit.llm.embedded import embedded_gguf_path  # noqa: E402
from reflectkit.llm.factory import ModelSpec  # noqa: E402
from reflectkit.recycle.api import recycle  # noqa: E402
from reflectkit.recycle.step import RecycleStep  # noqa: E402


async def bare_load(base_url: str, model: str, bodies: list[list[dict]], max_tokens: int, concurrency: int) -> tuple[float, int]:
    sem = asyncio.Semaphore(concurrency)
    tokens = 0
    async with httpx.AsyncClient(timeout=600) as client:

        async def one(messages: list[dict]) -> None:
            nonlocal tokens
            async with sem:
                r = await client.post(f"{base_url}/chat/completions", json={
                    "model": model, "messages": messages, "temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens})
                r.raise_for_status()
                tokens += r.json()["usage"]["completion_tokens"]

        t0 = time.perf_counter()
        await asyncio.gather(*(one(m) for m in bodies))
        return time.perf_counter() - t0, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-recycle-"))
    server = LlamaServer(embedded_gguf_path(), work / "server.log")
    try:
        ds = read_dataset(ALPACA).limit(args.rows)
        step = RecycleStep(phase="response", max_tokens=args.max_tokens)
        bodies = [step.response_messages(r.instruction, r.input, r.output) for r in ds.records]
        spec = ModelSpec(model=server.alias, base_url=server.base_url)
        results = []
        for rep in range(args.repeats):
            order = ["bare", "reflectkit"] if rep % 2 == 0 else ["reflectkit", "bare"]
            res: dict[str, float] = {}
            for which in order:
                if which == "bare":
                    wall, tok = asyncio.run(bare_load(server.base_url, server.alias, bodies, args.max_tokens, args.concurrency))
                    res["bare_wall"], res["bare_tok"] = wall, tok
                else:
                    cache = work / f"cache-{rep}"
                    t0 = time.perf_counter()
                    s = recycle(ALPACA, work / f"out-{rep}.jsonl", phase="response", oracle=spec, run_dir=work / f"run-{rep}",
                                limit=args.rows, max_tokens=args.max_tokens, cache_dir=cache, concurrency=args.concurrency)
                    wall = time.perf_counter() - t0
                    res["rk_wall"], res["rk_tok"], res["rk_calls"] = wall, s.manifest["tokens"]["completion"], s.calls
                    t0 = time.perf_counter()
                    s2 = recycle(ALPACA, work / f"out-cached-{rep}.jsonl", phase="response", oracle=spec,
                                 run_dir=work / f"run-cached-{rep}", limit=args.rows, max_tokens=args.max_tokens,
                                 cache_dir=cache, concurrency=args.concurrency)
                    res["cached_wall"], res["cached_calls"] = time.perf_counter() - t0, s2.calls
                    same = (work / f"out-{rep}.jsonl").read_bytes() == (work / f"out-cached-{rep}.jsonl").read_bytes()
                    res["cached_identical"] = float(same)
            results.append(res)
        for i, r in enumerate(results):
            bare_tps = r["bare_tok"] / r["bare_wall"]
            rk_tps = r["rk_tok"] / r["rk_wall"]
            report = {
                "repeat": i,
                "rows": args.rows,
                "max_tokens": args.max_tokens,
                "concurrency": args.concurrency,
                "baseline_completion_tokens_per_s": round(bare_tps, 2),
                "reflectkit_completion_tokens_per_s": round(rk_tps, 2),
                "reflectkit_rows_per_s": round(args.rows / r["rk_wall"], 3),
                "saturation_ratio": round(rk_tps / bare_tps, 3),
                "same_completion_tokens": r["bare_tok"] == r["rk_tok"],
                "oracle_calls_first_run": int(r["rk_calls"]),
                "cached_rerun_wall_fraction": round(r["cached_wall"] / r["rk_wall"], 4),
                "cached_rerun_oracle_calls": int(r["cached_calls"]),
                "cached_output_identical": bool(r["cached_identical"]),
            }
            print(json.dumps(report, indent=2))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
