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


def test_retry_after_is_honoured_and_retries_succeed(llama_server, tmp_path: Path, monkeypatch) -> None:
    from reflectkit.llm.retry import RetryPolicy

    waits: list[tuple[float | None, float]] = []
    original = RetryPolicy.backoff

    def recording_backoff(self, attempt, retry_after=None, rng=None):  # type: ignore[no-untyped-def]
        delay = original(self, attempt, retry_after, rng)
        waits.append((retry_after, delay))
        return delay

    monkeypatch.setattr(RetryPolicy, "backoff", recording_backoff)
    proxy = FaultProxy(llama_server.port, FaultPlan(p_429=0.5, retry_after="0.3", seed=1)).start()
    try:
        # 16 attempts: the start verification's 10 calls also meet the 50% of 429s (a run of 8 is then likely)
        spec = ModelSpec(model=llama_server.alias, base_url=proxy.base_url, max_attempts=16, backoff_base=5.0)
        s = recycle(ALPACA, tmp_path / "o.jsonl", phase="response", oracle=spec, run_dir=tmp_path / "run", limit=3,
                    max_tokens=16, cache_dir=tmp_path / "cache", concurrency=1)
    finally:
        proxy.stop()
    assert proxy.stats.r429 > 0 and s.failed == 0
    # Every 429 led to one wait, and each wait was the server's Retry-After (0.3 s), not the 5 s exponential backoff.
    assert len(waits) == proxy.stats.r429
    assert all(ra == pytest.approx(0.3) and d == pytest.approx(0.3) for ra, d in waits)


def test_backoff_and_retry_after_parsing() -> None:
    import random

    from reflectkit.llm.retry import RetryPolicy, parse_retry_after

    p = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(0)
    for attempt in range(1, 8):
        assert 0 <= p.backoff(attempt, None, rng) <= min(8.0, 2 ** (attempt - 1))
    assert p.backoff(3, 2.5) == 2.5 and p.backoff(1, 100.0) == 8.0
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({}) is None and parse_retry_after({"retry-after": "soon"}) is None
    assert 0 <= parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 1  # a date in the past -> 0
