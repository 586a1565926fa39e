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
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import AliasChoices

from reflectkit.data.io import Dataset
from reflectkit.engine.step import RunContext, StageRefs, StepOptions, TaskStep, choice_validator, option
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


# --------------------------------------------------------------------------------------------- the step

EXTENSIONS = {"markdown": "md", "csv": "csv", "json": "json"}


class StatsOptions(StepOptions):
    """The options of ``stats``. ``table_format`` is also accepted as ``format`` (its name in pipeline files); on
    the command line it is ``--format``."""

    inputs: list[str] | None = option(None, "Pipeline: the stages whose data to compare (default: every earlier data "
                                      "stage).", cli=False)
    table_format: Literal["markdown", "csv", "json"] = option(
        "markdown", "markdown, csv or json.", flag="--format", validation_alias=AliasChoices("table_format", "format"))
    variant: str | None = option(None, "Use reflectkit.score.variants.<name> instead of the row's own scores.")

    _known_format = choice_validator("table_format", FORMATS, "--format")


@dataclass
class StatsInputs(Dataset):
    """What ``stats`` runs over: the scored files by label (the path on the command line, the stage name in a
    pipeline). It has no records: the step reads the files itself."""

    files: list[tuple[str, Path]] = field(default_factory=list)


def _as_files(input: Any) -> list[tuple[str, Path]]:
    """(label, path) pairs from a path, a list of paths, or a mapping label -> path (a pipeline's stages)."""
    if input is None:
        return []
    if isinstance(input, Mapping):
        return [(str(k), Path(v)) for k, v in input.items()]
    if isinstance(input, (str, Path)):
        return [(str(input), Path(input))]
    return [(str(p), Path(p)) for p in input]


class StatsStep(TaskStep[StatsOptions]):
    """The papers' data-statistics table (lengths, perplexities, coherence, IFD, r-IFD) for scored files."""

    name = "stats"
    files = {"stats": "the statistics table (stats.md|csv|json, or -o)"}
    Options = StatsOptions
    code = ("scoring/stats.py",)
    inputs = "many"
    input_help = "Scored files (output of `reflectkit score`)."
    needs_output = False
    require_output = False
    # --format is the table format here; the table goes to stdout (and to -o FILE when given)
    cli_plumbing = ()
    #: the CLI prints the table only, as before (see summary_lines), not the standard run summary
    cli_summary = False

    @classmethod
    def split_inputs(cls, inputs: list[str]) -> tuple[Any, dict[str, Any]]:
        return list(inputs), {}

    def for_stage(self, refs: StageRefs, input: Any) -> tuple["StatsStep", Any]:
        names = self.options.inputs or refs.data_stages()
        return self, {n: refs.data(n) for n in names}

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> StatsInputs:
        from reflectkit.data.io import existing_file, file_sha256

        files = _as_files(input)
        if not files:
            raise UserError("stats needs at least one scored file (in a pipeline: an earlier stage with data)")
        h = hashlib.sha256()
        for label, p in files:
            h.update(f"{label}\0{file_sha256(existing_file(p, expected='a scored file'))}\0".encode())
        first = files[0][1]
        return StatsInputs(path=first, file_format=first.suffix.lstrip(".") or "jsonl", shape="", records=[],
                           sha256=h.hexdigest(), files=files)

    def estimate(self, records: list[Any]) -> dict[str, Any]:
        return {"rows": len(records), "oracle_calls": 0}

    def run_task(self, ctx: RunContext) -> dict[str, int]:
        files = getattr(ctx.dataset, "files", None) or [(str(ctx.dataset.path), ctx.dataset.path)]
        fmt = self.options.table_format
        # an earlier pipeline stage may have kept no rows: say so instead of failing on the empty file
        is_empty = [p.exists() and not p.read_bytes().strip() for _, p in files]
        empty = list(dict.fromkeys(n for (n, _), e in zip(files, is_empty) if e))
        paths = [p for (_, p), e in zip(files, is_empty) if not e]
        if not paths:
            text, ext = f"No statistics: the inputs ({', '.join(n for n, _ in files)}) have no rows.\n", "md"
        else:
            text, ext = stats_table(paths, fmt, variant=self.options.variant), EXTENSIONS[fmt]
            if empty and fmt == "markdown":
                text = f"{text}\n\n(no rows in: {', '.join(empty)})\n"
        # -o FILE: the table goes there (relative to the working directory), else stats.<ext> in the run directory
        ctx.write_file("stats", Path(ctx.output).absolute() if ctx.output is not None else f"stats.{ext}", text)
        ctx.state.update(table=text, inputs=[str(p) for p in paths], empty_inputs=empty)
        return {"inputs": len(paths), "empty_inputs": len(empty)}

    def details(self, ctx: RunContext) -> dict[str, Any]:
        """``summary.table`` (the text written to ``summary.stats``), ``summary.inputs``, ``summary.empty_inputs``."""
        return {k: ctx.state[k] for k in ("table", "inputs", "empty_inputs") if k in ctx.state}

    def summary_lines(self, summary: Any) -> list[str]:
        return str(summary.details.get("table", "")).splitlines()


__all__ = ["COLUMNS", "FORMATS", "StatsInputs", "StatsOptions", "StatsStep", "file_stats", "stats_table"]
