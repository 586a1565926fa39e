"""W/T/L and judge-bias metrics with bootstrap CIs, from per-question outcomes in both orders.

For a question, ``o1`` is the outcome with model A's answer shown first, ``o2`` with model B's answer first.
Model A *wins* an order when its answer gets the higher score in that order.

W/T/L follows Cherry_LLM ``review_eval_score.py get_scores_all`` (the Reflection-Tuning protocol):
Win if A wins both orders or wins one and ties the other; Tie if it ties both, or wins one and loses the other;
Lose otherwise. Win rate = (W - L) / N + 1 (1.0 = parity, 2.0 = always wins).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from reflectkit.evaluate.ci import rate, ratio_of_sums
from reflectkit.evaluate.judge_parse import Outcome

_WTL = {  # (A's result in order 1, in order 2) -> W/T/L
    ("win", "win"): "W", ("lose", "win"): "T", ("win", "lose"): "T", ("tie", "win"): "W", ("win", "tie"): "W",
    ("tie", "lose"): "L", ("lose", "tie"): "L", ("tie", "tie"): "T", ("lose", "lose"): "L",
}


def a_result(outcome: str, a_position: str) -> str:
    return "tie" if outcome == "tie" else ("win" if outcome == a_position else "lose")


def wtl(o1: Outcome, o2: Outcome) -> str | None:
    """W, T or L for model A; ``None`` when either order is unparsed."""
    if o1 is None or o2 is None:
        return None
    return _WTL[(a_result(o1, "1"), a_result(o2, "2"))]


def consistent(o1: Outcome, o2: Outcome) -> bool:
    """The verdict survives the swap (same answer preferred, or tie both times)."""
    return (o1, o2) in (("1", "2"), ("2", "1"), ("tie", "tie"))


def pairwise_report(outcomes: Sequence[tuple[Outcome, Outcome]], *, labels: tuple[str, str] = ("A", "B"),
                    n_boot: int = 2000) -> dict[str, Any]:
    """Metrics for model A (``labels[0]``) vs model B over questions; unparsed judgments counted, not dropped."""
    n_q = len(outcomes)
    parsed = [(o1, o2) for o1, o2 in outcomes if o1 is not None and o2 is not None]
    res = [wtl(o1, o2) for o1, o2 in parsed]
    W, T, L = res.count("W"), res.count("T"), res.count("L")
    val = np.array([{"W": 1, "T": 0, "L": -1}[r] for r in res], dtype=float)
    up = np.array([{"W": 1, "T": 0, "L": -1}[wtl(o1 or "tie", o2 or "tie") or "T"] for o1, o2 in outcomes], dtype=float)
    first = np.array([[sum(o == "1" for o in pair), sum(o in ("1", "2") for o in pair)] for pair in outcomes], dtype=float)
    unparsed = np.array([[sum(o is None for o in pair), 2] for pair in outcomes], dtype=float)
    plus1 = lambda x: float(np.mean(x)) + 1.0  # noqa: E731
    metrics = {
        "win_rate": rate(val, plus1, n_boot=n_boot),
        "win_fraction": rate((val == 1).astype(float), n_boot=n_boot),
        "tie_fraction": rate((val == 0).astype(float), n_boot=n_boot),
        "loss_fraction": rate((val == -1).astype(float), n_boot=n_boot),
        "position_consistency": rate(np.array([consistent(o1, o2) for o1, o2 in parsed], dtype=float), n_boot=n_boot),
        "first_position_preference": rate(first, ratio_of_sums, n_boot=n_boot),
        "unparsed_rate": rate(unparsed, ratio_of_sums, n_boot=n_boot),
        "win_rate_upstream_unparsed_as_tie": rate(up, plus1, n_boot=n_boot),
    }
    metrics["first_position_preference"]["n"] = int(first[:, 1].sum()) if n_q else 0
    metrics["unparsed_rate"]["n"] = 2 * n_q
    counts = {
        "questions": n_q, "judged_both_orders": len(parsed), "W": W, "T": T, "L": L,
        "unparsed_judgments": int(unparsed[:, 0].sum()) if n_q else 0,
        "questions_with_unparsed": n_q - len(parsed),
        "first_position_both_orders": sum((o1, o2) == ("1", "1") for o1, o2 in parsed),
        "second_position_both_orders": sum((o1, o2) == ("2", "2") for o1, o2 in parsed),
    }
    a, b = labels
    return {
        "kind": "pairwise",
        "title": f"Pairwise judge: {a} vs {b} (both orders)",
        "labels": list(labels),
        "metrics": metrics,
        "percent_metrics": [k for k in metrics if "win_rate" not in k],
        "counts": counts,
        "notes": [
            f"W/T/L are for {a}; win rate = (W - L)/N + 1 over the N questions judged in both orders (1.0 = parity).",
            "position consistency: share of questions whose verdict survives swapping the answers; "
            "first-position preference: share of decisive judgments that favour the answer shown first (0.5 = none).",
            f"{counts['unparsed_judgments']} unparsed judgment(s) on {counts['questions_with_unparsed']} question(s) are "
            "excluded from W/T/L and counted here; 'win_rate_upstream_unparsed_as_tie' scores them as upstream does "
            "(parse failure -> [-1, -1] -> tie in that order).",
            "95% CIs: percentile bootstrap over questions (2000 resamples).",
        ],
    }


def bench_report(rows: Sequence[dict[str, Any]], *, title: str, n_boot: int = 2000) -> dict[str, Any]:
    """Judge accuracy against labels: each row has ``label`` ("1"/"2": the better answer in order 1), ``o1``,
    ``o2`` and ``subset``. Strict accuracy counts a pair only when right in both orders."""

    def block(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        c1 = np.array([r["o1"] == r["label"] for r in rs], dtype=float)
        c2 = np.array([r["o2"] == ("2" if r["label"] == "1" else "1") for r in rs], dtype=float)
        unk = np.array([[(r["o1"] is None) + (r["o2"] is None), 2] for r in rs], dtype=float)
        agree = np.array([consistent(r["o1"], r["o2"]) for r in rs], dtype=float)
        return {
            "strict_accuracy": rate(c1 * c2, n_boot=n_boot),
            "order_averaged_accuracy": rate((c1 + c2) / 2, n_boot=n_boot),
            "positional_agreement": rate(agree, n_boot=n_boot),
            "unknown_rate": {**rate(unk, ratio_of_sums, n_boot=n_boot), "n": 2 * len(rs)},
        }

    metrics = block(rows)
    subsets = sorted({r["subset"] for r in rows})
    per_subset = {s: block([r for r in rows if r["subset"] == s]) for s in subsets} if len(subsets) > 1 else {}
    for s, m in per_subset.items():
        for k, v in m.items():
            metrics[f"{s}/{k}"] = v
    counts = {
        "pairs": len(rows),
        "unknown_judgments": sum((r["o1"] is None) + (r["o2"] is None) for r in rows),
        "tie_judgments": sum((r["o1"] == "tie") + (r["o2"] == "tie") for r in rows),
    }
    return {
        "kind": "judge_bench",
        "title": title,
        "metrics": metrics,
        "percent_metrics": list(metrics),
        "counts": counts,
        "notes": [
            "strict accuracy: right in both orders (JudgeBench / ReflectRM); order-averaged: mean over the two orders; "
            "positional agreement (LLMBar): same verdict after swapping; ties and unknowns count as wrong. "
            "Chance: 50% order-averaged, 25% strict for an unbiased coin, 0% strict for a judge that always picks a position.",
            "95% CIs: percentile bootstrap over pairs (2000 resamples).",
        ],
    }
