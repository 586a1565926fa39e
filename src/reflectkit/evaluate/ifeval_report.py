"""``reflectkit eval ifeval``: wiring around the IFEval checkers (:mod:`reflectkit.evaluate.ifeval`), adding
bootstrap CIs over prompts (instruction-level CIs resample whole prompts) and the report files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reflectkit.evaluate.ci import rate, ratio_of_sums

METRICS = ("prompt_level_strict", "instruction_level_strict", "prompt_level_loose", "instruction_level_loose")


def score_ifeval(rows: list[dict[str, Any]], *, input_data: Path | None = None, output_only: bool = True,
                 n_boot: int = 2000, title: str = "IFEval") -> dict[str, Any]:
    """Score rows (``response`` + ``key``/``id``/``prompt``) with the IFEval checkers; add CIs over prompts."""
    from reflectkit.evaluate.ifeval import evaluate_responses

    res = evaluate_responses(rows, input_data=input_data, output_only=output_only)
    per_item = []
    for p in res["per_prompt"]:
        m: dict[str, Any] = {}
        for mode in ("strict", "loose"):
            m[f"prompt_level_{mode}"] = int(bool(p[f"follow_all_{mode}"]))
            lst = [bool(x) for x in p[f"follow_instruction_list_{mode}"]]
            m[f"instruction_level_{mode}"] = [sum(lst), len(lst)]
        per_item.append({"id": str(p["key"]), "metrics": m})
    metrics: dict[str, Any] = {}
    for name in METRICS:
        vals = np.array([it["metrics"][name] for it in per_item], dtype=float)
        if name.startswith("instruction"):
            metrics[name] = {**rate(vals, ratio_of_sums, n_boot=n_boot), "n": int(vals[:, 1].sum())}
        else:
            metrics[name] = rate(vals, n_boot=n_boot)
        if abs(float(res[name]) - metrics[name]["value"]) > 1e-9:  # the per-prompt values must give the same totals
            raise AssertionError(f"IFEval per-prompt results disagree with the checker's {name}")
    return {
        "kind": "ifeval", "title": title, "metrics": metrics, "percent_metrics": list(metrics),
        "counts": {"prompts": res.get("n_prompts", len(per_item)), "instructions": res.get("n_instructions")},
        "per_instruction_type": res.get("per_instruction_type"),
        "notes": ["Prompt-level: all instructions of a prompt followed; instruction-level: share of instructions followed. "
                  "Loose: the published response variants (first/last line removed, markdown asterisks removed). "
                  + ("Only the <output> part of Reflection-format answers is scored." if output_only else ""),
                  "95% CIs: percentile bootstrap over prompts (instruction-level resamples whole prompts)."],
        "per_item": per_item,
    }


def eval_ifeval_file(answers: Path, *, input_data: Path | None = None, response_field: str | None = None,
                     output_only: bool = True, n_boot: int = 2000) -> dict[str, Any]:
    from reflectkit.evaluate.ifeval import load_responses

    rows = load_responses(answers)
    if response_field:
        from reflectkit.evaluate.answersfile import response_of

        for r in rows:
            r["response"] = response_of(r, answers, response_field)
    report = score_ifeval(rows, input_data=input_data, output_only=output_only, n_boot=n_boot,
                          title=f"IFEval ({Path(answers).name})")
    report["inputs"] = {"answers": str(answers), "input_data": str(input_data) if input_data else None}
    return report
