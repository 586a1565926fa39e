"""The real `reflectkit decontaminate` command in a subprocess."""

from __future__ import annotations

import json

from conftest import run_cli
from decontam_inputs import make_inputs, write_jsonl


def test_cli_removes_leaks_writes_report_and_manifest(shared_data, tmp_path) -> None:
    d = make_inputs(shared_data, tmp_path)
    out = tmp_path / "clean.jsonl"
    p = run_cli("decontaminate", str(d["train"]), "--against", str(d["bench"]), "gsm8k", "-o", str(out),
                "--no-embedding", "--bench-map", "question=problem,answer=solution,id=uid",
                "--run-dir", str(tmp_path / "run"), "-q")
    assert p.returncode == 0, p.stderr
    assert "contaminated=2" in p.stdout and "bench: 2/12 items matched, 2 rows flagged" in p.stdout
    assert len(out.read_text().splitlines()) == 10
    assert (tmp_path / "clean.contamination.md").exists() and (tmp_path / "clean.contamination.jsonl").exists()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["counts"]["contaminated"] == 2 and set(manifest["decontam"]["per_benchmark"]) == {"bench", "gsm8k"}


def test_cli_bad_input_is_one_line_and_exit_2(shared_data, tmp_path) -> None:
    d = make_inputs(shared_data, tmp_path)
    p = run_cli("decontaminate", str(d["train"]), "--against", "humaneval", "-o", str(tmp_path / "o.jsonl"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "unknown benchmark 'humaneval'; available: gsm8k" in p.stderr and "lima" in p.stderr
    p = run_cli("decontaminate", str(d["train"]), "-o", str(tmp_path / "o.jsonl"))
    assert p.returncode == 2 and "needs --against" in p.stderr
    empty = write_jsonl(tmp_path / "b.jsonl", [])
    p = run_cli("decontaminate", str(d["train"]), "--against", str(empty), "-o", str(tmp_path / "o.jsonl"))
    assert p.returncode == 2 and "benchmark file is empty" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("decontaminate", str(d["train"]), "--against", "gsm8k", "-o", str(tmp_path / "o.jsonl"),
                "--unknown-as", "maybe")
    assert p.returncode == 2 and "--unknown-as must be contaminated or clean" in p.stderr


def test_cli_dry_run_estimates_without_running(shared_data, tmp_path) -> None:
    d = make_inputs(shared_data, tmp_path)
    p = run_cli("decontaminate", str(d["train"]), "--against", "vicuna,koala", "--llm", "--top-k", "2", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "benchmark_items: 260" in p.stdout and "judge_calls_at_most: 520" in p.stdout
