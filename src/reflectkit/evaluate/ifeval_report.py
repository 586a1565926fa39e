"""``reflectkit eval ifeval``: wiring around the IFEval checkers (:mod:`reflectkit.evaluate.ifeval`), adding
bootstrap CIs over prompts (instruction-level CIs resample whole prompts) and the report files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reflectkit.answers import output_section
from reflectkit.errors import UserError
from reflectkit.evaluate.answersfile import read_jsonl, response_of
from reflectkit.evaluate.ci import rate, ratio_of_sums

_PROMPT_KEYS = {"strict": ("follow_all_instructions", "prompt_level_strict", "strict"),
                "loose": ("follow_all_instructions_loose", "prompt_level_loose", "loose")}
_LIST_KEYS = {"strict": ("follow_instruction_list", "instruction_level_strict", "follow_instruction_list_strict"),
              "loose": ("follow_instruction_list_loose", "instruction_level_loose")}


def _pick(d: dict[str, Any], names: tuple[str, ...], mode: str) -> Any:
    sub = d.get(mode)
    if isinstance(sub, dict):  # {"strict": {...}, "loose": {...}} layout
        for n in ("follow_all_instructions", "follow_instruction_list"):
            if n in sub and n in names[0]:
                return sub[n]
    for n in names:
        if n in d:
            return d[n]
    raise KeyError(names[0])


def ifeval_rows(answers: Path, response_field: str | None = None, *, output_only: bool = True) -> list[dict[str, Any]]:
    """Rows for the IFEval API: ``key`` (from ``key`` or a numeric ``id``) or ``prompt``, and ``response``
    (only the ``<output>`` part of Reflection-format answers)."""
    rows = []
    for r in read_jsonl(answers):
        text = response_of(r, answers, response_field)
        out: dict[str, Any] = {"response": output_section(text) if output_only else text}
        key = r.get("key", r.get("id"))
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            out["key"] = int(key)
        if isinstance(r.get("prompt"), str):
            out["prompt"] = r["prompt"]
        if "key" not in out and "prompt" not in out:
            raise UserError(f"{answers}:{r['_line']}: IFEval rows need 'key' (or a numeric 'id') or 'prompt'")
        rows.append(out)
    return rows


def score_ifeval(rows: list[dict[str, Any]], *, input_data: Path | None = None, n_boot: int = 2000,
                 title: str = "IFEval") -> dict[str, Any]:
    from reflectkit.evaluate.ifeval import evaluate_responses

    res = evaluate_responses(rows, input_data=input_data)
    per_prompt = res.get("per_prompt") or []
    per_item = []
    for i, p in enumerate(per_prompt):
        m: dict[str, Any] = {}
        for mode in ("strict", "loose"):
            m[f"prompt_level_{mode}"] = int(bool(_pick(p, _PROMPT_KEYS[mode], mode)))
            lst = [bool(x) for x in _pick(p, _LIST_KEYS[mode], mode)]
            m[f"instruction_level_{mode}"] = [sum(lst), len(lst)]
        per_item.append({"id": str(p.get("key", p.get("id", i))), "metrics": m})
    metrics: dict[str, Any] = {}
    for name in ("prompt_level_strict", "instruction_level_strict", "prompt_level_loose", "instruction_level_loose"):
        vals = np.array([it["metrics"][name] for it in per_item], dtype=float)
        stat = ratio_of_sums if name.startswith("instruction") else np.mean
        metrics[name] = rate(vals, stat, n_boot=n_boot)
        if name.startswith("instruction"):
            metrics[name]["n"] = int(vals[:, 1].sum()) if len(vals) else 0
        if name in res and abs(float(res[name]) - metrics[name]["value"]) > 1e-9:
            raise AssertionError(f"IFEval per-prompt results disagree with the checker's {name}")
    counts = {k: v for k, v in res.items() if isinstance(v, int) and not isinstance(v, bool)}
    counts.setdefault("prompts", len(per_item))
    return {
        "kind": "ifeval", "title": title, "metrics": metrics, "percent_metrics": list(metrics), "counts": counts,
        "notes": ["Prompt-level: all instructions of a prompt followed; instruction-level: share of instructions followed. "
                  "Loose: the published response variants (first/last line removed, markdown asterisks removed).",
                  "95% CIs: percentile bootstrap over prompts (instruction-level resamples whole prompts)."],
        "per_item": per_item,
    }


def eval_ifeval_file(answers: Path, *, input_data: Path | None = None, response_field: str | None = None,
                     output_only: bool = True, n_boot: int = 2000) -> dict[str, Any]:
    report = score_ifeval(ifeval_rows(Path(answers), response_field, output_only=output_only), input_data=input_data,
                          n_boot=n_boot, title=f"IFEval ({Path(answers).name})")
    report["inputs"] = {"answers": str(answers), "input_data": str(input_data) if input_data else None}
    return report
