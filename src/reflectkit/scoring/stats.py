"""``reflectkit stats``: the data-statistics table of Reflection-Tuning / Selective Reflection-Tuning.

Columns, per dataset (mean over the rows that have the value; ``rows`` = rows with scores / rows in the file):

=================  ============================================================================================
``ins_len``        instruction(+ "\\n" + input) length in tokens of the *student's* tokenizer (no special tokens)
``res_len``        response length in tokens of the student's tokenizer
``ins_ppl``        perplexity of the instruction(+input) alone: ``ppl_ins_alone`` (reference loss 1)
``res_ppl_alone``  perplexity of the response alone: ``ppl_out_alone`` (loss 2), "response ppl w/o instruction"
``res_ppl_cond``   perplexity of the response given the wrapped instruction: ``ppl_out_condition`` (loss 4)
``coherence``      cosine of all-MiniLM-L6-v2 embeddings of instruction(+input) and response
``ifd``            ``ifd_ppl`` = ppl_out_condition / ppl_out_alone (Selective Reflection-Tuning eq. 3)
``rifd``           ``rifd_ppl`` = ppl_ins_condition / ppl_ins_alone (r-IFD)
=================  ============================================================================================

The papers measure lengths with the llama2 tokenizer and perplexities with llama2-7b; reflectkit uses whatever
student scored the file, so values differ from the published ones while the definitions are the same.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from reflectkit.errors import UserError

COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ins_len", "ins_len", "Ins. len"),
    ("res_len", "res_len", "Res. len"),
    ("ins_ppl", "ppl_ins_alone", "Ins. ppl"),
    ("res_ppl_alone", "ppl_out_alone", "Res. ppl (w/o ins.)"),
    ("res_ppl_cond", "ppl_out_condition", "Res. ppl (w/ ins.)"),
    ("coherence", "coherence", "Coherence"),
    ("ifd", "ifd_ppl", "IFD"),
    ("rifd", "rifd_ppl", "r-IFD"),
)
FORMATS = ("markdown", "csv", "json")


def _scores(row: dict[str, Any], variant: str | None) -> dict[str, Any] | None:
    rk = row.get("reflectkit")
    s = rk.get("score") if isinstance(rk, dict) else None
    if variant is not None:
        s = (s.get("variants") or {}).get(variant) if isinstance(s, dict) else None
    return s if isinstance(s, dict) and "ifd_ppl" in s else None


def file_stats(path: str | Path, *, variant: str | None = None) -> dict[str, Any]:
    """Means of the statistics columns for one scored file."""
    from reflectkit.data.io import read_dataset

    ds = read_dataset(path, skip_bad_rows=True, require_output=False)
    sums = {k: 0.0 for k, _, _ in COLUMNS}
    ns = {k: 0 for k, _, _ in COLUMNS}
    scored = 0
    for rec in ds.records:
        s = _scores({"reflectkit": rec.meta}, variant)
        if s is None:
            continue
        scored += 1
        for name, key, _ in COLUMNS:
            v = s.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                sums[name] += float(v)
                ns[name] += 1
    if scored == 0:
        where = f" (variant {variant!r})" if variant else ""
        raise UserError(f"{path}: no scored rows{where}; run `reflectkit score` on it first")
    out: dict[str, Any] = {"dataset": str(path) + (f" [{variant}]" if variant else ""), "rows": scored, "rows_in_file": ds.n_rows}
    for name, _, _ in COLUMNS:
        out[name] = sums[name] / ns[name] if ns[name] else None
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) >= 1 or v == 0 else f"{v:.3f}"
    return str(v)


def stats_table(paths: Sequence[str | Path], fmt: str = "markdown", *, variant: str | None = None) -> str:
    """The statistics table for one or more scored files, side by side (one line per file)."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not paths:
        raise UserError("stats needs at least one scored file")
    rows = [file_stats(p, variant=variant) for p in paths]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    header = ["dataset", "rows"] + [name for name, _, _ in COLUMNS]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r["dataset"], r["rows"]] + ["" if r[n] is None else r[n] for n, _, _ in COLUMNS])
        return buf.getvalue()
    titles = ["Dataset", "Rows"] + [t for _, _, t in COLUMNS]
    lines = ["| " + " | ".join(titles) + " |", "|" + "|".join(["---"] + ["---:"] * (len(titles) - 1)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([r["dataset"], f"{r['rows']}/{r['rows_in_file']}"] + [_fmt(r[n]) for n, _, _ in COLUMNS]) + " |")
    return "\n".join(lines) + "\n"
