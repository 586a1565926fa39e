"""A fleet of two real llama.cpp servers behind one --oracle-base-url list: both pass the identity check at start,
requests are spread by least outstanding requests, one server is killed mid-run, and every row still finishes,
each recording which endpoint answered it."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conftest import ALPACA, LlamaServer

from reflectkit.errors import UserError
from reflectkit.llm.spec import ModelSpec
from reflectkit.recycle.api import recycle

pytestmark = [pytest.mark.server, pytest.mark.slow]

N = 4


def _rows(tmp_path: Path) -> Path:
    p = tmp_path / "in.jsonl"  # short rows: the test is about the fleet, not about prompt length
    p.write_text("".join(json.dumps({"instruction": f"Name a colour ({i}).", "output": "Blue."}) + "\n"
                         for i in range(N)))
    return p


def _answered_by(run_dir: Path, url: str) -> int:
    """Rows committed to the ledger that ``url`` answered."""
    try:
        con = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=1)
        return sum(url in json.loads(e) for (e,) in con.execute("SELECT endpoints FROM row_endpoints"))
    except sqlite3.Error:
        return 0


def test_fleet_survives_a_killed_endpoint_and_records_who_answered(gguf_path, tmp_path: Path) -> None:
    a = LlamaServer(gguf_path, tmp_path / "a.log", n_ctx=2048)
    b = LlamaServer(gguf_path, tmp_path / "b.log", n_ctx=2048)
    try:
        spec = ModelSpec(model=a.alias, base_urls=(a.base_url, b.base_url), max_attempts=4, backoff_base=0.2,
                         canary_every=0, timeout=60)
        run_dir = tmp_path / "run"
        result: dict[str, object] = {}

        def go() -> None:
            try:
                result["s"] = recycle(_rows(tmp_path), tmp_path / "o.jsonl", phase="response", oracle=spec, run_dir=run_dir,
                                      limit=N, max_tokens=8, concurrency=4, cache_dir=tmp_path / "cache")
            except BaseException as exc:  # reported below
                result["error"] = exc

        t = threading.Thread(target=go)
        t.start()
        deadline = time.time() + 300
        while _answered_by(run_dir, b.base_url) < 1 and t.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        assert t.is_alive(), f"run ended before the kill: {result}"
        b.proc.kill()  # mid-run: B's requests in flight fail, B leaves the fleet, A takes the rest
        t.join(300)
    finally:
        a.stop()
        b.stop()
    assert "error" not in result, result.get("error")
    s = result["s"]
    assert s.failed == 0 and s.rows_out == N  # every row finished despite the dead endpoint
    con = sqlite3.connect(run_dir / "ledger.sqlite")
    answered = {i: json.loads(e) for i, e in con.execute("SELECT idx, endpoints FROM row_endpoints")}
    assert set(answered) == set(range(N))  # each row records the endpoint(s) that answered it
    by = {u for eps in answered.values() for u in eps}
    assert a.base_url in by and b.base_url in by  # B answered rows before it was killed
    last = max(answered)
    assert answered[last][-1] == a.base_url
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["endpoints"]["rows_answered"][a.base_url] >= 1
    stats = {e["url"]: e for e in man["endpoints"]["stats"]}
    assert stats[b.base_url]["healthy"] is False and stats[b.base_url]["errors"] >= 1
    assert man["models"]["oracle"]["fleet"] == [a.base_url, b.base_url]


def test_fleet_endpoints_must_be_the_same_model(gguf_path, llama_server, tmp_path: Path) -> None:
    other = LlamaServer(gguf_path, tmp_path / "o.log", alias="another-name", n_ctx=2048)
    try:
        spec = ModelSpec(model=llama_server.alias, base_urls=(llama_server.base_url, other.base_url), canary_every=0)
        with pytest.raises(UserError, match="are not the same model"):
            recycle(ALPACA, tmp_path / "o.jsonl", phase="response", oracle=spec, run_dir=tmp_path / "run", limit=1,
                    max_tokens=8)
    finally:
        other.stop()
