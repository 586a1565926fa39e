"""Real pipeline runs (embedded SmolLM2, one or two rows, 6-token answers): skip by content hash, re-run from a
changed stage on, resume after SIGKILL in a middle stage, --from / --only."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import recycle_stage, write_pipeline

from reflectkit.pipeline.runner import run_pipeline

pytestmark = pytest.mark.slow


def _state(out: Path, name: str) -> dict:
    return json.loads((out / name / "stage.json").read_text())


def _statuses(res) -> dict[str, str]:
    return {s["name"]: s["status"] for s in res.stages}


def test_changed_option_reruns_that_stage_and_later_only(tmp_path: Path) -> None:
    stages = recycle_stage("a") + recycle_stage("b") + recycle_stage("c")
    p = write_pipeline(tmp_path, stages, limit=1)
    first = run_pipeline(p, report=False, echo=lambda s: None)
    assert _statuses(first) == {"a": "ran", "b": "ran", "c": "ran"}
    out = tmp_path / "out"
    keys = {n: _state(out, n)["key"] for n in "abc"}
    a_manifest = (out / "a" / "manifest.json").read_bytes()

    again = run_pipeline(p, report=False, echo=lambda s: None)
    assert _statuses(again) == {"a": "skipped", "b": "skipped", "c": "skipped"}

    p.write_text(p.read_text().replace(recycle_stage("b"), recycle_stage("b", max_tokens=5)))
    changed = run_pipeline(p, report=False, echo=lambda s: None)
    assert _statuses(changed) == {"a": "skipped", "b": "ran", "c": "ran"}
    assert (out / "a" / "manifest.json").read_bytes() == a_manifest  # untouched
    assert _state(out, "a")["key"] == keys["a"]
    assert _state(out, "b")["key"] != keys["b"] and _state(out, "c")["key"] != keys["c"]
    assert json.loads((out / "b" / "manifest.json").read_text())["config"]["max_tokens"] == 5

    only = run_pipeline(p, only="b", report=False, echo=lambda s: None)
    assert _statuses(only) == {"a": "skipped", "b": "ran", "c": "not-selected"}
    frm = run_pipeline(p, from_stage="b", report=False, echo=lambda s: None)
    assert _statuses(frm) == {"a": "skipped", "b": "ran", "c": "ran"}


def _ledger_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(str(path), timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_in_middle_stage_then_resume(tmp_path: Path) -> None:
    # distinct max_tokens, so no stage is answered from the response cache of another
    stages = recycle_stage("a", 6) + recycle_stage("b", 7) + recycle_stage("c", 5)
    p = write_pipeline(tmp_path, stages, limit=2)
    out = tmp_path / "out"
    env = {**os.environ, "REFLECTKIT_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "reflectkit", "run", str(p)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    try:
        while _ledger_rows(out / "b" / "ledger.sqlite") < 1:
            assert proc.poll() is None, "pipeline ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _ledger_rows(out / "b" / "ledger.sqlite") == 1  # killed half-way through the middle stage
    assert _state(out, "b")["status"] == "running"
    assert not (out / "c").exists()

    lines: list[str] = []
    res = run_pipeline(p, echo=lines.append)
    assert _statuses(res) == {"a": "skipped", "b": "ran", "c": "ran"}, lines
    assert any("b: running (interrupted; resuming" in s for s in lines)
    inv = json.loads((out / "b" / "manifest.json").read_text())["invocations"]
    assert inv[-1]["oracle_calls"] + inv[-1]["cache_hits"] == 1  # only the missing row was asked for
    assert (out / "report.html").exists()

    # The resumed result is byte-identical to an uninterrupted run (same cache: no new oracle calls).
    q = tmp_path / "fresh"
    q.mkdir()
    p2 = write_pipeline(q, stages, limit=2)
    run_pipeline(p2, report=False, echo=lambda s: None)
    for n in "abc":
        assert (q / "out" / n / "output.jsonl").read_bytes() == (out / n / "output.jsonl").read_bytes()
