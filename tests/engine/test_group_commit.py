"""Group commit under SIGKILL: rows are committed in groups, and a kill -9 in the middle of them loses only rows
since the last commit; the re-run redoes exactly those (from the response cache), never duplicates a row, and
writes the same bytes as an uninterrupted run.

Served by the project's loopback server (``benchmarks/loopback_server.py``), answering in milliseconds: killing a
run *during* group commits needs thousands of rows per second, which no generating server gives on 2 cores.
"""

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
from conftest import ROOT, run_cli

from reflectkit.engine.ledger import Ledger

sys.path.insert(0, str(ROOT / "benchmarks"))
from loopback_server import ServerThread

pytestmark = pytest.mark.slow

N = 2500


def _cmd(data: Path, out: Path, run_dir: Path, base_url: str) -> list[str]:
    return ["recycle", str(data), "-o", str(out), "--phase", "response", "--oracle-model", "loopback",
            "--oracle-base-url", base_url, "--run-dir", str(run_dir), "--concurrency", "32", "--canary-every", "0"]


def _done(run_dir: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=1)
        return int(con.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_during_group_commits_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Describe item {i}.", "output": f"Item {i}."}) + "\n"
                            for i in range(N)))
    with ServerThread(0.002, 0.004) as srv:
        ref = tmp_path / "ref.jsonl"
        r = run_cli(*_cmd(data, ref, tmp_path / "ref-run", srv.base_url),
                    env={"REFLECTKIT_CACHE_DIR": str(tmp_path / "c-ref")})
        assert r.returncode == 0, r.stderr

        env = {**os.environ, "REFLECTKIT_CACHE_DIR": str(tmp_path / "c-b")}
        out, run_dir = tmp_path / "b.jsonl", tmp_path / "b-run"
        proc = subprocess.Popen([sys.executable, "-m", "reflectkit", *_cmd(data, out, run_dir, srv.base_url)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while _done(run_dir) < N // 4 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = _done(run_dir)
        assert N // 4 <= killed_at < N and not out.exists()

        # what survived is whole: every committed row parses, one row per position, each group all or nothing
        led = Ledger(run_dir / "ledger.sqlite")
        results = list(led.iter_results())
        led.close()
        assert len(results) == killed_at == len({i for i, *_ in results})
        assert all(res["status"] == st for _i, _id, st, res in results)

        r2 = subprocess.run([sys.executable, "-m", "reflectkit", *_cmd(data, out, run_dir, srv.base_url)], env=env,
                            capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr
    assert out.read_bytes() == ref.read_bytes()
    m = json.loads((run_dir / "manifest.json").read_text())
    last = m["invocations"][-1]
    # the rows not committed at the kill were redone, each once: from the cache when the kill came after their
    # answer was cached, else by a new call (the start canaries of the guard are the only other calls)
    assert last["cache_hits"] + last["oracle_calls"] >= N - killed_at
    assert last["cache_hits"] < N // 4 + 300  # far fewer than the committed rows: those were not redone
    con = sqlite3.connect(run_dir / "ledger.sqlite")
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM rows").fetchone() == (N, N)
