"""``select`` as an engine Step: decisions are made for the whole dataset in ``prepare`` (Cherry ranks globally),
then each row is written as its kept variant or dropped with its rule and reason (kept in the ledger and in
``<run dir>/dropped.jsonl``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from reflectkit.data.io import Dataset, dumps_jsonl, read_dataset
from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult
from reflectkit.errors import UserError
from reflectkit.select import rules
from reflectkit.select.funnel import Funnel, Stage

METHODS = ("selective", "selective-paper", "cherry", "filter")
SELECTED = "selected"
DROPPED = "dropped"


@dataclass
class SelectConfig:
    method: str = "selective"
    fraction: float | None = None
    count: int | None = None
    where: list[str] = field(default_factory=list)
    key: str = "ifd_loss"  # Cherry ranking key
    variant_files: list[str] = field(default_factory=list)  # instruction, response, both (four-file mode)


def _score(rec: Record) -> dict[str, Any] | None:
    s = rec.meta.get("score")
    return s if isinstance(s, dict) else None


class SelectStep:
    name = "select"
    batch_size = 1024

    def __init__(self, cfg: SelectConfig, variant_datasets: list[Dataset] | None = None) -> None:
        if cfg.method not in METHODS:
            raise UserError(f"--method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
        self.cfg = cfg
        self.wheres = [rules.parse_where(w) for w in cfg.where]
        if cfg.method == "cherry":
            rules.cherry([], fraction=cfg.fraction, count=cfg.count, key=cfg.key)  # validates the options early
        elif cfg.fraction is not None or cfg.count is not None:
            raise UserError(f"--fraction/--count apply to --method cherry, not {cfg.method}")
        if cfg.method == "filter" and not self.wheres:
            raise UserError("--method filter needs at least one --where 'KEY OP NUMBER'")
        self.variant_datasets = variant_datasets or []
        if self.variant_datasets and len(self.variant_datasets) != 3:
            raise UserError("selective selection takes one file (with recycle variants) or four aligned files: "
                            "original, instruction-reflected, response-reflected, both-reflected")
        if self.variant_datasets and not cfg.method.startswith("selective"):
            raise UserError(f"--method {cfg.method} takes one input file")
        self._by_id: list[dict[str, Record]] = []  # per variant file: original row id -> its row (see _align)
        self.aligned_by: list[str] = []
        self.original_rows: int | None = None  # rows in the original file (before --limit), for positional matching
        self.decisions: dict[int, rules.Decision] = {}
        self.texts: dict[int, tuple[str, str, str] | None] = {}
        self.funnel: Funnel | None = None

    def config(self) -> dict[str, Any]:
        return {"method": self.cfg.method, "fraction": self.cfg.fraction, "count": self.cfg.count, "where": self.cfg.where,
                "key": self.cfg.key if self.cfg.method == "cherry" else None,
                "variant_files": [{"path": str(ds.path), "sha256": ds.sha256} for ds in self.variant_datasets]}

    def models(self) -> dict[str, Any]:
        return {}

    def manifest_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"funnel": self.funnel.to_dict() if self.funnel else None}
        if self.aligned_by:
            extra["variant_files_matched_by"] = self.aligned_by
        return extra

    # ------------------------------------------------------------------ input checks
    def _variant_files(self) -> list[tuple[str, Dataset, str]]:
        """(variant name, dataset, how messages name the file) for each of the three variant files."""
        return [(name, ds, f"{ds.path} ({rules.LABELS[name]} file)")
                for name, ds in zip(rules.VARIANT_NAMES[1:], self.variant_datasets)]

    def _align(self, records: list[Record]) -> None:
        """Match each variant file's rows to the original's: by ``reflectkit.id`` when both files carry ids, else
        by row position (as the released code, whose four files are aligned line by line). Files that cannot be
        aligned are a user error, never a silent "every row missing"."""
        self._by_id, self.aligned_by = [], []
        orig_ids = bool(records) and all(isinstance(r.meta.get("id"), str) for r in records)
        for _, ds, what in self._variant_files():
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
                self.aligned_by.append("reflectkit.id")
            else:
                n_orig = self.original_rows if self.original_rows is not None else len(records)
                if ds.n_rows != n_orig:
                    raise UserError(f"{what}: {ds.n_rows} rows, the original file has {n_orig}; rows without "
                                    "reflectkit.id are matched by position, which needs the same number of rows")
                at = {r.index: r for r in ds.records}
                match = {r.id: at[r.index] for r in records if r.index in at}
                self.aligned_by.append("position")
            self._by_id.append(match)

    def _check_keys(self, records: list[Record]) -> None:
        """Every score key the run filters or ranks on must be numeric in at least one row; else the run would
        drop every row for a typo or an unscored file."""
        if not records:
            return
        scored = [s for s in (_score(r) for r in records) if s]
        if not scored:
            raise UserError("the input has no reflectkit.score on any row: run `reflectkit score` on it first")
        keys = [w.key for w in self.wheres] + ([self.cfg.key] if self.cfg.method == "cherry" else [])
        for k in keys:
            if not any(rules.value(s, k) is not None for s in scored):
                avail = sorted(set().union(*(rules.numeric_keys(s) for s in scored)))
                raise UserError(f"score key {k!r} is not a number in any row of the input; numeric keys: "
                                f"{', '.join(avail) or '(none)'}")
        for _, ds, what in self._variant_files():
            if ds.records and not any(_score(r) for r in ds.records):
                raise UserError(f"{what} has no reflectkit.score on any row: "
                                "run `reflectkit score` on it first")

    # ------------------------------------------------------------------ decisions
    def _variants(self, rec: Record) -> tuple[dict[str, Any], dict[str, tuple[str, str, str] | None], dict[str, str]]:
        """(scores by variant, texts by variant, recycle failure reasons) for one row."""
        own = (rec.instruction, rec.input, rec.output)
        if self.variant_datasets:
            scores: dict[str, Any] = {"original": _score(rec)}
            texts: dict[str, tuple[str, str, str] | None] = {"original": own}
            notes: dict[str, str] = {}
            for name, idx in zip(rules.VARIANT_NAMES[1:], self._by_id):
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

    async def prepare(self, records: list[Record]) -> None:
        self._check_keys(records)
        if self.variant_datasets:
            self._align(records)
        funnel = Funnel(self.cfg.method, len(records))
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
                    self._decide(rec, d, None, stage)
            funnel.stages.append(stage)
            alive = nxt
        m = self.cfg.method
        if m == "filter":
            for rec in alive:
                self._decide(rec, rules.Decision("original", "kept", "passed every --where"), (rec.instruction, rec.input, rec.output), None)
        elif m == "cherry":
            stage = Stage(f"cherry top-{'%g%%' % (100 * self.cfg.fraction) if self.cfg.fraction else self.cfg.count} by {self.cfg.key}", len(alive))
            decs = rules.cherry([_score(r) for r in alive], fraction=self.cfg.fraction, count=self.cfg.count, key=self.cfg.key)
            for rec, d in zip(alive, decs):
                self._decide(rec, d, (rec.instruction, rec.input, rec.output), stage)
            funnel.stages.append(stage)
        else:
            if not self.variant_datasets and alive and not any(
                    isinstance((_score(r) or {}).get("variants"), dict) for r in records):
                raise UserError(
                    f"--method {m}: no row of the input has reflectkit.score.variants; give one file from "
                    "`recycle --phase all` then `score`, or four aligned scored files (original, instruction, response, both)")
            fn = rules.selective_released if m == "selective" else rules.selective_paper
            stage = Stage("selective reflection (" + ("released-code rules" if m == "selective" else "paper text") + ")", len(alive))
            for rec in alive:
                scores, texts, notes = self._variants(rec)
                d = fn(scores)
                if d.keep is None and d.rule.startswith("missing:"):
                    name = d.rule.split(":", 1)[1]
                    if name in notes:
                        d = rules.Decision(None, d.rule, f"{d.reason} ({notes[name]})")
                if d.keep is not None and texts.get(d.keep) is None:
                    d = rules.Decision(None, f"missing:{d.keep}", f"{rules.LABELS[d.keep]} texts missing for a scored variant")
                self._decide(rec, d, texts.get(d.keep) if d.keep else None, stage)
            funnel.stages.append(stage)
        self.funnel = funnel

    def _decide(self, rec: Record, d: rules.Decision, texts: tuple[str, str, str] | None, stage: Stage | None) -> None:
        self.decisions[rec.index] = d
        self.texts[rec.index] = texts
        if stage is not None:
            stage.outcomes[d.rule] += 1
            stage.reasons.setdefault(d.rule, d.reason)

    # ------------------------------------------------------------------ rows
    def process_batch(self, recs: list[Record]) -> list[RowResult]:
        out = []
        for rec in recs:
            d = self.decisions[rec.index]
            rk = {"method": self.cfg.method, "rule": d.rule, "kept": d.keep}
            if d.keep is None:
                out.append(RowResult(DROPPED, d.reason, rk=rk, drop=True))
                continue
            ins, inp, outp = self.texts[rec.index] or (rec.instruction, rec.input, rec.output)
            if d.keep != "original" or self.variant_datasets:
                scores, _, _ = self._variants(rec) if self.cfg.method.startswith("selective") else ({}, {}, {})
                if isinstance(scores.get(d.keep), Mapping):
                    rk["scores"] = {k: v for k, v in scores[d.keep].items() if k != "variants"}
            out.append(RowResult(SELECTED, d.reason, rk=rk, instruction=ins, input=inp, output=outp))
        return out

    def finalize(self, records: list[Record], ledger: Any, run_dir: Path) -> None:
        dropped = [{"id": r.id, "index": r.index, "rule": self.decisions[r.index].rule, "reason": self.decisions[r.index].reason}
                   for r in records if self.decisions[r.index].keep is None]
        (run_dir / "dropped.jsonl").write_bytes(dumps_jsonl(dropped))
        if self.funnel:
            (run_dir / "funnel.json").write_text(json.dumps(self.funnel.to_dict(), indent=2) + "\n", encoding="utf-8")


def read_variant_files(paths: list[str | Path], *, format: str | None = None, mapping: dict[str, str] | None = None) -> list[Dataset]:
    return [read_dataset(p, format=format, mapping=mapping, require_output=False) for p in paths]
