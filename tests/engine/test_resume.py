"""SIGKILL at any moment, re-run the same command: byte-identical output, no row lost or duplicated."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ALPACA, run_cli

pytestmark = pytest.mark.slow

N = 5


def _cmd(out: Path, run_dir: Path) -> list[str]:
    return ["recycle", str(ALPACA), "-o", str(out), "--phase", "response", "--limit", str(N), "--max-tokens", "24",
            "--concurrency", "1", "--run-dir", str(run_dir)]


def _done(run_dir: Path) -> int:
    db = run_dir / "ledger.sqlite"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        return int(con.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_and_resume_is_byte_identical(tmp_path: Path) -> None:
    # Reference: an uninterrupted run with its own cache.
    ref = tmp_path / "ref.jsonl"
    r = run_cli(*_cmd(ref, tmp_path / "ref-run"), env={"REFLECTKIT_CACHE_DIR": str(tmp_path / "cache-ref")})
    assert r.returncode == 0, r.stderr

    # Interrupted: kill -9 once at least two rows are in the ledger, then re-run the same command.
    env = {**os.environ, "REFLECTKIT_CACHE_DIR": str(tmp_path / "cache-b")}
    out, run_dir = tmp_path / "b.jsonl", tmp_path / "b-run"
    proc = subprocess.Popen([sys.executable, "-m", "reflectkit", *_cmd(out, run_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while _done(run_dir) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _done(run_dir)
    assert 2 <= killed_at < N and not out.exists()

    r = subprocess.run([sys.executable, "-m", "reflectkit", *_cmd(out, run_dir)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"oracle calls {N - killed_at}," in r.stdout  # finished rows were not redone
    assert out.read_bytes() == ref.read_bytes()
    con = sqlite3.connect(run_dir / "ledger.sqlite")
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM rows").fetchone() == (N, N)


def test_run_dir_refuses_a_different_command(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    r1 = run_cli("recycle", str(ALPACA), "-o", str(tmp_path / "a.jsonl"), "--limit", "1", "--max-tokens", "8",
                 "--run-dir", str(run_dir))
    assert r1.returncode == 0, r1.stderr
    r2 = run_cli("recycle", str(ALPACA), "-o", str(tmp_path / "a.jsonl"), "--limit", "1", "--max-tokens", "9",
                 "--run-dir", str(run_dir))
    assert r2.returncode == 2 and "holds a different run" in r2.stderr
    r3 = run_cli("recycle", str(ALPACA), "-o", str(tmp_path / "a.jsonl"), "--limit", "1", "--max-tokens", "9",
                 "--run-dir", str(run_dir), "--restart")
    assert r3.returncode == 0, r3.stderr
