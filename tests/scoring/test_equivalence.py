"""The fast batched scorer against the literal per-sample reference (tests/scoring/reference.py)."""

from __future__ import annotations

import json
import math
import random
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


def sample_rows(rows: list[dict[str, Any]], n: int = 48, seed: int = 13) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """A seeded sample of ``n`` Alpaca rows for the suite's exactness check, split over every wrapper and a short
    ``max_length``: the 4 longest rows (one per group), rows with an input in every group, the rest at random.
    The 200/500-row comparisons run in ``benchmarks/bench_score.py`` (it prints the worst relative difference)."""
    size = lambda r: len(r["instruction"]) + len(r.get("input", "")) + len(r["output"])  # noqa: E731
    order = sorted(range(len(rows)), key=lambda i: (-size(rows[i]), i))
    longest = order[:4]
    rng = random.Random(seed)
    with_input = [i for i in range(len(rows)) if rows[i].get("input") and i not in longest]
    picked = longest + rng.sample(with_input, 4)
    rest = [i for i in range(len(rows)) if i not in picked]
    picked += rng.sample(rest, n - len(picked))
    groups = [("vicuna", 2048), ("alpaca", 2048), ("chat", 2048), ("vicuna", 256)]
    out: dict[tuple[str, int], list[dict[str, Any]]] = {g: [] for g in groups}
    for k, i in enumerate(picked):  # round-robin: each group gets one longest row and one row with an input
        out[groups[k % len(groups)]].append(rows[i])
    return out


@pytest.fixture(scope="module")
def sampled(alpaca_path) -> dict[tuple[str, int], list[dict[str, Any]]]:
    return sample_rows(json.loads(alpaca_path.read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("prompt,max_length", [("vicuna", 2048), ("alpaca", 2048), ("chat", 2048), ("vicuna", 256)])
def test_sampled_alpaca_rows_match_reference(student, sampled, prompt: str, max_length: int) -> None:
    """12 seeded rows per wrapper (48 in all; the longest rows and rows with an input in each), batched as the step
    batches them, against the literal per-sample reference; at max_length 256 the long rows are truncated."""
    model, tok = student
    rows = sampled[(prompt, max_length)]
    assert len(rows) == 12 and any(r.get("input") for r in rows)
    fast = Scorer(model, tok, prompt=prompt, max_length=max_length, coherence=False).score(
        [(r["instruction"], r.get("input", ""), r["output"]) for r in rows])
    worst = max(_compare(f, reference_sample(tok, model, r, max_length, prompt)) for f, r in zip(fast, rows))
    assert worst < REL
    truncated = sum(1 for f in fast if f and f["truncated"])
    assert (truncated > 0) == (max_length < 2048)
