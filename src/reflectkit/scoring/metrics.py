"""Score dictionaries from the four losses, plus gzip ratio.

Definitions (cited):

* ``ppl_x = exp(loss_x)`` (reference: ``perplexity = torch.exp(loss)``).
* ``ifd_ppl = ppl_out_condition / ppl_out_alone`` -- IFD as the perplexity ratio, Selective Reflection-Tuning
  eq. 3 and ``put_analysis_to_data.py`` (``ifd_ppl``).
* ``ifd_loss = loss_out_condition / loss_out_alone`` -- IFD as the ratio of mean losses, Cherry LLM
  (``data_by_IFD.py``: ``mean_rate = mean_2/mean_1``; ``put_analysis_to_data.py``: ``ifd_loss``).
* ``rifd_ppl = ppl_ins_condition / ppl_ins_alone`` -- reversed IFD (r-IFD), Selective Reflection-Tuning eq. 5,
  ``put_analysis_to_data.py`` (``rifd_ppl``); ``rifd_loss`` likewise with losses.
* ``gzip_ratio = len(gzip(response utf-8)) / len(response utf-8)`` (``mtime=0``, level 9): low values mean a
  repetitive response. A reflectkit addition, not from the papers.
"""

from __future__ import annotations

import gzip
import math
from typing import Any

from reflectkit.scoring.plan import PARTS, Plan

#: Significant digits kept in the output (float32 arithmetic carries about 7).
DIGITS = 7


def _r(x: float) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{DIGITS}g}")


def _ratio(a: float, b: float) -> float | None:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return None
    return a / b


def gzip_ratio(text: str) -> float | None:
    raw = text.encode("utf-8")
    if not raw:
        return None
    return len(gzip.compress(raw, compresslevel=9, mtime=0)) / len(raw)


def score_dict(plan: Plan, losses: dict[str, tuple[float, int]], coherence: float | None, response: str) -> dict[str, Any]:
    """The per-text score dict stored under ``reflectkit.score`` (and ``.variants.<name>``)."""
    loss = {p: losses[p][0] for p in PARTS}
    ppl = {p: math.exp(v) if math.isfinite(v) else math.nan for p, v in loss.items()}
    d: dict[str, Any] = {"ins_len": plan.ins_len, "res_len": plan.res_len}
    for p in PARTS:
        d[f"loss_{p}"] = _r(loss[p])
    for p in PARTS:
        d[f"ppl_{p}"] = _r(ppl[p])
    d["ifd_ppl"] = _r(_ratio(ppl["out_condition"], ppl["out_alone"]))  # type: ignore[arg-type]
    d["ifd_loss"] = _r(_ratio(loss["out_condition"], loss["out_alone"]))  # type: ignore[arg-type]
    d["rifd_ppl"] = _r(_ratio(ppl["ins_condition"], ppl["ins_alone"]))  # type: ignore[arg-type]
    d["rifd_loss"] = _r(_ratio(loss["ins_condition"], loss["ins_alone"]))  # type: ignore[arg-type]
    d["coherence"] = _r(coherence) if coherence is not None else None
    d["gzip_ratio"] = _r(gzip_ratio(response))  # type: ignore[arg-type]
    d["target_tokens"] = {p: losses[p][1] for p in PARTS}
    d["truncated"] = bool(plan.truncated)
    if plan.truncated:
        d["truncated_parts"] = list(plan.truncated)
    return d


def missing_reason(d: dict[str, Any]) -> str | None:
    """Why some scores are null (e.g. a one-token instruction leaves no token to predict), or None."""
    empty = [p for p, n in d["target_tokens"].items() if n == 0]
    if not empty:
        return None
    return ("no target token left for " + ", ".join(empty) +
            " (a one-token text, or truncation at max_length, leaves nothing to predict); those scores are null")
