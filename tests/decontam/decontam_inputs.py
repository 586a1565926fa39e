"""Small real inputs for the decontamination tests, built from shared data (no hard-coded verdicts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PARAPHRASES = ROOT / "benchmarks" / "decontam_data" / "paraphrases.jsonl"
BENCH_IDX = [7, 68, 129, 190, 251, 312, 373, 434, 495, 556, 617, 678]


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def make_inputs(shared: Path, tmp: Path) -> dict[str, Any]:
    """A 12-item GSM8K-test benchmark file (``problem``/``solution`` columns) and a 12-row training file."""
    test = jsonl(shared / "benchmarks" / "gsm8k_test.jsonl")
    train = jsonl(shared / "instructions" / "gsm8k_train.jsonl")
    alpaca = json.loads((shared / "instructions" / "alpaca_cherry_5pct.json").read_text(encoding="utf-8"))
    para = {p["gsm8k_index"]: p["paraphrase"] for p in jsonl(PARAPHRASES)}
    bench = write_jsonl(tmp / "bench.jsonl", [{"problem": test[i]["question"], "solution": test[i]["answer"],
                                               "uid": f"t{i}"} for i in BENCH_IDX])
    rows = [
        {"instruction": test[7]["question"], "input": "", "output": "160", "truth": "verbatim"},
        {"instruction": "Here is a problem.", "input": "", "output": test[68]["answer"], "truth": "answer_leak"},
        {"instruction": para[190], "input": "", "output": "", "truth": "paraphrase"},
        {"instruction": para[251], "input": "", "output": "", "truth": "paraphrase"},
        *[{"instruction": t["question"], "input": "", "output": t["answer"], "truth": "negative"} for t in train[:4]],
        *[{"instruction": a["instruction"], "input": a["input"], "output": a["output"], "truth": "negative"}
          for a in alpaca[:4]],
    ]
    return {"bench": bench, "train": write_jsonl(tmp / "train.jsonl", rows), "rows": rows,
            "bench_map": {"question": "problem", "answer": "solution", "id": "uid"}}
