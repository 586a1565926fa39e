"""The OpenAI-compatible client against a real llama.cpp server: recycle end to end, identity, cache, replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ALPACA, run_cli
from reflectkit.llm.cache import ResponseCache
from reflectkit.llm.factory import ModelSpec
from reflectkit.recycle.api import recycle

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _rows(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines()]


def test_recycle_via_endpoint_records_everything_and_second_run_makes_zero_calls(llama_server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = ModelSpec(model=llama_server.alias, base_url=llama_server.base_url)
    out = tmp_path / "out.jsonl"
    s1 = recycle(ALPACA, out, phase="response", oracle=spec, run_dir=tmp_path / "run1", limit=3, max_tokens=48,
                 cache_dir=cache, concurrency=2)
    rows = _rows(out)
    assert len(rows) == 3 and s1.calls == 3 and s1.cache_hits == 0
    for row in rows:
        rk = row["reflectkit"]["recycle"]
        assert rk["status"] in ("rewritten", "kept_original")
        assert rk["original"]["instruction"] and isinstance(rk["raw"], str) and rk["raw"]
        assert rk["oracle"] == f"openai-compatible:{llama_server.alias}"  # the verified hash is in the manifest
        assert rk["tokens"]["completion"] > 0 and rk["tokens"]["prompt"] > 0
        assert rk["truncated"] is True  # 48 tokens cannot hold a full reflection: flagged
        if rk["status"] == "kept_original":
            assert rk["reason"]
    man = s1.manifest
    assert man["models"]["oracle"]["served_models"] == [llama_server.alias]
    assert man["input"]["sha256"] and man["prompt_set"]["sha256"] and man["counts"]
    assert man["tokens"]["completion"] == sum(r["reflectkit"]["recycle"]["tokens"]["completion"] for r in rows)
    # Same command in a fresh run directory: everything comes from the cache.
    s2 = recycle(ALPACA, tmp_path / "out2.jsonl", phase="response", oracle=spec, run_dir=tmp_path / "run2", limit=3,
                 max_tokens=48, cache_dir=cache)
    assert s2.calls == 0 and s2.cache_hits == 3
    assert (tmp_path / "out2.jsonl").read_bytes() == out.read_bytes()
    # Same command in the same run directory: the ledger already has every row, nothing is even looked up.
    s3 = recycle(ALPACA, out, phase="response", oracle=spec, run_dir=tmp_path / "run1", limit=3, max_tokens=48,
                 cache_dir=cache)
    assert s3.calls == 0 and s3.cache_hits == 0

    # Export the cache and replay on "another machine" without the endpoint.
    export = tmp_path / "cache.jsonl.gz"
    assert ResponseCache(cache).export(export) == 3
    other = tmp_path / "other-cache"
    added, present = ResponseCache(other).import_(export)
    assert (added, present) == (3, 0)
    r = run_cli("--cache-dir", str(other), "recycle", str(ALPACA), "-o", str(tmp_path / "replay.jsonl"), "--limit", "3",
                "--max-tokens", "48", "--oracle-model", llama_server.alias, "--oracle-base-url", "http://127.0.0.1:9/v1",
                "--cache-only", "--run-dir", str(tmp_path / "run3"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "replay.jsonl").read_bytes() == out.read_bytes()


def test_cli_against_endpoint_and_structured_mode(llama_server, tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    r = run_cli("recycle", str(ALPACA), "-o", str(out), "--phase", "response", "--limit", "2", "--max-tokens", "96",
                "--structured", "--oracle-model", llama_server.alias, "--oracle-base-url", llama_server.base_url,
                "--run-dir", str(tmp_path / "run"))
    assert r.returncode in (0, 1), r.stderr
    # llama-cpp-python's server rejects json_schema (422) and takes json_object+schema instead: said clearly.
    assert "rejected response_format json_schema" in r.stderr and "json_object" in r.stderr
    rows = _rows(out)
    assert len(rows) == 2
    statuses = {row["reflectkit"]["recycle"]["status"] for row in rows}
    assert statuses <= {"rewritten", "kept_original"}
    # Grammar-constrained JSON parses even from a 135M model unless cut off by the token limit.
    for row in rows:
        rk = row["reflectkit"]["recycle"]
        if rk["status"] == "kept_original":
            assert "structured output" in rk["reason"]
        else:
            assert row["output"] != rk["original"]["output"]


def test_unreachable_endpoint_and_unknown_model_are_user_errors(tmp_path: Path) -> None:
    r = run_cli("recycle", str(ALPACA), "-o", str(tmp_path / "o.jsonl"), "--limit", "1", "--oracle-model", "m",
                "--oracle-base-url", "http://127.0.0.1:9/v1", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot reach the oracle endpoint (--oracle-base-url http://127.0.0.1:9/v1)" in r.stderr
    r = run_cli("recycle", str(ALPACA), "-o", str(tmp_path / "o.jsonl"), "--limit", "1", "--oracle-model", "/no/such.gguf")
    assert r.returncode == 2 and "no such .gguf file" in r.stderr
