"""A stats stage in a pipeline (its `format` option shares a name with the shared record-shape keyword)."""

from __future__ import annotations

import json

from reflectkit.pipeline.runner import run_pipeline


def test_stats_stage_writes_its_table_in_the_format_asked(tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}",
             "reflectkit": {"score": {"status": "scored", "ifd_ppl": 0.5 + i / 10, "coherence": 0.8}}}
            for i in range(4)]
    (tmp_path / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "p.yaml").write_text(
        "input: scored.jsonl\noutput: out\nreport: false\n"
        "stages:\n  - name: stats\n    options: {inputs: [input], format: csv}\n", encoding="utf-8")
    res = run_pipeline(tmp_path / "p.yaml", echo=lambda s: None)
    table = (tmp_path / "out" / "stats" / "stats.csv").read_text(encoding="utf-8").splitlines()
    assert res.failed == 0 and len(table) == 2 and table[1].split(",")[:2] == [str(tmp_path / "scored.jsonl"), "4"]
    header = table[0].split(",")
    assert float(table[1].split(",")[header.index("ifd")]) == 0.65 and header[0] == "dataset"
