"""Prices and --max-cost: the dry run prints an estimated cost; a run stops gracefully when the estimated spend
reaches --max-cost (exit 1, finished rows kept, the spend in the manifest, a message saying how to continue), and
re-running with a higher --max-cost finishes with the same bytes as an uninterrupted run.

Served by the project's loopback server (``benchmarks/loopback_server.py``): it reports the same token usage for
every call, so a spend can be checked exactly, which no generating server allows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from reflectkit.llm.base import FatalModelError
from reflectkit.llm.pricing import (
    Budget,
    BudgetExhausted,
    Prices,
    builtin_prices,
    prices_for,
)
from reflectkit.llm.spec import ModelSpec

sys.path.insert(0, str(ROOT / "benchmarks"))
from loopback_server import ServerThread

N = 12
PRICE = "1000"  # USD per million tokens, in and out: 130 tokens per call -> $0.13


def _rows(tmp_path: Path) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps({"instruction": f"Name the number {i}.", "output": f"{i}."}) + "\n"
                         for i in range(N)))
    return p


def _cmd(data: Path, out: Path, run_dir: Path, base_url: str, *extra: str) -> list[str]:
    return ["recycle", str(data), "-o", str(out), "--phase", "response", "--oracle-model", "loopback",
            "--oracle-base-url", base_url, "--run-dir", str(run_dir), "--concurrency", "1", "--max-tokens", "64",
            "--canary-every", "0", "--price-in", PRICE, "--price-out", PRICE, *extra]


def test_max_cost_stops_gracefully_and_resumes_byte_identical(tmp_path: Path) -> None:
    data = _rows(tmp_path)
    with ServerThread(0.001, 0.002) as srv:
        r = run_cli(*_cmd(data, tmp_path / "ref.jsonl", tmp_path / "ref-run", srv.base_url),
                    env={"REFLECTKIT_CACHE_DIR": str(tmp_path / "c-ref")})
        assert r.returncode == 0, r.stderr
        full = json.loads((tmp_path / "ref-run" / "manifest.json").read_text())["spend"]["estimated_total"]
        assert full > 0

        env = {"REFLECTKIT_CACHE_DIR": str(tmp_path / "c-b")}
        out, run_dir = tmp_path / "b.jsonl", tmp_path / "b-run"
        limit = full * 0.75  # the guard's start canaries are paid for too (about a third of the spend here)
        r1 = run_cli(*_cmd(data, out, run_dir, srv.base_url, "--max-cost", f"{limit:.4f}"), env=env)
        assert r1.returncode == 1, r1.stderr
        assert "--max-cost" in r1.stderr and "higher --max-cost to continue" in r1.stderr
        assert "Traceback" not in r1.stderr and not out.exists()
        m1 = json.loads((run_dir / "manifest.json").read_text())
        assert m1["status"] == "stopped: --max-cost reached"
        spent1 = m1["spend"]["estimated_total"]
        done1 = sum(m1["counts"].values())
        assert 0 < done1 < N and 0 < spent1 <= limit  # stopped before crossing the budget, finished rows kept

        r2 = run_cli(*_cmd(data, out, run_dir, srv.base_url, "--max-cost", f"{full * 3:.4f}"), env=env)
        assert r2.returncode == 0, r2.stderr
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    m2 = json.loads((run_dir / "manifest.json").read_text())
    assert sum(m2["counts"].values()) == N
    # the spend of the run counts both invocations; the second did only the rows the first had not
    assert spent1 < m2["spend"]["estimated_total"] <= full * 1.6  # + the second start's canaries
    assert m2["spend"]["by_role"]["oracle"]["source"] == "--price-in/--price-out"


def test_dry_run_prints_an_estimated_cost(tmp_path: Path) -> None:
    data = _rows(tmp_path)
    r = run_cli("recycle", str(data), "--phase", "response", "--oracle-model", "gpt-4o-mini", "--oracle-base-url",
                "http://127.0.0.1:9/v1", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "estimated_cost_usd: at most" in r.stdout and "built-in table (gpt-4o-mini)" in r.stdout


def test_prices_table_budget_and_errors() -> None:
    assert builtin_prices("gpt-4o-mini-2024-07-18") == ("gpt-4o-mini", (0.15, 0.60))
    assert builtin_prices("openai/gpt-4o") == ("gpt-4o", (2.50, 10.00))
    assert builtin_prices("my-local-model") is None
    p = prices_for(ModelSpec(model="gpt-4o", base_url="http://x/v1", price_in=1.0))
    assert p == Prices(1.0, 0.0, "--price-in/--price-out")  # an explicit price wins over the table
    b = Budget(Prices(1000.0, 1000.0, "t"), 1.0)
    held = b.reserve(100, 100)  # worst case $0.2 held while in flight
    b.settle(held, 100, 30)
    assert b.spent() == pytest.approx(0.13)
    b.spent_before = 0.8
    with pytest.raises(BudgetExhausted):
        b.reserve(100, 100)  # 0.93 + 0.2 would cross 1.0
    with pytest.raises(FatalModelError, match="--max-cost needs prices"):
        Budget(None, 5.0)
