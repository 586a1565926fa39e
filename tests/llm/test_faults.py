"""Fault injection: 429 (with Retry-After), 500 and dropped connections between client and a real server."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import ALPACA
from helpers.fault_proxy import FaultPlan, FaultProxy
from reflectkit.llm.factory import ModelSpec
from reflectkit.recycle.api import recycle

pytestmark = [pytest.mark.server, pytest.mark.slow]

N = 8


def test_faults_never_lose_or_duplicate_rows(llama_server, tmp_path: Path) -> None:
    proxy = FaultProxy(llama_server.port, FaultPlan(p_429=0.25, p_500=0.2, p_drop=0.15, retry_after="0.05", seed=3)).start()
    try:
        spec = ModelSpec(model=llama_server.alias, base_url=proxy.base_url, max_attempts=2, backoff_base=0.02, timeout=120)
        out = tmp_path / "out.jsonl"
        s = recycle(ALPACA, out, phase="response", oracle=spec, run_dir=tmp_path / "run", limit=N, max_tokens=24,
                    cache_dir=tmp_path / "cache", concurrency=4)
    finally:
        proxy.stop()
    st = proxy.stats
    assert st.r429 > 0 and st.r500 > 0 and st.dropped > 0, st
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["reflectkit"]["id"] for r in rows]
    assert len(rows) == N and len(set(ids)) == N  # nothing lost, nothing duplicated, input order kept
    assert ids == sorted(ids)
    statuses = [r["reflectkit"]["recycle"]["status"] for r in rows]
    assert set(statuses) <= {"rewritten", "kept_original", "failed"}
    failed = [r for r in rows if r["reflectkit"]["recycle"]["status"] == "failed"]
    # With 2 attempts and ~60% faults some rows exhaust their attempts; each says why.
    assert failed, "expected at least one row to exhaust its attempts"
    for r in failed:
        reason = r["reflectkit"]["recycle"]["reason"]
        assert "after 2 attempts" in reason or "HTTP" in reason
        assert r["output"] == r["reflectkit"]["recycle"]["original"]["output"]  # failed rows keep their original text
    assert s.failed == len(failed) and s.exit_code == 1
    assert sum(s.counts.values()) == N
    con = sqlite3.connect(tmp_path / "run" / "ledger.sqlite")
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM rows").fetchone() == (N, N)

    # Re-run with a healthy endpoint: only the failed rows are redone, and then everything completes.
    spec_ok = ModelSpec(model=llama_server.alias, base_url=llama_server.base_url)
    s2 = recycle(ALPACA, out, phase="response", oracle=spec_ok, run_dir=tmp_path / "run", limit=N, max_tokens=24,
                 cache_dir=tmp_path / "cache")
    assert s2.failed == 0 and s2.calls == len(failed)
    assert len(out.read_text().splitlines()) == N


def test_retry_after_is_honoured_and_retries_succeed(llama_server, tmp_path: Path) -> None:
    proxy = FaultProxy(llama_server.port, FaultPlan(p_429=0.5, retry_after="0.3", seed=1)).start()
    try:
        spec = ModelSpec(model=llama_server.alias, base_url=proxy.base_url, max_attempts=8, backoff_base=5.0)
        s = recycle(ALPACA, tmp_path / "o.jsonl", phase="response", oracle=spec, run_dir=tmp_path / "run", limit=3,
                    max_tokens=16, cache_dir=tmp_path / "cache", concurrency=1)
    finally:
        proxy.stop()
    assert proxy.stats.r429 > 0 and s.failed == 0
    # backoff_base=5 s would make this take far longer if Retry-After (0.3 s) were ignored.
    assert s.wall_time_s < 5.0 * proxy.stats.r429
