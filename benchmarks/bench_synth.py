"""Synthesis verification rate and oracle calls per verified example, Reflection vs plain-CoT format.

Baseline: a single attempt per problem (rate@1, read from the first attempt of every row); compared with the full
``--attempts`` budget of retries at temperature > 0 in the same run::

    .venv/bin/python benchmarks/bench_synth.py --rows 6 --attempts 3 --max-tokens 192
    # with a real oracle: add --oracle-model NAME --oracle-base-url URL [--oracle-api-key-env VAR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def rate_at(ledger_rows: list[dict], k: int) -> tuple[int, int]:
    """(rows verified within the first k attempts, oracle calls those k attempts cost)."""
    verified = calls = 0
    for r in ledger_rows:
        log = r["reflectkit"]["synth"]["attempt_log"] if "reflectkit" in r else r["attempt_log"]
        calls += min(k, len(log))
        verified += any(e["result"] == "verified" for e in log[:k])
    return verified, calls


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=6)
    p.add_argument("--attempts", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=192)
    p.add_argument("--oracle-model")
    p.add_argument("--oracle-base-url")
    p.add_argument("--oracle-api-key-env")
    args = p.parse_args()
    from reflectkit.engine.ledger import Ledger
    from reflectkit.evalsets import builtin_path
    from reflectkit.llm.factory import ModelSpec
    from reflectkit.synth.api import synthesize

    oracle = ModelSpec(model=args.oracle_model, base_url=args.oracle_base_url, api_key_env=args.oracle_api_key_env)
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        work = Path(tmp)
        data = work / "gsm8k.jsonl"
        data.write_text("\n".join(builtin_path("gsm8k_train").read_text().splitlines()[: args.rows]) + "\n")
        print(f"oracle: {oracle.model or 'embedded SmolLM2-135M'}; {args.rows} GSM8K train problems; "
              f"up to {args.attempts} attempts; max_tokens {args.max_tokens}")
        print(f"{'format':11s} {'rate@1':>7s} {'calls/verified@1':>17s} {'rate@N':>7s} {'calls/verified@N':>17s} "
              f"{'malformed rows':>15s} {'wall s':>7s}")
        for fmt in ("reflection", "plain-cot"):
            s = synthesize(data, work / f"{fmt}.jsonl", format=fmt, oracle=oracle, answer_field="answer",
                           max_attempts=args.attempts, max_tokens=args.max_tokens, run_dir=work / f"run-{fmt}",
                           concurrency=1)
            ledger = Ledger(work / f"run-{fmt}" / "ledger.sqlite")
            rows = [res["rk"] for _i, _id, _st, res in ledger.iter_results()]
            ledger.close()
            v1, c1 = rate_at(rows, 1)
            vn, cn = rate_at(rows, args.attempts)
            st = s.manifest["synthesis"]
            cpv = lambda c, v: f"{c / v:.1f}" if v else "inf"  # noqa: E731
            print(f"{fmt:11s} {v1 / len(rows):>7.3f} {cpv(c1, v1):>17s} {vn / len(rows):>7.3f} {cpv(cn, vn):>17s} "
                  f"{st['counts'].get('malformed', 0):>15d} {s.wall_time_s:>7.0f}")
            assert cn == st["oracle_attempts_total"]
        print("ratio rate@N / rate@1 is the gain from verification retries (n/a when rate@1 is 0)")


if __name__ == "__main__":
    main()
