"""A file named in a stage's options (here a benchmark file of decontaminate) is part of the stage key: editing it
re-runs the stage, leaving it alone skips it."""

from __future__ import annotations

import json
from pathlib import Path

from reflectkit.pipeline.runner import run_pipeline

Q = "Natalia sold clips to forty eight of her friends in April and then she sold half as many clips in May"


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _status(res, name: str) -> str:
    return {s["name"]: s["status"] for s in res.stages}[name]


def test_editing_a_benchmark_file_reruns_the_stage(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [{"instruction": Q, "input": "", "output": "72"},
                                      {"instruction": "Write a haiku about the sea.", "input": "", "output": "waves"}])
    bench = tmp_path / "bench.jsonl"
    _jsonl(bench, [{"question": "How many apples are left if you eat three of ten apples on a sunny day?"}])
    (tmp_path / "p.yaml").write_text(
        "input: train.jsonl\noutput: out\nreport: false\nstages:\n  - name: decontaminate\n"
        "    options: {against: [bench.jsonl], bench_map: question=question, embedding: false, mark_only: true}\n", encoding="utf-8")
    first = run_pipeline(tmp_path / "p.yaml", echo=lambda s: None)
    assert _status(first, "decontaminate") == "ran"
    rows = [json.loads(x) for x in first.final_data.read_text().splitlines()]
    assert [r["reflectkit"]["decontam"]["status"] for r in rows] == ["clean", "clean"]
    assert _status(run_pipeline(tmp_path / "p.yaml", echo=lambda s: None), "decontaminate") == "skipped"

    _jsonl(bench, [{"question": Q}])  # the benchmark now holds the first training row
    again = run_pipeline(tmp_path / "p.yaml", echo=lambda s: None)
    assert _status(again, "decontaminate") == "ran"
    rows = [json.loads(x) for x in again.final_data.read_text().splitlines()]
    assert [r["reflectkit"]["decontam"]["status"] for r in rows] == ["contaminated", "clean"]
