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


def swap_pick(seed: int, item_id: str) -> int:
    """The order (1 or 2) a pair is judged in under the single-order protocol: a seeded coin per pair id."""
    import hashlib

    return 1 + hashlib.sha256(f"{seed}\0{item_id}".encode()).digest()[0] % 2


def bench_item(r: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Per-pair meta-evaluation values: ``single_order`` (the paper's Table 1 protocol: the pair shown in one
    seeded random order, right or wrong), ``strict`` (right in both orders, its Table 5), ``order_averaged``,
    ``positional_agreement`` (same answer preferred after the swap) and ``calls``."""
    c1 = float(r["o1"] == r["label"])
    c2 = float(r["o2"] == ("2" if r["label"] == "1" else "1"))
    item = {"single_order": c1 if swap_pick(seed, str(r["id"])) == 1 else c2, "strict": c1 * c2,
            "order_averaged": (c1 + c2) / 2, "positional_agreement": float(consistent(r["o1"], r["o2"]))}
    if isinstance(r.get("calls"), (int, float)):
        item["calls"] = float(r["calls"])
    return item


def bench_report(rows: Sequence[dict[str, Any]], *, title: str, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Judge accuracy against labels: each row has ``id``, ``label`` ("1"/"2": the better answer in order 1), ``o1``,
    ``o2``, ``subset`` and optionally ``calls``. Ties and unknowns count as wrong."""

    def block(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        items = [bench_item(r, seed) for r in rs]
        col = lambda k: np.array([it[k] for it in items], dtype=float)  # noqa: E731
        unk = np.array([[(r["o1"] is None) + (r["o2"] is None), 2] for r in rs], dtype=float)
        out = {
            "single_order_accuracy": rate(col("single_order"), n_boot=n_boot),
            "strict_accuracy": rate(col("strict"), n_boot=n_boot),
            "order_averaged_accuracy": rate(col("order_averaged"), n_boot=n_boot),
            "positional_agreement": rate(col("positional_agreement"), n_boot=n_boot),
            "unknown_rate": {**rate(unk, ratio_of_sums, n_boot=n_boot), "n": 2 * len(rs)},
        }
        if items and all("calls" in it for it in items):
            out["calls_per_pair"] = rate(col("calls"), n_boot=n_boot)
        return out

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
        "percent_metrics": [k for k in metrics if not k.endswith("calls_per_pair")],
        "counts": counts,
        "per_item": [{"id": r["id"], "subset": r["subset"], "metrics": bench_item(r, seed)} for r in rows],
        "notes": [
            f"single-order accuracy: each pair judged in one order chosen by a seeded coin (seed {seed}; ReflectRM "
            "Table 1 protocol); strict: right in both orders (JudgeBench, ReflectRM Table 5); order-averaged: mean "
            "over the two orders; positional agreement (LLMBar): same answer preferred after swapping; ties and "
            "unknowns count as wrong. Chance: 50% single-order/order-averaged, 25% strict for an unbiased coin, 0% "
            "strict for a judge that always picks a position.",
            "95% CIs: percentile bootstrap over pairs (2000 resamples).",
        ],
    }


COMPARED = ("single_order", "strict", "order_averaged", "positional_agreement", "calls")


def compare_bench(this: dict[str, Any], others: Sequence[tuple[str, dict[str, Any]]], *, label: str = "this run",
                  n_boot: int = 2000) -> dict[str, Any]:
    """Side by side (the paper's ablation: base / trained / trained + two-stage inference): every run's metrics on
    the pairs all runs judged, and the paired bootstrap difference (this run - other) per metric."""
    from reflectkit.evaluate.ci import paired_bootstrap_diff

    runs = [(label, this)] + list(others)
    by_id = [{str(it["id"]): it["metrics"] for it in rep.get("per_item", [])} for _, rep in runs]
    common = [i for i in by_id[0] if all(i in b for b in by_id[1:])]
    table: dict[str, dict[str, Any]] = {}
    for (name, _), items in zip(runs, by_id):
        table[name] = {m: rate(np.array([items[i][m] for i in common], dtype=float), n_boot=n_boot)
                       for m in COMPARED if common and all(m in items[i] for i in common)}
    diffs: dict[str, dict[str, Any]] = {}
    for (name, _), items in zip(runs[1:], by_id[1:]):
        diffs[name] = {m: paired_bootstrap_diff([by_id[0][i][m] for i in common], [items[i][m] for i in common],
                                                n_boot=n_boot)
                       for m in COMPARED if m in table[label] and m in table[name]}
    return {"runs": [n for n, _ in runs], "pairs": len(common), "metrics": table, "diff_vs_this": diffs}


def compare_markdown(cmp: dict[str, Any]) -> str:
    runs = cmp["runs"]
    lines = ["", f"#### Side by side ({cmp['pairs']} pairs judged by every run)", "",
             "| metric | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for m in COMPARED:
        if not all(m in cmp["metrics"][r] for r in runs):
            continue
        pct = m != "calls"
        cells = []
        for r in runs:
            v = cmp["metrics"][r][m]
            cells.append(_fmt(v["value"], pct) + f" [{_fmt(v['ci'][0], pct)}, {_fmt(v['ci'][1], pct)}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", f"| {runs[0]} minus | metric | difference | 95% paired CI | significant |", "|---|---|---:|---:|---|"]
    for other, ms in cmp["diff_vs_this"].items():
        for m, d in ms.items():
            pct = m != "calls"
            lines.append(f"| {other} | {m} | {_fmt(d['diff'], pct, sign=True)} | [{_fmt(d['lo'], pct, sign=True)}, "
                         f"{_fmt(d['hi'], pct, sign=True)}] | {'yes' if d['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _fmt(x: Any, pct: bool, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    s = f"{100 * x:{'+' if sign else ''}.1f}" + ("pp" if sign else "%") if pct else f"{x:{'+' if sign else ''}.2f}"
    return s
