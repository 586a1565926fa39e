"""The fast batched scorer against the literal per-sample reference (tests/scoring/reference.py)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from reference import reference_sample, reference_scores
from reflectkit.scoring.scorer import Scorer

REL = 1e-4
TINY = [
    {"instruction": "Name a color.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "2 + 3 = 5"},
    {"instruction": "Translate to French: cat", "input": "", "output": "chat"},  # one-token output: loss 2 is nan
    {"instruction": "Say hi", "input": "", "output": ""},  # empty output: no scores, as the reference
    {"instruction": "Repeat the word {output}", "input": "x", "output": "Sure: {output} {output}."},  # braces stay literal
    # the instruction occurs again inside the input and the output: the reference's rfind picks the last occurrence
    {"instruction": "Echo", "input": "Echo Echo", "output": "Echo"},
]


def _compare(fast: dict[str, Any] | None, ref: dict[str, list[float]]) -> float:
    if not ref:
        assert fast is None
        return 0.0
    assert fast is not None
    rs = reference_scores(ref)
    pairs = [(fast[f"loss_{p}"], ref["loss"][k]) for k, p in enumerate(("ins_alone", "out_alone", "ins_condition", "out_condition"))]
    pairs += [(fast[f"ppl_{p}"], ref["ppl"][k]) for k, p in enumerate(("ins_alone", "out_alone", "ins_condition", "out_condition"))]
    pairs += [(fast[k], rs[k]) for k in ("ifd_ppl", "rifd_ppl", "ifd_loss", "rifd_loss")]
    worst = 0.0
    for a, b in pairs:
        if math.isnan(b):  # e.g. a one-token output: no token to predict; the reference gives nan, we give null
            assert a is None
            continue
        assert a is not None
        worst = max(worst, abs(a - b) / abs(b))
    return worst


@pytest.mark.parametrize("prompt,max_length", [
    ("vicuna", 2048),
    pytest.param("alpaca", 2048, marks=pytest.mark.slow),
    pytest.param("vicuna", 40, marks=pytest.mark.slow),
])
def test_tiny_rows_match_reference(student, prompt: str, max_length: int) -> None:
    model, tok = student
    fast = Scorer(model, tok, prompt=prompt, max_length=max_length, coherence=False).score(
        [(r["instruction"], r["input"], r["output"]) for r in TINY])
    worst = max(_compare(f, reference_sample(tok, model, r, max_length, prompt)) for f, r in zip(fast, TINY))
    assert worst < REL
    if max_length == 40:  # the reverse query + instruction exceed 40 tokens: flagged, and still equal
        assert any(f and f["truncated"] and "ins_condition" in f["truncated_parts"] for f in fast)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 200 rows x (batched + four per-sample passes) on CPU: minutes idle, ~30 min on a busy 2-core box
def test_200_alpaca_rows_match_reference(student, alpaca_path) -> None:
    model, tok = student
    rows = json.loads(alpaca_path.read_text())[:200]
    fast = Scorer(model, tok, coherence=False).score([(r["instruction"], r.get("input", ""), r["output"]) for r in rows])
    worst = max(_compare(f, reference_sample(tok, model, r)) for f, r in zip(fast, rows))
    assert worst < REL
