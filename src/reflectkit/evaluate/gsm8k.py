"""GSM8K exact match with lm-evaluation-harness's two extractions (strict ``#### N`` and flexible last number).

Only the ``<output>`` part is scored when an answer uses the ``<thinking>/<output>`` format (as Reflection 70B's
harness did). Rows whose generation failed, or that have no number, count as wrong and are counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reflectkit.answers import extract_flexible, extract_strict, normalize_number, output_section, reference_answer
from reflectkit.errors import UserError
from reflectkit.evaluate.answersfile import read_jsonl, response_of, row_id, step_status
from reflectkit.evaluate.ci import rate


def _references(rows: list[dict[str, Any]], references: str | None, data: str | Path | None) -> dict[str, str | None]:
    if references is None and all(isinstance(r.get("answer"), str) for r in rows):
        return {}
    from reflectkit.evalsets import load_evalset

    return {it.id: it.answer for it in load_evalset(references or "gsm8k", data=data)}


def score_gsm8k(rows: list[dict[str, Any]], *, path: str | Path = "<answers>", references: str | None = None,
                data: str | Path | None = None, response_field: str | None = None, n_boot: int = 2000) -> dict[str, Any]:
    """Score answer rows; returns the report dict (metrics with CIs, counts, per-item values)."""
    refs = _references(rows, references, data)
    per_item: list[dict[str, Any]] = []
    counts = {"rows": 0, "failed_generation": 0, "no_number_strict": 0, "no_number_flexible": 0,
              "output_tag_scored": 0, "no_reference": 0}
    for row in rows:
        rid = row_id(row, path)
        ref_text = row.get("answer") if isinstance(row.get("answer"), str) and not refs else refs.get(rid)
        if ref_text is None:
            raise UserError(f"{path}:{row.get('_line', '?')}: no reference answer for id {rid!r} "
                            f"(rows need an 'answer' field, or pass --references EVALSET)")
        ref = reference_answer(ref_text) if "####" in ref_text else normalize_number(ref_text)
        if ref is None:
            counts["no_reference"] += 1
        text = response_of(row, path, response_field)
        failed = step_status(row) == "failed"
        scored = output_section(text)
        if scored is not text:
            counts["output_tag_scored"] += 1
        strict, flex = extract_strict(scored), extract_flexible(scored)
        counts["rows"] += 1
        counts["failed_generation"] += failed
        counts["no_number_strict"] += strict is None
        counts["no_number_flexible"] += flex is None
        per_item.append({
            "id": rid,
            "metrics": {"strict_match": int(not failed and ref is not None and strict == ref),
                        "flexible_extract": int(not failed and ref is not None and flex == ref)},
            "reference": ref, "strict": strict, "flexible": flex,
        })
    metrics = {name: rate(np.array([p["metrics"][name] for p in per_item]), n_boot=n_boot)
               for name in ("strict_match", "flexible_extract")}
    return {
        "kind": "gsm8k",
        "title": f"GSM8K exact match ({Path(path).name})",
        "metrics": metrics,
        "percent_metrics": list(metrics),
        "counts": counts,
        "notes": [
            "strict-match: number after '#### '; flexible-extract: last number in the text (lm-evaluation-harness "
            "filters); commas, '$' and trailing periods normalised; only <output> is scored when present.",
            "95% CIs: percentile bootstrap over questions (2000 resamples).",
        ],
        "per_item": per_item,
    }


def eval_gsm8k_file(answers: str | Path, **kwargs: Any) -> dict[str, Any]:
    rows = read_jsonl(answers)
    report = score_gsm8k(rows, path=answers, **kwargs)
    report["inputs"] = {"answers": str(answers)}
    return report
