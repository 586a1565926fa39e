"""The decontamination step (``reflectkit decontaminate``), a :class:`~reflectkit.engine.step.DatasetStep`: the
detectors run once over the whole dataset in ``plan``; rows get their verdicts in ``process_batch``; ``finish``
writes the contamination report.

Fields compared (also written into the report):

* n-gram: every training field (instruction, input, output) against each benchmark item's question (+ input)
  and, where the benchmark has one, its answer;
* embedding and LLM judge: training instruction (+ input) against benchmark question (+ input).

A row is ``contaminated`` when any enabled detector flags one of its pairs (the union); ``clean`` otherwise;
``unchecked`` when it has no words in the compared fields; ``failed`` when one of its judge calls failed
(retried on re-run; the row is left out of the output meanwhile if another detector flagged it).

The LLM judge's candidate pairs are resumable work that is not one row: each judgement is kept in the run
ledger's keyed table ``judge_pairs`` as it arrives, so a killed run never asks the judge twice for a pair.
"""

from __future__ import annotations

import re
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from reflectkit.data.record import Record
from reflectkit.decontam.benchmarks import (BenchItem, Benchmark, check_name, expand_names, format_bench_map,
                                            load_benchmarks, looks_like_path, parse_bench_map)
from reflectkit.decontam.judge import VARIANTS, Judgement, Pair, judge_pairs, variant_for
from reflectkit.engine.step import (FAILED, DatasetStep, ModelRole, ResultReader, RowResult, RunContext, StageRefs,
                                    StepOptions, option)
from reflectkit.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from reflectkit.decontam.search import SearchState
    from reflectkit.prompts import PromptSet

CLEAN, CONTAMINATED, UNCHECKED = "clean", "contaminated", "unchecked"
#: Calibrated on a held-out split (GSM8K *train*, never the test set scored in benchmarks/RESULTS.md): the cosine
#: that maximises recall on number-substituted copies minus the false-positive rate on hard negatives (each
#: question vs its nearest *other* question). benchmarks/decontam_data/calibrate_threshold.py reproduces it.
DEFAULT_THRESHOLD = 0.86
#: Pairs below this cosine are not sent to the judge (bounds the calls; LMSYS sends every top-k pair). Same
#: calibration: the largest value that keeps every held-out positive.
DEFAULT_JUDGE_MIN_SIMILARITY = 0.7
MAX_MATCHES_PER_ROW = 20
EMBED_BATCH_SIZE = 64
CHUNK_ROWS = 8192
_HAS_WORD = re.compile(r"[^\W_]")

COMPARED_FIELDS = {
    "ngram": "training instruction, input and output vs benchmark question (+input) and answer (where the benchmark has one)",
    "embedding": "training instruction (+input) vs benchmark question (+input)",
    "llm": "training instruction (+input) vs benchmark question (+input), for embedding candidate pairs",
}


class DecontamOptions(StepOptions):
    against: list[str] = option(
        ..., "Benchmark: gsm8k, ifeval, vicuna, koala, wizardlm, sinstruct, lima, all, or a file (repeat, "
             "comma-separate, or list several after the input).", min_length=1)
    ngram: bool = option(True, "Word n-gram overlap detector.")
    ngram_n: int = option(13, "n for the n-gram detector.", ge=1)
    ngram_min_words: int = option(8, "Benchmark texts shorter than n but with at least this many words count as one "
                                     "n-gram; shorter ones are too short to check by overlap.", ge=1)
    embedding: bool = option(True, "all-MiniLM-L6-v2 cosine detector.")
    llm: bool = option(False, "LLM judge on the embedding stage's candidate pairs.")
    top_k: int = option(1, "Candidate training rows per benchmark item.", ge=1)
    threshold: float = option(DEFAULT_THRESHOLD, "Cosine threshold of the embedding detector (calibrated on "
                                                 "held-out data).", ge=-1, le=1)
    judge_min_similarity: float = option(DEFAULT_JUDGE_MIN_SIMILARITY, "Only pairs at or above this cosine go to "
                                                                       "the judge.", ge=-1, le=1)
    judge_prompt: str = option("auto", "auto (math for gsm8k, knowledge otherwise), "
                                       + ", ".join(VARIANTS[:-1]) + f" or {VARIANTS[-1]}.")
    prompt_set: str = option("paper", "Judge prompt set: 'paper' (LLM Decontaminator, verbatim) or a directory.")
    unknown_as: Literal["contaminated", "clean"] = option(
        "contaminated", "How an unparsable judge verdict counts: contaminated or clean.")
    mark_only: bool = option(False, "Keep flagged rows, marked in reflectkit.decontam, instead of removing them.")
    bench_map: str | None = option(None, "Fields of benchmark files, e.g. question=prompt,answer=solution "
                                         "(fields: question, input, answer, id).")
    data_dir: Path | None = option(None, "Shared data directory with the built-in benchmarks.", fingerprint=False)
    report: Path | None = option(None, "Path prefix of the contamination report (<prefix>.jsonl and .md). Default: "
                                       "beside the output as <stem>.contamination.*, else in the run directory.",
                                 fingerprint=False)

    @model_validator(mode="before")
    @classmethod
    def _gather_against(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        against = data.get("against")
        against = [against] if isinstance(against, (str, Path)) else list(against or [])
        against = [str(a) for a in against]
        if not any(str(a).strip() for a in against):
            raise UserError("decontaminate needs --against BENCH (e.g. --against gsm8k ifeval, or --against all)")
        data["against"] = against
        return data

    @field_validator("against")
    @classmethod
    def _known_benchmarks(cls, v: list[str]) -> list[str]:
        names = expand_names(v)
        for n in names:
            check_name(n)
        return names

    @field_validator("judge_prompt")
    @classmethod
    def _known_variant(cls, v: str) -> str:
        variant_for("", v)  # UserError naming the variants
        return v

    @field_validator("unknown_as", mode="before")
    @classmethod
    def _unknown_as(cls, v: Any) -> Any:
        if v not in ("contaminated", "clean"):
            raise UserError(f"--unknown-as must be contaminated or clean, got {v!r}")
        return v

    @field_validator("bench_map", mode="before")
    @classmethod
    def _bench_map(cls, v: Any) -> Any:
        if isinstance(v, dict):  # YAML / Python: a mapping is fine too
            v = format_bench_map({str(k): str(c) for k, c in v.items()})
        if v is not None:
            parse_bench_map(str(v))  # UserError naming the problem
        return v

    @model_validator(mode="after")
    def _detectors(self) -> "DecontamOptions":
        if not (self.ngram or self.embedding or self.llm):
            raise UserError("all detectors are off; enable at least one of --ngram, --embedding, --llm")
        if self.llm and not self.embedding:
            raise UserError("--llm judges the embedding stage's candidate pairs; it needs --embedding")
        return self

    @property
    def bench_mapping(self) -> dict[str, str]:
        return parse_bench_map(self.bench_map)


def report_prefix(output: Path) -> Path:
    """``clean.jsonl`` -> ``clean.contamination`` (the report is ``clean.contamination.jsonl`` / ``.md``)."""
    return output.with_name(output.stem + ".contamination")


def _question(rec: Record) -> str:
    return f"{rec.instruction}\n{rec.input}" if rec.input else rec.instruction


class DecontamStep(DatasetStep[DecontamOptions]):
    """Find and remove training rows that contain benchmark items (n-gram, embedding and LLM-judge detectors).

    ``against``: built-in names (gsm8k, ifeval, vicuna, koala, wizardlm, sinstruct, lima, all) or benchmark
    files (fields renamed with ``bench_map``). The report is written beside the output as
    ``<stem>.contamination.jsonl`` / ``.md`` (or into the run directory).
    """

    name: ClassVar[str] = "decontaminate"
    files = {"report_jsonl": "one line per flagged row and match (<output stem>.contamination.jsonl)",
             "report_md": "the contamination report (<output stem>.contamination.md)"}
    manifest_sections = ("decontam", "prompt_set")
    output_key: ClassVar[str | None] = "decontam"
    Options: ClassVar[type[StepOptions]] = DecontamOptions
    model_roles: ClassVar[dict[str, ModelRole]] = {
        "judge": ModelRole("chat", "The LLM judge (with --llm)", prefix="--judge-"),
    }
    code: ClassVar[tuple[str, ...]] = ("decontam", "prompts/decontam", "embed.py", "evalsets.py")
    batch_size: ClassVar[int] = 4096
    require_output: ClassVar[bool] = False
    inputs: ClassVar[Literal["one", "many", "none"]] = "many"
    input_help: ClassVar[str] = ("Training dataset (JSONL, JSON array, Parquet or CSV), then optionally more "
                                 "benchmarks (so `--against gsm8k ifeval` works).")

    @classmethod
    def split_inputs(cls, inputs: list[str]) -> tuple[Any, dict[str, Any]]:
        """``decontaminate TRAIN --against gsm8k ifeval``: positionals after the training file are benchmarks,
        appended to ``--against``."""
        if not inputs:
            return None, {}
        return inputs[0], ({"against": list(inputs[1:])} if len(inputs) > 1 else {})

    def for_stage(self, refs: StageRefs, input: Any) -> tuple["DecontamStep", Any]:
        """Benchmark files (and ``data_dir``) in a pipeline are relative to the pipeline file."""
        o = self.options
        update: dict[str, Any] = {"against": [refs.path(a) if looks_like_path(a) else a for a in o.against]}
        if o.data_dir is not None and not o.data_dir.is_absolute():
            update["data_dir"] = Path(refs.path(f"./{o.data_dir}"))  # "./": always a path to refs.path
        return type(self)(o.model_copy(update=update), models=self.models), input

    # ------------------------------------------------------------------ derived from the options
    def active_roles(self) -> tuple[str, ...]:
        return ("judge",) if self.options.llm else ()

    def validate(self) -> None:
        if self.options.llm:
            self.prompt_set  # UserError for an unknown set, before any work

    @cached_property
    def benchmarks(self) -> list[Benchmark]:
        o = self.options
        return load_benchmarks(list(o.against), data_dir=o.data_dir, mapping=o.bench_mapping or None)

    @cached_property
    def items(self) -> list[BenchItem]:
        return [it for b in self.benchmarks for it in b.items]

    @cached_property
    def prompt_set(self) -> "PromptSet | None":
        if not self.options.llm:
            return None
        from reflectkit.prompts import load_prompt_set

        ps = load_prompt_set("decontam", self.options.prompt_set)
        ps["user"]  # a set without it: a UserError naming the missing prompt file
        return ps

    def compared_fields(self) -> dict[str, str]:
        return {k: v for k, v in COMPARED_FIELDS.items() if getattr(self.options, k)}

    def config(self) -> dict[str, Any]:
        cfg = self.options.fingerprint_dict()
        cfg.pop("against")  # identified by content below (name, sha256, items), wherever the files are
        cfg["benchmarks"] = [{"name": b.name, "sha256": b.sha256, "items": len(b.items)} for b in self.benchmarks]
        if self.options.embedding:
            from reflectkit.embed import model_identity

            cfg["embedder"] = model_identity()["weights_sha256_first_mib"]
        if self.prompt_set is not None:
            cfg["prompt_set_sha256"] = self.prompt_set.sha256
        cfg["compared_fields"] = self.compared_fields()
        return cfg

    def estimate(self, records: list[Record]) -> dict[str, int]:
        n_items = len(self.items)
        o = self.options
        return {"rows": len(records), "benchmark_items": n_items,
                "embeddings_to_compute_at_most": (len(records) + n_items) if o.embedding else 0,
                "judge_calls_at_most": n_items * o.top_k if o.llm else 0}

    # ------------------------------------------------------------------ detectors (in plan)
    @staticmethod
    def _match(analysis: dict[int, dict[int, dict[str, Any]]], items: list[BenchItem], row: int,
               item: int) -> dict[str, Any]:
        per_row = analysis.setdefault(row, {})
        if item not in per_row:
            it = items[item]
            per_row[item] = {"benchmark": it.benchmark, "item_id": it.id, "item_index": it.index}
        return per_row[item]

    def _run_ngram(self, records: list[Record], ctx: RunContext) -> None:
        from reflectkit.decontam.ngram import NgramIndex

        analysis, items = ctx.state["analysis"], self.items
        texts: list[str] = []
        owners: list[int] = []
        fields: list[str] = []
        for g, it in enumerate(items):
            texts.append(it.question)
            owners.append(g)
            fields.append("question")
            if it.answer:
                texts.append(it.answer)
                owners.append(g)
                fields.append("answer")
        idx = NgramIndex.build(texts, owners, n=self.options.ngram_n, min_words=self.options.ngram_min_words)
        ctx.state["ngram_too_short"] = idx.too_short
        for start in range(0, len(records), CHUNK_ROWS):
            chunk = records[start : start + CHUNK_ROWS]
            for h in idx.query([(r.instruction, r.input, r.output) for r in chunk]):
                m = self._match(analysis, items, chunk[h.row].index, h.item)
                m["ngram"] = {"train_field": ("instruction", "input", "output")[h.field],
                              "benchmark_field": fields[h.source], "text": h.ngram}

    def _run_embedding(self, records: list[Record], ctx: RunContext) -> "SearchState":
        import numpy as np

        from reflectkit.decontam.search import SearchState
        from reflectkit.embed import encode

        analysis, items = ctx.state["analysis"], self.items
        bench = encode([it.question for it in items], cache_dir=ctx.cache_dir, batch_size=EMBED_BATCH_SIZE)
        # on Ray the rows' embeddings are computed by the workers and cached; the loop below then reads them
        ctx.prepare_embeddings((_question(r) for r in records), batch_size=EMBED_BATCH_SIZE)
        st = SearchState(self.options.top_k, len(items))
        for start in range(0, len(records), CHUNK_ROWS):
            chunk = records[start : start + CHUNK_ROWS]
            emb = encode([_question(r) for r in chunk], cache_dir=ctx.cache_dir, batch_size=EMBED_BATCH_SIZE)
            st.add(bench, emb)
            if ctx.progress:
                print(f"decontam: embedded {start + len(chunk)}/{len(records)} rows", file=sys.stderr)
        best_item, best_score = st.row_best()
        thr = self.options.threshold
        for pos in np.nonzero(best_score >= thr)[0].tolist():
            self._match(analysis, items, records[pos].index, int(best_item[pos]))["similarity"] = \
                round(float(best_score[pos]), 4)
        for g in range(len(items)):
            for s, r in zip(st.top_scores[g].tolist(), st.top_rows[g].tolist()):
                if r >= 0 and s >= thr:
                    self._match(analysis, items, records[r].index, g)["similarity"] = round(float(s), 4)
        return st

    async def _run_judge(self, records: list[Record], st: "SearchState", ctx: RunContext) -> None:
        prompts = self.prompt_set
        assert prompts is not None
        judge = ctx.model("judge")
        analysis, items, o = ctx.state["analysis"], self.items, self.options
        pairs: list[Pair] = []
        for g, it in enumerate(items):
            variant = variant_for(it.benchmark, o.judge_prompt)
            prompts[f"system_{variant}"]  # a user prompt set without this variant: a UserError naming it
            for s, r in zip(st.top_scores[g].tolist(), st.top_rows[g].tolist()):
                if r >= 0 and s >= o.judge_min_similarity:
                    pairs.append(Pair(it.benchmark, g, r, it.question, _question(records[r]), variant, round(float(s), 4)))
        if ctx.progress:
            print(f"decontam: judging {len(pairs)} candidate pairs", file=sys.stderr)
        results = await judge_pairs(judge, prompts, pairs, ctx.store("judge_pairs"), ctx.map_concurrent)
        ident, version = judge.cache_identity, prompts.version
        for p in pairs:
            j: Judgement = results[p.key(ident, version)]
            m = self._match(analysis, items, records[p.row].index, p.item)
            m["similarity"] = p.similarity
            m["verdict"] = j.verdict
            m["judge_prompt"] = p.variant
            m["judge_raw"] = j.raw if j.verdict != "failed" else None
            if j.reason:
                m["judge_error"] = j.reason
        ctx.state["stats"]["judged_pairs"] = len(pairs)

    async def plan(self, records: list[Record], ctx: RunContext) -> None:
        """Run the enabled detectors over every row (also on resume: the search is deterministic, embeddings are
        cached and judged pairs come from the ledger) and keep each row's evidence in ``ctx.state``."""
        ctx.state["analysis"] = {}
        ctx.state["stats"] = {}
        ctx.state["unchecked"] = {r.index for r in records
                                  if not any(_HAS_WORD.search(t) for t in (r.instruction, r.input, r.output))}
        if len(ctx.state["unchecked"]) == len(records):
            raise UserError("the training set has no text in the compared fields (instruction, input, output); "
                            "check --map / --format")
        o = self.options
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if o.ngram:
            self._run_ngram(records, ctx)
            timings["ngram_s"] = round(time.perf_counter() - t0, 3)
        if o.embedding:
            t1 = time.perf_counter()
            st = self._run_embedding(records, ctx)
            timings["embedding_s"] = round(time.perf_counter() - t1, 3)
            if o.llm:
                t2 = time.perf_counter()
                await self._run_judge(records, st, ctx)
                timings["judge_s"] = round(time.perf_counter() - t2, 3)
        ctx.state["stats"]["timings"] = timings

    # ------------------------------------------------------------------ rows
    def _flagged_by(self, m: dict[str, Any]) -> list[str]:
        o = self.options
        out = []
        if o.ngram and m.get("ngram"):
            out.append("ngram")
        if o.embedding and m.get("similarity") is not None and m["similarity"] >= o.threshold:
            out.append("embedding")
        v = m.get("verdict")
        if v == "True" or (v == "unknown" and o.unknown_as == "contaminated"):
            out.append("llm")
        return out

    def row_result(self, rec: Record, ctx: RunContext) -> RowResult:
        if rec.index in ctx.state["unchecked"]:
            return RowResult(UNCHECKED, "no words in the compared fields (instruction, input, output)")
        per_row = ctx.state["analysis"].get(rec.index, {})
        matches = []
        for g in sorted(per_row):
            m = dict(per_row[g])
            m["flagged_by"] = self._flagged_by(m)
            matches.append(m)
        flagged = [m for m in matches if m["flagged_by"]]
        detectors = sorted({d for m in flagged for d in m["flagged_by"]})
        rk: dict[str, Any] = {}
        if matches:
            matches.sort(key=lambda m: (not m["flagged_by"], m["benchmark"], m["item_index"]))
            rk = {"detectors": detectors, "matches": matches[:MAX_MATCHES_PER_ROW], "matches_total": len(matches)}
        mark_only = self.options.mark_only
        failed = [m for m in matches if m.get("verdict") == "failed"]
        if failed:  # evidence incomplete: retried on re-run; dropped meanwhile if another detector flagged the row
            return RowResult(FAILED, f"judge call failed for {failed[0]['benchmark']}:{failed[0]['item_id']}: "
                                     f"{failed[0].get('judge_error')}", rk=rk,
                             drop=bool(flagged) and not mark_only)
        if flagged:
            first = flagged[0]
            unknown = any(m.get("verdict") == "unknown" for m in flagged)
            reason = (f"matches {len(flagged)} benchmark item(s), first {first['benchmark']}:{first['item_id']} "
                      f"(detectors: {', '.join(detectors)})")
            if unknown:
                reason += "; includes a judge verdict 'unknown' counted as contaminated (--unknown-as contaminated)"
            return RowResult(CONTAMINATED, reason, rk=rk, drop=not mark_only)
        unknown = [m for m in matches if m.get("verdict") == "unknown"]
        if unknown:
            return RowResult(CLEAN, f"judge verdict unknown for {unknown[0]['benchmark']}:{unknown[0]['item_id']}; "
                                    "counted as clean (--unknown-as clean)", rk=rk)
        return RowResult(CLEAN, None, rk=rk)

    def process_batch(self, records: list[Record], ctx: RunContext) -> list[RowResult]:
        return [self.row_result(r, ctx) for r in records]

    # ------------------------------------------------------------------ side outputs
    def _report_prefix(self, ctx: RunContext) -> Path:
        if self.options.report is not None:
            return self.options.report
        if ctx.output is not None:
            return report_prefix(ctx.output)
        return ctx.run_dir / "contamination"

    def finish(self, ctx: RunContext, results: ResultReader) -> None:
        from reflectkit.decontam.report import write_reports

        judge = ctx.models.get("judge")
        stats = write_reports(self._report_prefix(ctx), results, self,
                              ngram_too_short=ctx.state.get("ngram_too_short"),
                              judge_identity=getattr(judge, "identity", None))
        ctx.state["stats"].update(stats)
        ctx.add_file("report_jsonl", Path(stats["report_jsonl"]))
        ctx.add_file("report_md", Path(stats["report_md"]))

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if ctx.state.get("stats"):
            extra["decontam"] = ctx.state["stats"]
        if self.prompt_set is not None:
            ps = self.prompt_set
            extra["prompt_set"] = {"name": ps.name, "version": ps.version, "sha256": ps.sha256}
        return extra

    def details(self, ctx: RunContext) -> dict[str, Any]:
        stats = ctx.state.get("stats") or {}
        judge = ctx.models.get("judge")
        calls = int(getattr(getattr(judge, "inner", judge), "calls", 0)) if judge is not None else 0
        out: dict[str, Any] = {"per_benchmark": stats.get("per_benchmark", {}), "threshold": stats.get("threshold"),
                               "judge_calls": calls,
                               "contaminated": (stats.get("status_counts") or {}).get(CONTAMINATED, 0)}
        for k in ("report_jsonl", "report_md"):
            if stats.get(k):
                out[k] = Path(stats[k])
        return out

    def summary_lines(self, summary: Any) -> list[str]:
        lines = []
        md, js = summary.details.get("report_md"), summary.details.get("report_jsonl")
        if md is not None:
            lines.append(f"  report:   {md}" + (f" (+ {Path(js).name})" if js is not None else ""))
        for name, b in summary.details.get("per_benchmark", {}).items():
            lines.append(f"  {name}: {b['items_matched']}/{b['items']} items matched, {b['rows_flagged']} rows flagged"
                         + (f", {b['unknown_verdicts']} unknown verdicts" if b["unknown_verdicts"] else ""))
        return lines
