"""Build the labelled decontamination set from shared data only (deterministic; writes labelled.jsonl).

Positives (contain a GSM8K *test* item), written as Alpaca rows:
  - verbatim:        40 test questions copied with their reference answers;
  - numbers_changed: 40 test questions with every number replaced (perturb.change_numbers), no answer;
  - paraphrase:      20 test questions rewritten by hand (paraphrases.jsonl, written for this set).
Negatives:
  - hard_negative:   100 GSM8K *train* questions with answers (same domain, same style);
  - easy_negative:   100 Alpaca rows.
Each row carries ``label`` (1 contaminated / 0 clean), ``kind`` and ``gsm8k_index`` (test item, or null).

    .venv/bin/python benchmarks/decontam_data/build_labelled.py [OUT]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from perturb import change_numbers  # noqa: E402

from reflectkit.evalsets import data_dir  # noqa: E402


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(seed: int = 1234) -> list[dict[str, Any]]:
    d = data_dir()
    test = _jsonl(d / "benchmarks" / "gsm8k_test.jsonl")
    train = _jsonl(d / "instructions" / "gsm8k_train.jsonl")
    alpaca = json.loads((d / "instructions" / "alpaca_cherry_5pct.json").read_text(encoding="utf-8"))
    paraphrases = _jsonl(HERE / "paraphrases.jsonl")
    used = {p["gsm8k_index"] for p in paraphrases}
    rng = random.Random(seed)
    pool = [i for i in range(len(test)) if i not in used]
    rng.shuffle(pool)
    verbatim, changed = pool[:40], pool[40:80]
    rows: list[dict[str, Any]] = []

    def add(instruction: str, output: str, label: int, kind: str, idx: int | None, input: str = "") -> None:
        rows.append({"instruction": instruction, "input": input, "output": output, "label": label, "kind": kind,
                     "gsm8k_index": idx})

    for i in verbatim:
        add(test[i]["question"], test[i]["answer"], 1, "verbatim", i)
    for i in changed:
        add(change_numbers(test[i]["question"], seed=i), "Let's solve it step by step.", 1, "numbers_changed", i)
    for p in paraphrases:
        add(p["paraphrase"], "Let's solve it step by step.", 1, "paraphrase", p["gsm8k_index"])
    for i in sorted(rng.sample(range(len(train)), 100)):
        add(train[i]["question"], train[i]["answer"], 0, "hard_negative", None)
    for i in sorted(rng.sample(range(len(alpaca)), 100)):
        a = alpaca[i]
        add(a["instruction"], a["output"], 0, "easy_negative", None, input=a.get("input", ""))
    rng.shuffle(rows)
    return rows


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "labelled.jsonl"
    rows = build()
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
