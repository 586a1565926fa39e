"""The decontamination Step: detectors run once over the whole dataset in ``prepare``; rows get their verdicts in
``process_batch``; ``finalize`` writes the contamination report.

Fields compared (also written into the report):

* n-gram: every training field (instruction, input, output) against each benchmark item's question (+ input)
  and, where the benchmark has one, its answer;
* embedding and LLM judge: training instruction (+ input) against benchmark question (+ input).

A row is ``contaminated`` when any enabled detector flags one of its pairs (the union); ``clean`` otherwise;
``unchecked`` when it has no words in the compared fields; ``failed`` when one of its judge calls failed
(retried on re-run; the row is left out of the output meanwhile if another detector flagged it).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from reflectkit.data.record import Record
from reflectkit.decontam.benchmarks import BenchItem, Benchmark
from reflectkit.decontam.judge import Judgement, Pair, PairLedger, judge_pairs, variant_for
from reflectkit.decontam.ngram import NgramIndex
from reflectkit.decontam.report import write_reports
from reflectkit.decontam.search import SearchState
from reflectkit.engine.ledger import Ledger
from reflectkit.engine.step import FAILED, RowResult
from reflectkit.errors import UserError
from reflectkit.llm.cache import CachedChatModel

CLEAN, CONTAMINATED, UNCHECKED = "clean", "contaminated", "unchecked"
#: Calibrated on a held-out split (GSM8K *train*, never the test set scored in benchmarks/RESULTS.md): the cosine
#: that maximises recall on number-substituted copies minus the false-positive rate on hard negatives (each
#: question vs its nearest *other* question). benchmarks/decontam_data/calibrate_threshold.py reproduces it.
DEFAULT_THRESHOLD = 0.86
#: Pairs below this cosine are not sent to the judge (bounds the calls; LMSYS sends every top-k pair). Same
#: calibration: the largest value that keeps every held-out positive.
DEFAULT_JUDGE_MIN_SIMILARITY = 0.7
MAX_MATCHES_PER_ROW = 20
_HAS_WORD = re.compile(r"[^\W_]")

COMPARED_FIELDS = {
    "ngram": "training instruction, input and output vs benchmark question (+input) and answer (where the benchmark has one)",
    "embedding": "training instruction (+input) vs benchmark question (+input)",
    "llm": "training instruction (+input) vs benchmark question (+input), for embedding candidate pairs",
}


@dataclass
class DecontamConfig:
    ngram: bool = True
    ngram_n: int = 13
    ngram_min_words: int = 8
    embedding: bool = True
    llm: bool = False
    top_k: int = 1
    threshold: float = DEFAULT_THRESHOLD
    judge_min_similarity: float = DEFAULT_JUDGE_MIN_SIMILARITY
    judge_prompt: str = "auto"
    prompt_set: str = "paper"
    unknown_as: Literal["contaminated", "clean"] = "contaminated"
    mark_only: bool = False

    def validate(self) -> None:
        if not (self.ngram or self.embedding or self.llm):
            raise UserError("all detectors are off; enable at least one of --ngram, --embedding, --llm")
        if self.ngram_n < 1:
            raise UserError(f"--ngram-n must be >= 1, got {self.ngram_n}")
        if self.top_k < 1:
            raise UserError(f"--top-k must be >= 1, got {self.top_k}")
        if not -1.0 <= self.threshold <= 1.0:
            raise UserError(f"--threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        if self.unknown_as not in ("contaminated", "clean"):
            raise UserError(f"--unknown-as must be contaminated or clean, got {self.unknown_as!r}")
        if self.llm and not self.embedding:
            raise UserError("--llm judges the embedding stage's candidate pairs; it needs --embedding")


def _question(rec: Record) -> str:
    return f"{rec.instruction}\n{rec.input}" if rec.input else rec.instruction


class DecontamStep:
    name = "decontam"
    batch_size = 4096

    def __init__(self, benchmarks: list[Benchmark], cfg: DecontamConfig, *, judge: CachedChatModel | None = None,
                 cache_dir: Path | None = None, report_prefix: Path | None = None, concurrency: int = 8,
                 embed_batch_size: int = 64, chunk_rows: int = 8192, progress: bool = False) -> None:
        cfg.validate()
        if cfg.llm and judge is None:
            raise UserError("--llm needs a judge model")
        self.benchmarks = benchmarks
        self.cfg = cfg
        self.judge = judge
        self.cache_dir = cache_dir
        self.report_prefix = report_prefix
        self.concurrency = concurrency
        self.embed_batch_size = embed_batch_size
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.run_dir: Path | None = None  # set by the API before the run starts (judge ledger lives there)
        self.items: list[BenchItem] = [it for b in benchmarks for it in b.items]
        self.prompt_set = None
        if cfg.llm:
            from reflectkit.prompts import load_prompt_set

            self.prompt_set = load_prompt_set("decontam", cfg.prompt_set)
            for b in benchmarks:
                self.prompt_set[f"system_{variant_for(b.name, cfg.judge_prompt)}"]
            self.prompt_set["user"]
        self._analysis: dict[int, dict[int, dict[str, Any]]] = {}
        self._unchecked: set[int] = set()
        self._stats: dict[str, Any] = {}
        self._ngram_too_short = 0

    # ------------------------------------------------------------------ Step protocol
    def models(self) -> dict[str, CachedChatModel]:
        return {"judge": self.judge} if (self.cfg.llm and self.judge is not None) else {}

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = asdict(self.cfg)
        cfg["benchmarks"] = [{"name": b.name, "sha256": b.sha256, "items": len(b.items)} for b in self.benchmarks]
        if self.cfg.embedding:
            from reflectkit.embed import model_identity

            cfg["embedder"] = model_identity()["weights_sha256_first_mib"]
        if self.prompt_set is not None:
            cfg["prompt_set_sha256"] = self.prompt_set.sha256
        cfg["compared_fields"] = {k: v for k, v in COMPARED_FIELDS.items() if getattr(self.cfg, k)}
        return cfg

    def estimate(self, records: list[Record]) -> dict[str, int]:
        n_items = len(self.items)
        return {"rows": len(records), "benchmark_items": n_items,
                "embeddings_to_compute_at_most": (len(records) + n_items) if self.cfg.embedding else 0,
                "judge_calls_at_most": n_items * self.cfg.top_k if self.cfg.llm else 0}

    def manifest_extra(self) -> dict[str, Any]:
        return {"decontam": self._stats} if self._stats else {}

    # ------------------------------------------------------------------ detectors
    def _match(self, row: int, item: int) -> dict[str, Any]:
        per_row = self._analysis.setdefault(row, {})
        if item not in per_row:
            it = self.items[item]
            per_row[item] = {"benchmark": it.benchmark, "item_id": it.id, "item_index": it.index}
        return per_row[item]

    def _run_ngram(self, records: list[Record]) -> None:
        texts: list[str] = []
        owners: list[int] = []
        fields: list[str] = []
        for g, it in enumerate(self.items):
            texts.append(it.question)
            owners.append(g)
            fields.append("question")
            if it.answer:
                texts.append(it.answer)
                owners.append(g)
                fields.append("answer")
        idx = NgramIndex.build(texts, owners, n=self.cfg.ngram_n, min_words=self.cfg.ngram_min_words)
        self._ngram_too_short = idx.too_short
        for start in range(0, len(records), self.chunk_rows):
            chunk = records[start : start + self.chunk_rows]
            hits = idx.query([(r.instruction, r.input, r.output) for r in chunk])
            for h in hits:
                rec = chunk[h.row]
                m = self._match(rec.index, h.item)
                m["ngram"] = {"train_field": ("instruction", "input", "output")[h.field],
                              "benchmark_field": fields[h.source], "text": h.ngram}

    def _run_embedding(self, records: list[Record]) -> tuple[SearchState, list[int]]:
        from reflectkit.embed import encode

        bench = encode([it.question for it in self.items], cache_dir=self.cache_dir, batch_size=self.embed_batch_size)
        st = SearchState(self.cfg.top_k, len(self.items))
        for start in range(0, len(records), self.chunk_rows):
            chunk = records[start : start + self.chunk_rows]
            emb = encode([_question(r) for r in chunk], cache_dir=self.cache_dir, batch_size=self.embed_batch_size)
            st.add(bench, emb)
            if self.progress:
                print(f"decontam: embedded {start + len(chunk)}/{len(records)} rows", file=sys.stderr)
        best_item, best_score = st.row_best()
        thr = self.cfg.threshold
        for pos in np.nonzero(best_score >= thr)[0].tolist():
            self._match(records[pos].index, int(best_item[pos]))["similarity"] = round(float(best_score[pos]), 4)
        for g in range(len(self.items)):
            for s, r in zip(st.top_scores[g].tolist(), st.top_rows[g].tolist()):
                if r >= 0 and s >= thr:
                    self._match(records[r].index, g)["similarity"] = round(float(s), 4)
        return st, [r.index for r in records]

    async def _run_judge(self, records: list[Record], st: SearchState) -> None:
        assert self.judge is not None and self.prompt_set is not None
        if self.run_dir is None:
            raise AssertionError("DecontamStep.run_dir must be set before the run (the judge ledger lives there)")
        pairs: list[Pair] = []
        for g, it in enumerate(self.items):
            variant = variant_for(it.benchmark, self.cfg.judge_prompt)
            for s, r in zip(st.top_scores[g].tolist(), st.top_rows[g].tolist()):
                if r >= 0 and s >= self.cfg.judge_min_similarity:
                    pairs.append(Pair(it.benchmark, g, r, it.question, _question(records[r]), variant, round(float(s), 4)))
        if self.progress:
            print(f"decontam: judging {len(pairs)} candidate pairs", file=sys.stderr)
        ledger = PairLedger(self.run_dir / "judge_pairs.sqlite")
        try:
            results = await judge_pairs(self.judge, self.prompt_set, pairs, ledger, concurrency=self.concurrency)
        finally:
            ledger.close()
        ident, version = self.judge.cache_identity, self.prompt_set.version
        for p in pairs:
            j: Judgement = results[p.key(ident, version)]
            m = self._match(records[p.row].index, p.item)
            m["similarity"] = p.similarity
            m["verdict"] = j.verdict
            m["judge_prompt"] = p.variant
            m["judge_raw"] = j.raw if j.verdict != "failed" else None
            if j.reason:
                m["judge_error"] = j.reason
        self._stats["judged_pairs"] = len(pairs)

    async def prepare(self, records: list[Record]) -> None:
        self._analysis.clear()
        self._unchecked = {r.index for r in records
                           if not any(_HAS_WORD.search(t) for t in (r.instruction, r.input, r.output))}
        if len(self._unchecked) == len(records):
            raise UserError("the training set has no text in the compared fields (instruction, input, output); "
                            "check --map / --format")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if self.cfg.ngram:
            self._run_ngram(records)
            timings["ngram_s"] = round(time.perf_counter() - t0, 3)
        if self.cfg.embedding:
            t1 = time.perf_counter()
            st, _ = self._run_embedding(records)
            timings["embedding_s"] = round(time.perf_counter() - t1, 3)
            if self.cfg.llm:
                t2 = time.perf_counter()
                await self._run_judge(records, st)
                timings["judge_s"] = round(time.perf_counter() - t2, 3)
        self._stats["timings"] = timings

    # ------------------------------------------------------------------ rows
    def _flagged_by(self, m: dict[str, Any]) -> list[str]:
        out = []
        if self.cfg.ngram and m.get("ngram"):
            out.append("ngram")
        if self.cfg.embedding and m.get("similarity") is not None and m["similarity"] >= self.cfg.threshold:
            out.append("embedding")
        v = m.get("verdict")
        if v == "True" or (v == "unknown" and self.cfg.unknown_as == "contaminated"):
            out.append("llm")
        return out

    def row_result(self, rec: Record) -> RowResult:
        if rec.index in self._unchecked:
            return RowResult(UNCHECKED, "no words in the compared fields (instruction, input, output)")
        per_row = self._analysis.get(rec.index, {})
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
        failed = [m for m in matches if m.get("verdict") == "failed"]
        if failed:  # evidence incomplete: retried on re-run; dropped meanwhile if another detector flagged the row
            return RowResult(FAILED, f"judge call failed for {failed[0]['benchmark']}:{failed[0]['item_id']}: "
                                     f"{failed[0].get('judge_error')}", rk=rk,
                             drop=bool(flagged) and not self.cfg.mark_only)
        if flagged:
            first = flagged[0]
            unknown = any(m.get("verdict") == "unknown" for m in flagged)
            reason = (f"matches {len(flagged)} benchmark item(s), first {first['benchmark']}:{first['item_id']} "
                      f"(detectors: {', '.join(detectors)})")
            if unknown:
                reason += "; includes a judge verdict 'unknown' counted as contaminated (--unknown-as contaminated)"
            return RowResult(CONTAMINATED, reason, rk=rk, drop=not self.cfg.mark_only)
        unknown = [m for m in matches if m.get("verdict") == "unknown"]
        if unknown:
            return RowResult(CLEAN, f"judge verdict unknown for {unknown[0]['benchmark']}:{unknown[0]['item_id']}; "
                                    "counted as clean (--unknown-as clean)", rk=rk)
        return RowResult(CLEAN, None, rk=rk)

    def process_batch(self, recs: list[Record]) -> list[RowResult]:
        return [self.row_result(r) for r in recs]

    def finalize(self, records: list[Record], ledger: Ledger, run_dir: Path) -> None:
        prefix = self.report_prefix or (run_dir / "contamination")
        self._stats.update(write_reports(prefix, records, ledger, self))
