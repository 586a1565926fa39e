"""``select`` as a :class:`~reflectkit.engine.step.DatasetStep`: the decisions are made for the whole dataset in
``plan`` (Cherry ranks globally; four-file mode aligns the variant files), then each row is written as its kept
variant or dropped with its rule and reason (kept in the ledger and in ``<run dir>/dropped.jsonl``)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping

from pydantic import field_validator, model_validator

from reflectkit.data.io import Dataset, dumps_jsonl, existing_file, file_sha256, read_dataset
from reflectkit.data.record import Record
from reflectkit.engine.step import (DatasetStep, ResultReader, RowResult, RunContext, StageRefs, StepOptions,
                                    choice_validator, option)
from reflectkit.errors import UserError
from reflectkit.select import rules
from reflectkit.select.funnel import Funnel, Stage

METHODS = ("selective", "selective-paper", "cherry", "filter")
Method = Literal["selective", "selective-paper", "cherry", "filter"]
SELECTED = "selected"
DROPPED = "dropped"


def input_count_error(n: int) -> UserError:
    return UserError(f"select takes one input file or four aligned files (original, instruction, response, both); got {n}")


class SelectOptions(StepOptions):
    method: Method = option("selective", "selective (released-code rules), selective-paper, cherry or filter.")
    fraction: float | None = option(None, "cherry: keep this fraction (e.g. 0.05) of rows with IFD <= 1.", gt=0, le=1)
    count: int | None = option(None, "cherry: keep this many rows.", ge=1)
    where: list[str] = option([], "Filter on a score, e.g. 'coherence >= 0.5' (repeatable, applied first).")
    key: str = option("ifd_loss", "cherry: score to rank by (ifd_loss as in Cherry LLM, or ifd_ppl).")
    variant_files: list[str] = option([], "Four-file mode: the instruction-, response- and both-reflected scored files "
                                          "aligned with the input (on the command line: positionals 2-4).", cli=False)
    funnel_json: Path | None = option(None, "Also write the funnel as JSON here.", fingerprint=False)

    _known_method = choice_validator("method", METHODS, "--method")

    @field_validator("where", mode="before")
    @classmethod
    def _where_list(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            v = [v]
        for w in v:
            if isinstance(w, str):
                rules.parse_where(w)  # a UserError for bad syntax
        return v

    @field_validator("variant_files", mode="before")
    @classmethod
    def _variant_list(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, (str, Path)):
            v = [v]
        v = [str(p) if isinstance(p, Path) else p for p in v]
        if len(v) not in (0, 3):
            raise input_count_error(len(v) + 1)
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "SelectOptions":
        if self.method == "cherry":
            rules.cherry([], fraction=self.fraction, count=self.count, key=self.key)  # exactly one of fraction/count
        elif self.fraction is not None or self.count is not None:
            raise UserError(f"--fraction/--count apply to --method cherry, not {self.method}")
        if self.method == "filter" and not self.where:
            raise UserError("--method filter needs at least one --where 'KEY OP NUMBER'")
        if self.variant_files and not self.method.startswith("selective"):
            raise UserError(f"--method {self.method} takes one input file")
        return self


def _score(rec: Record) -> dict[str, Any] | None:
    s = rec.meta.get("score")
    return s if isinstance(s, dict) else None


def _file_sha256(path: str) -> str:
    p = existing_file(path)
    try:
        return file_sha256(p)
    except OSError as exc:
        raise UserError(f"{p}: cannot read file ({exc.strerror})") from None


class SelectStep(DatasetStep[SelectOptions]):
    """Select rows by student scores: Selective Reflection-Tuning, Cherry top-k%, or --where filters.

    ``method``: ``selective`` (Selective Reflection-Tuning, released-code rules; default), ``selective-paper``
    (paper text: winner of each phase, no ``< 1`` thresholds), ``cherry`` (drop IFD > 1, keep the top ``fraction``
    or ``count`` by ``key``, default ``ifd_loss`` as in Cherry LLM), ``filter`` (only the ``where`` filters).
    The input is one scored file (for ``selective*``: rows from ``recycle --phase all`` then ``score``), or, with
    ``variant_files``, the original of four scored files aligned by ``reflectkit.id`` (by row position when the
    files carry no ids): original, instruction-, response-, both-reflected.
    ``where``: filters like ``"coherence >= 0.5"`` on ``reflectkit.score``, applied first, in order.
    """

    name: ClassVar[str] = "select"
    files = {"dropped": "rows left out, with their rule and reason (dropped.jsonl)",
             "funnel_json": "the selection funnel (funnel.json)",
             "funnel_json_copy": "the funnel, also written at --funnel-json"}
    manifest_sections = ("funnel", "variant_files_matched_by")
    Options: ClassVar[type[StepOptions]] = SelectOptions
    code: ClassVar[tuple[str, ...]] = ("select",)
    require_output: ClassVar[bool] = False
    inputs: ClassVar[Literal["one", "many", "none"]] = "many"
    input_help: ClassVar[str] = ("One scored file, or four aligned scored files: original, instruction-, response-, "
                                 "both-reflected.")

    @classmethod
    def split_inputs(cls, inputs: list[str]) -> tuple[Any, dict[str, Any]]:
        """``select ORIGINAL [INSTRUCTION RESPONSE BOTH]``: the three positionals after the original are the
        variant files."""
        if not inputs:
            return None, {}
        if len(inputs) not in (1, 4):
            raise input_count_error(len(inputs))
        return inputs[0], ({"variant_files": list(inputs[1:])} if len(inputs) > 1 else {})

    def for_stage(self, refs: StageRefs, input: Any) -> tuple["SelectStep", Any]:
        """In a pipeline, variant files and ``funnel_json`` are relative to the pipeline file."""
        o = self.options
        update: dict[str, Any] = {"variant_files": [v if Path(v).is_absolute() else refs.path(f"./{v}")
                                                    for v in o.variant_files]}
        if o.funnel_json is not None and not o.funnel_json.is_absolute():
            update["funnel_json"] = Path(refs.path(f"./{o.funnel_json}"))
        return type(self)(o.model_copy(update=update), models=self.models), input

    # ------------------------------------------------------------------ derived from the options
    @cached_property
    def wheres(self) -> list[rules.Where]:
        return [rules.parse_where(w) for w in self.options.where]

    def config(self) -> dict[str, Any]:
        cfg = self.options.fingerprint_dict()
        if self.options.method != "cherry":
            cfg["key"] = None  # only cherry ranks by it
        cfg["variant_files"] = [{"path": str(p), "sha256": _file_sha256(p)} for p in self.options.variant_files]
        return cfg

    def estimate(self, records: list[Record]) -> dict[str, Any]:
        return {"rows": len(records), "method": self.options.method, "model_calls": 0}

    async def setup(self, ctx: RunContext) -> None:
        p = self.options.funnel_json
        if p is not None and not p.parent.is_dir():  # fail before the work, not after it
            raise UserError(f"--funnel-json {p}: cannot write: directory {p.parent} does not exist")

    # ------------------------------------------------------------------ input checks
    def _variant_files(self, ctx: RunContext) -> list[tuple[str, Dataset, str]]:
        """(variant name, dataset, how messages name the file) for each of the three variant files."""
        return [(name, ds, f"{ds.path} ({rules.LABELS[name]} file)")
                for name, ds in zip(rules.VARIANT_NAMES[1:], ctx.state["variant_datasets"])]

    def _align(self, records: list[Record], ctx: RunContext) -> None:
        """Match each variant file's rows to the original's: by ``reflectkit.id`` when both files carry ids, else
        by row position (as the released code, whose four files are aligned line by line). Files that cannot be
        aligned are a user error, never a silent "every row missing"."""
        by_id: list[dict[str, Record]] = []
        aligned_by: list[str] = []
        orig_ids = bool(records) and all(isinstance(r.meta.get("id"), str) for r in records)
        for _, ds, what in self._variant_files(ctx):
            if orig_ids and ds.records and all(isinstance(r.meta.get("id"), str) for r in ds.records):
                by: dict[str, Record] = {}
                for r in ds.records:
                    if r.id in by:
                        raise UserError(f"{what}: reflectkit.id {r.id!r} appears on rows {by[r.id].index + 1} and "
                                        f"{r.index + 1}; four-file selection matches rows by id, so ids must be unique")
                    by[r.id] = r
                match = {r.id: by[r.id] for r in records if r.id in by}
                if records and not match:
                    raise UserError(f"{what}: none of its {len(ds.records)} row ids matches a row of the original file "
                                    "(are these the outputs of the same input?)")
                aligned_by.append("reflectkit.id")
            else:
                n_orig = ctx.dataset.n_rows  # rows in the original file, before --limit
                if ds.n_rows != n_orig:
                    raise UserError(f"{what}: {ds.n_rows} rows, the original file has {n_orig}; rows without "
                                    "reflectkit.id are matched by position, which needs the same number of rows")
                at = {r.index: r for r in ds.records}
                match = {r.id: at[r.index] for r in records if r.index in at}
                aligned_by.append("position")
            by_id.append(match)
        ctx.state["by_id"] = by_id
        ctx.state["aligned_by"] = aligned_by

    def _check_keys(self, records: list[Record], ctx: RunContext) -> None:
        """Every score key the run filters or ranks on must be numeric in at least one row; else the run would
        drop every row for a typo or an unscored file."""
        if not records:
            return
        scored = [s for s in (_score(r) for r in records) if s]
        if not scored:
            raise UserError("the input has no reflectkit.score on any row: run `reflectkit score` on it first")
        keys = [w.key for w in self.wheres] + ([self.options.key] if self.options.method == "cherry" else [])
        for k in keys:
            if not any(rules.value(s, k) is not None for s in scored):
                avail = sorted(set().union(*(rules.numeric_keys(s) for s in scored)))
                raise UserError(f"score key {k!r} is not a number in any row of the input; numeric keys: "
                                f"{', '.join(avail) or '(none)'}")
        for _, ds, what in self._variant_files(ctx):
            if ds.records and not any(_score(r) for r in ds.records):
                raise UserError(f"{what} has no reflectkit.score on any row: "
                                "run `reflectkit score` on it first")

    # ------------------------------------------------------------------ decisions
    def _variants(self, rec: Record, ctx: RunContext) -> tuple[dict[str, Any], dict[str, tuple[str, str, str] | None], dict[str, str]]:
        """(scores by variant, texts by variant, recycle failure reasons) for one row."""
        own = (rec.instruction, rec.input, rec.output)
        if self.options.variant_files:
            scores: dict[str, Any] = {"original": _score(rec)}
            texts: dict[str, tuple[str, str, str] | None] = {"original": own}
            notes: dict[str, str] = {}
            for name, idx in zip(rules.VARIANT_NAMES[1:], ctx.state["by_id"]):
                other = idx.get(rec.id)
                scores[name] = _score(other) if other else None
                texts[name] = (other.instruction, other.input, other.output) if other else None
                if other is None:
                    notes[name] = f"no row with id {rec.id} in the {rules.LABELS[name]} file"
            return scores, texts, notes
        sc = _score(rec) or {}
        sv = sc.get("variants") if isinstance(sc.get("variants"), dict) else {}
        rc = rec.meta.get("recycle") if isinstance(rec.meta.get("recycle"), dict) else {}
        tv = rc.get("variants") if isinstance(rc.get("variants"), dict) else {}
        phases = rc.get("phases") if isinstance(rc.get("phases"), dict) else {}
        scores, texts, notes = {}, {}, {}
        for name in rules.VARIANT_NAMES:
            scores[name] = sv.get(name)
            t = tv.get(name)
            texts[name] = (str(t.get("instruction") or ""), str(t.get("input") or ""), str(t.get("output") or "")) if isinstance(t, dict) else None
            ph = phases.get(name)
            if t is None and isinstance(ph, dict) and ph.get("reason"):
                notes[name] = f"recycle: {ph['reason']}"
            elif not tv:
                notes[name] = "row has no reflectkit.recycle.variants (run `recycle --phase all`, then `score`)"
            elif isinstance(scores[name], dict) and scores[name].get("reason"):
                notes[name] = f"score: {scores[name]['reason']}"
        return scores, texts, notes

    async def plan(self, records: list[Record], ctx: RunContext) -> None:
        o = self.options
        ds = ctx.dataset
        ctx.state["variant_datasets"] = [read_dataset(p, format=ds.shape or None, mapping=ds.mapping or None,
                                                      require_output=False) for p in o.variant_files]
        ctx.state["decisions"] = {}
        ctx.state["texts"] = {}
        ctx.state["by_id"], ctx.state["aligned_by"] = [], []
        self._check_keys(records, ctx)
        if o.variant_files:
            self._align(records, ctx)
        funnel = Funnel(o.method, len(records))
        alive = list(records)
        for w in self.wheres:
            stage = Stage(f"where {w.text}", len(alive))
            nxt = []
            for rec in alive:
                d = w.test(_score(rec))
                if d is None:
                    stage.outcomes["pass"] += 1
                    nxt.append(rec)
                else:
                    self._decide(ctx, rec, d, None, stage)
            funnel.stages.append(stage)
            alive = nxt
        m = o.method
        if m == "filter":
            for rec in alive:
                self._decide(ctx, rec, rules.Decision("original", "kept", "passed every --where"),
                             (rec.instruction, rec.input, rec.output), None)
        elif m == "cherry":
            stage = Stage(f"cherry top-{'%g%%' % (100 * o.fraction) if o.fraction else o.count} by {o.key}", len(alive))
            decs = rules.cherry([_score(r) for r in alive], fraction=o.fraction, count=o.count, key=o.key)
            for rec, d in zip(alive, decs):
                self._decide(ctx, rec, d, (rec.instruction, rec.input, rec.output), stage)
            funnel.stages.append(stage)
        else:
            if not o.variant_files and alive and not any(
                    isinstance((_score(r) or {}).get("variants"), dict) for r in records):
                raise UserError(
                    f"--method {m}: no row of the input has reflectkit.score.variants; give one file from "
                    "`recycle --phase all` then `score`, or four aligned scored files (original, instruction, response, both)")
            fn = rules.selective_released if m == "selective" else rules.selective_paper
            stage = Stage("selective reflection (" + ("released-code rules" if m == "selective" else "paper text") + ")", len(alive))
            for rec in alive:
                scores, texts, notes = self._variants(rec, ctx)
                d = fn(scores)
                if d.keep is None and d.rule.startswith("missing:"):
                    name = d.rule.split(":", 1)[1]
                    if name in notes:
                        d = rules.Decision(None, d.rule, f"{d.reason} ({notes[name]})")
                if d.keep is not None and texts.get(d.keep) is None:
                    d = rules.Decision(None, f"missing:{d.keep}", f"{rules.LABELS[d.keep]} texts missing for a scored variant")
                self._decide(ctx, rec, d, texts.get(d.keep) if d.keep else None, stage)
            funnel.stages.append(stage)
        ctx.state["funnel"] = funnel

    @staticmethod
    def _decide(ctx: RunContext, rec: Record, d: rules.Decision, texts: tuple[str, str, str] | None,
                stage: Stage | None) -> None:
        ctx.state["decisions"][rec.index] = d
        ctx.state["texts"][rec.index] = texts
        if stage is not None:
            stage.outcomes[d.rule] += 1
            stage.reasons.setdefault(d.rule, d.reason)

    # ------------------------------------------------------------------ rows
    def process_batch(self, records: list[Record], ctx: RunContext) -> list[RowResult]:
        o = self.options
        decisions: dict[int, rules.Decision] = ctx.state["decisions"]
        out = []
        for rec in records:
            d = decisions[rec.index]
            rk: dict[str, Any] = {"method": o.method, "rule": d.rule, "kept": d.keep}
            if d.keep is None:
                out.append(RowResult(DROPPED, d.reason, rk=rk, drop=True))
                continue
            ins, inp, outp = ctx.state["texts"][rec.index] or (rec.instruction, rec.input, rec.output)
            if d.keep != "original" or o.variant_files:
                scores, _, _ = self._variants(rec, ctx) if o.method.startswith("selective") else ({}, {}, {})
                if isinstance(scores.get(d.keep), Mapping):
                    rk["scores"] = {k: v for k, v in scores[d.keep].items() if k != "variants"}
            out.append(RowResult(SELECTED, d.reason, rk=rk, instruction=ins, input=inp, output=outp))
        return out

    # ------------------------------------------------------------------ side outputs and summary
    def finish(self, ctx: RunContext, results: ResultReader) -> None:
        decisions: dict[int, rules.Decision] = ctx.state["decisions"]
        dropped = [{"id": r.id, "index": r.index, "rule": decisions[r.index].rule, "reason": decisions[r.index].reason}
                   for r in ctx.dataset.records if r.index in decisions and decisions[r.index].keep is None]
        ctx.write_file("dropped", "dropped.jsonl", dumps_jsonl(dropped))
        text = json.dumps(ctx.state["funnel"].to_dict(), indent=2) + "\n"
        run_copy = ctx.write_file("funnel_json", "funnel.json", text)
        p = self.options.funnel_json
        if p is not None:
            try:
                p.write_text(text, encoding="utf-8")  # no directory is created: a typo is an error, as before
            except OSError as exc:
                raise UserError(f"--funnel-json {p}: cannot write: {exc.strerror or exc} "
                                f"(the funnel is also in {run_copy})") from None
            ctx.add_file("funnel_json_copy", p)

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        funnel = ctx.state.get("funnel")
        extra: dict[str, Any] = {"funnel": funnel.to_dict() if funnel else None}
        if ctx.state.get("aligned_by"):
            extra["variant_files_matched_by"] = ctx.state["aligned_by"]
        return extra

    def details(self, ctx: RunContext) -> dict[str, Any]:
        return {"funnel": ctx.state.get("funnel")}

    def summary_lines(self, summary: Any) -> list[str]:
        lines = []
        funnel = summary.details.get("funnel")
        if funnel is not None:
            lines.append(funnel.format())
        dropped = summary.files.get("dropped")
        if dropped is not None:
            lines.append(f"  dropped:  {dropped} (id, rule, reason)")
        extra = summary.files.get("funnel_json_copy")
        if extra is not None:
            lines.append(f"  funnel:   {extra}")
        return lines
