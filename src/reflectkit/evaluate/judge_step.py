"""The pairwise judge as engine steps (both orders per pair; cached, resumable), and its inputs/outputs.

* :class:`JudgeStep` (``reflectkit judge pairwise A B``, pipeline kind ``judge``): two answer files joined on id;
* :class:`JudgeBenchStep` (``reflectkit judge bench NAME``): LLMBar / JudgeBench pairs with gold labels.

Judgment rows (JSONL): ``id``, ``question``, ``answer_1`` (model A / output_1), ``answer_2``, ``review`` (order 1:
answer_1 shown first), ``review_reverse`` (answers swapped), ``scores``, ``scores_reverse`` and, under
``reflectkit.judge``, ``verdict``/``verdict_reverse`` (position preferred in that order: "1", "2", "tie" or null),
the call count and, for the reflective judge, every analysis and comparison. Next to the judgments file the step
writes its report (``<judgments>.summary.json/.md`` for ``pairwise``, ``<judgments>.bench.json/.md`` for ``bench``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

from pydantic import field_validator

from reflectkit.data.io import Dataset, dumps_jsonl
from reflectkit.data.record import Record
from reflectkit.engine.step import (
    ModelRole,
    ResultReader,
    RowResult,
    RowStep,
    RunContext,
    StageRefs,
    StepOptions,
    estimate_tokens,
    option,
)
from reflectkit.errors import UserError
from reflectkit.evaluate.answersfile import read_jsonl, response_of, row_id
from reflectkit.evaluate.judge import judge_prompt_set, make_judge
from reflectkit.evaluate.judge_parse import Outcome, parse_score, scores_outcome
from reflectkit.evaluate.report import default_paths, markdown, report_json
from reflectkit.prompts import PromptSet, load_prompt_set

HOISTED = ("review", "review_reverse", "scores", "scores_reverse")


# --------------------------------------------------------------------------------------------- options


class JudgeCommonOptions(StepOptions):
    """What both judge steps share: the judge method, its sampling, and where the report goes."""

    method: Literal["plain", "reflective"] = option(
        "plain", "plain (verbatim Cherry/Reflection-Tuning judge) or reflective (ReflectRM-style).", flag="--judge")
    procedure: Literal["reflectrm", "anchor-vote"] = option(
        "reflectrm", "Reflective judge: reflectrm (the paper's: token-confidence anchor, vote over the analyses judged "
        "better, anchor added only if none or tied) or anchor-vote (reflectkit's earlier variant).")
    k: int | None = option(None, "Reflective judge: analyses sampled per order (default: 8 reflectrm, 4 anchor-vote).",
                           ge=1)
    max_tokens: int = option(1024, "Judge max_tokens (upstream: 1024).", ge=1)
    sample_temperature: float | None = option(None, "Reflective judge: temperature of the analyses (default: 1.0 "
                                              "reflectrm, 0.7 anchor-vote).", ge=0)
    confidence: Literal["token", "verbalised"] | None = option(
        None, "Reflective judge: anchor by token confidence (mean log-prob of the lowest --tail-fraction tokens; "
        "falls back to verbalised when the model returns no log-probs) or the analysis' 'Confidence: N' line "
        "(default: token for reflectrm, verbalised for anchor-vote).")
    tail_fraction: float = option(0.1, "Token confidence: the fraction of lowest-log-prob tokens averaged (DeepConf).",
                                  gt=0, le=1)
    seed: int = option(0, "Reflective judge: seed of the comparisons' random order (reflectrm).")
    prompt_set: str | None = option(None, "Judge prompt set name or directory (default: paper for plain; reflectrm / "
                                    "reflective for the reflective procedures).")
    json_path: Path | None = option(None, "Report JSON (default: next to the judgments file).", flag="--json",
                                    fingerprint=False)
    md_path: Path | None = option(None, "Report markdown table (default: next to the judgments file).", flag="--md",
                                  fingerprint=False)

    @field_validator("prompt_set")
    @classmethod
    def _known_set(cls, v: str | None) -> str | None:
        if v is not None:
            load_prompt_set("judge", v)  # a UserError naming the built-in sets
        return v


class JudgeOptions(JudgeCommonOptions):
    labels: list[str] | None = option(None, "Names of A and B, e.g. tuned,base (default: the file names; in a "
                                      "pipeline: the stage names).", fingerprint=False)
    response_field: str | None = option(None, "Field holding the answer (default response/output/completion).")
    a: str | None = option(None, "Side A: an answers file; in a pipeline the stage whose answers are side A.",
                           cli=False, fingerprint=False)
    b: str | None = option(None, "Side B: an answers file; in a pipeline the stage whose answers are side B.",
                           cli=False, fingerprint=False)

    @field_validator("labels", mode="before")
    @classmethod
    def _two_labels(cls, v: Any) -> Any:
        if v is None or (not isinstance(v, str) and not v):  # not given (an empty repeatable flag)
            return None
        items = [v] if isinstance(v, str) else list(v)
        parts = [p.strip() for x in items for p in str(x).split(",")]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"expected two names separated by a comma (e.g. model_1,model_2), got {v!r}")
        return parts


class JudgeBenchOptions(JudgeCommonOptions):
    subset: list[str] | None = option(None, "Only these subsets/files (repeatable).")
    data: Path | None = option(None, "Shared data directory (default: auto-detected).", flag="--data-dir",
                               fingerprint=False)
    swap_seed: int = option(0, "Seed of the single-order protocol's random order per pair.", fingerprint=False)
    compare: list[Path] | None = option(None, "Other judge-bench report JSONs to put side by side with this run, "
                                        "with paired CIs on the differences (repeatable; NAME=PATH names a run).",
                                        fingerprint=False)


# --------------------------------------------------------------------------------------------- steps


class _PairJudgeStep(RowStep[Any]):
    """Both orders of every pair with the plain or reflective judge; writes the judgments and a report."""

    Options: ClassVar[type[JudgeCommonOptions]]
    model_roles = {"judge": ModelRole("chat", "The judge model", prefix="--")}
    output_key = "judge"
    files = {"judgments": "one row per pair with both reviews (the output)",
             "judge_json": "the report with CIs (<judgments>.summary.json / .bench.json)",
             "judge_md": "the report table (<judgments>.summary.md / .bench.md)"}
    code = ("evaluate", "prompts/judge")
    require_output = False
    needs_output = False
    produces_data = False
    consumes_previous = False
    #: attached by hand under ``reflectkit judge`` (reflectkit.evaluate.cli); prints its report, not a row summary
    cli_command = False
    cli_summary = False
    cli_plumbing = ("run_dir", "limit", "dry_run", "restart", "quiet")
    #: the report's name: ``<judgments>.<report_kind>.json``
    report_kind: ClassVar[str] = "summary"

    @cached_property
    def prompt_set(self) -> PromptSet:
        return judge_prompt_set(self.options)

    # ----------------------------------------------------------------- Step contract
    def validate(self) -> None:
        self.spec("judge").check("--")

    def config(self) -> dict[str, Any]:
        o = self.options
        cfg: dict[str, Any] = {"method": o.method, "max_tokens": o.max_tokens, "prompt_set_sha256": self.prompt_set.sha256}
        if o.method == "reflective":
            from reflectkit.evaluate.judge import resolved

            r = resolved(o)
            cfg.update(k=r["k"], sample_temperature=r["sample_temperature"], procedure=r["procedure"],
                       confidence=r["confidence"])
            if r["confidence"] == "token":
                cfg["tail_fraction"] = r["tail_fraction"]
            if r["procedure"] == "reflectrm":
                cfg["seed"] = r["seed"]
        return cfg

    def estimate(self, records: list[Record]) -> dict[str, int]:
        from reflectkit.evaluate.judge import resolved

        per_order = 1 if self.options.method == "plain" else 2 * resolved(self.options)["k"] - 1
        pt = sum(estimate_tokens(_texts(r)) + 250 for r in records)
        calls = 2 * per_order * len(records)
        return {"rows": len(records), "pairs": len(records), "max_judge_calls": calls, "oracle_calls": calls,
                "prompt_tokens_at_least": 2 * per_order * pt, "max_completion_tokens": calls * self.options.max_tokens}

    async def setup(self, ctx: RunContext) -> None:
        ctx.state["judge"] = make_judge(ctx.model("judge"), self.options, self.prompt_set)

    async def process(self, rec: Record, ctx: RunContext) -> RowResult:
        judge = ctx.state["judge"]
        q, a1, a2 = rec.raw["question"], rec.raw["answer_1"], rec.raw["answer_2"]
        fwd, rev = await asyncio.gather(judge.judge(q, a1, a2), judge.judge(q, a2, a1))
        rk: dict[str, Any] = {
            "method": self.options.method, "verdict": fwd["outcome"], "verdict_reverse": rev["outcome"],
            "calls": fwd["calls"] + rev["calls"],
        }
        for key, res in (("", fwd), ("_reverse", rev)):
            rk["review" + key] = res.get("review")
            rk["scores" + key] = res.get("scores")
            if self.options.method == "reflective":
                rk["details" + key] = {k: res[k] for k in ("procedure", "analyses", "confidence_used",
                                                            "confidence_fallback", "anchor", "comparisons", "W",
                                                            "votes", "anchor_added", "calls")}
        unparsed = [name for name, r in (("order 1", fwd), ("order 2", rev)) if r["outcome"] is None]
        return RowResult("judged" if not unparsed else "unparsed",
                         f"unparsed judgment in {' and '.join(unparsed)}" if unparsed else None, rk=rk)

    def output_row(self, row: dict[str, Any], result: RowResult) -> dict[str, Any]:
        """Output rows carry review/review_reverse/scores/scores_reverse at the top level (see :func:`hoist_row`)."""
        return hoist_row(row)

    # ----------------------------------------------------------------- outputs
    def default_output(self, ctx: RunContext) -> Path:  # pragma: no cover - abstract
        raise NotImplementedError

    def report(self, ctx: RunContext, rows: list[dict[str, Any]], path: Path, failed: int) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - abstract

    def finish(self, ctx: RunContext, results: ResultReader) -> None:
        rows = results.rows(self, ctx.dataset.mapping)
        if ctx.output is not None:
            path = ctx.output
            ctx.add_file("judgments", path)  # written by the engine after this hook
        else:
            path = self.default_output(ctx).absolute()
            ctx.write_file("judgments", path, dumps_jsonl(rows))
        failed = results.counts().get("failed", 0)
        report = self.report(ctx, rows, path, failed)
        dj, dm = default_paths(path, self.report_kind)
        o = self.options
        js = Path(o.json_path).expanduser().absolute() if o.json_path else dj
        md = Path(o.md_path).expanduser().absolute() if o.md_path else dm
        text = markdown(report)
        if report.get("compare"):
            from reflectkit.evaluate.judge_metrics import compare_markdown

            text += compare_markdown(report["compare"])
        if report.get("judge", {}).get("confidence_used"):
            text += f"\nConfidence used for the anchors (orders): {report['judge']['confidence_used']}\n"
        ctx.write_file("judge_json", js, report_json(report))
        ctx.write_file("judge_md", md, text)
        report["markdown"] = text
        report["paths"] = {"json": str(js), "md": str(md)}
        ctx.state["report"] = report

    def details(self, ctx: RunContext) -> dict[str, Any]:
        return dict(ctx.state.get("report") or {})

    def summary_lines(self, summary: Any) -> list[str]:
        rep = summary.details
        lines = [str(rep.get("markdown", "")).rstrip("\n")]
        if "paths" in rep:
            lines += ["", f"wrote {rep['paths']['json']} and {rep['paths']['md']}"]
        if summary.failed:
            lines.append(f"{summary.failed} pair(s) failed (counted as unparsed); re-run to retry them")
        return lines

    def judge_info(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The reflective judge's effective settings and, per run, which confidence picked the anchors."""
        if self.options.method != "reflective":
            return {}
        from reflectkit.evaluate.judge import resolved

        used: dict[str, int] = {}
        for r in rows:
            stage = (r.get("reflectkit") or {}).get("judge") or {}
            for key in ("details", "details_reverse"):
                c = (stage.get(key) or {}).get("confidence_used")
                if c:
                    used[c] = used.get(c, 0) + 1
        return {"settings": resolved(self.options), "confidence_used": dict(sorted(used.items()))}

    def _identity(self, ctx: RunContext) -> Any:
        m = ctx.model("judge")
        ident = getattr(m, "identity", None)
        return ident if ident is not None else self.spec("judge").describe()


class JudgeStep(_PairJudgeStep):
    """Judge A vs B in both orders: W/T/L, win rate (W-L)/N+1, consistency, position bias, unparsed, with CIs."""

    name = "judge"
    Options = JudgeOptions
    inputs = "many"
    input_help = "Answers of model A, then of model B (JSONL with id, prompt, response; the same ids)."
    #: in a pipeline: <stage>/judgments.jsonl (a side output: it does not feed the next stage)
    stage_output = "judgments.jsonl"

    options: JudgeOptions

    @classmethod
    def split_inputs(cls, inputs: list[str]) -> tuple[Any, dict[str, Any]]:
        return list(inputs), {}

    def for_stage(self, refs: StageRefs, input: Any) -> tuple["JudgeStep", Any]:
        """In a pipeline ``a`` and ``b`` name earlier stages; their data outputs are the two answer files."""
        o = self.options
        if not o.a or not o.b:
            raise UserError("judge: options a and b are required (the stages whose answers are compared)")
        update: dict[str, Any] = {}
        if o.labels is None:
            update["labels"] = [o.a, o.b]
        for name in ("json_path", "md_path"):
            p = getattr(o, name)
            if p is not None and not p.is_absolute():
                update[name] = Path(refs.path(f"./{p}"))
        return type(self)(o.model_copy(update=update), models=self.models), [refs.data(o.a), refs.data(o.b)]

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> Dataset:
        if input is None and self.options.a and self.options.b:
            input = [self.options.a, self.options.b]
        files = [input] if isinstance(input, (str, Path)) else list(input or [])
        if len(files) != 2:
            raise UserError(f"judge pairwise takes two answer files, A and B; got {len(files)}")
        return pairwise_dataset(Path(files[0]), Path(files[1]), response_field=self.options.response_field,
                                limit=limit)

    def default_output(self, ctx: RunContext) -> Path:
        pa, pb = _answers_of(ctx.dataset)
        return pa.with_name(f"{pa.stem}.vs.{pb.stem}.judgments.jsonl")

    def report(self, ctx: RunContext, rows: list[dict[str, Any]], path: Path, failed: int) -> dict[str, Any]:
        pa, pb = _answers_of(ctx.dataset)
        labels = tuple(self.options.labels) if self.options.labels else (pa.stem, pb.stem)
        report = summarize_rows(rows, path, labels)
        report["inputs"] = {"judgments": str(path), "a": str(pa), "b": str(pb)}
        report["judge"] = {"method": self.options.method, "model": self._identity(ctx), "run_dir": str(ctx.run_dir),
                           "failed_pairs": failed, **self.judge_info(rows)}
        return report


class JudgeBenchStep(_PairJudgeStep):
    """Meta-evaluate a judge: strict (both orders) and order-averaged accuracy, positional agreement, unknowns."""

    name = "judge-bench"
    Options = JudgeBenchOptions
    input_help = "llmbar (5 subsets, 419 pairs) or judgebench (350 + 270 pairs)."
    report_kind = "bench"
    stage_output = "judgments.jsonl"

    options: JudgeBenchOptions

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> Dataset:
        if input is None:
            raise UserError(f"judge bench needs a benchmark ({', '.join(BENCHES)}) or a labelled pairwise file")
        return bench_or_file(input, data=self.options.data, limit=limit, subsets=self.options.subset,
                             mapping=mapping)

    def default_output(self, ctx: RunContext) -> Path:
        bench = getattr(ctx.dataset, "bench", "") or ctx.dataset.path.name
        return Path(f"judge-bench-{bench}-{self.options.method}.jsonl")

    def report(self, ctx: RunContext, rows: list[dict[str, Any]], path: Path, failed: int) -> dict[str, Any]:
        from reflectkit.evaluate.judge_metrics import bench_report

        scored = []
        for r in rows:
            o1, o2, _ = row_outcomes(r, path)
            calls = ((r.get("reflectkit") or {}).get("judge") or {}).get("calls")
            scored.append({"id": r["id"], "label": r["label"], "subset": r.get("subset") or "all", "o1": o1, "o2": o2,
                           "calls": calls})
        ident = self._identity(ctx)
        bench = getattr(ctx.dataset, "bench", "") or ctx.dataset.path.name
        method = self.options.method
        report = bench_report(scored, title=f"Judge bench: {bench} ({method} judge, {len(scored)} pairs)",
                              seed=self.options.swap_seed)
        report["counts"]["failed_pairs"] = failed
        report["counts"].update({k: v for k, v in _calls(rows).items() if v is not None})
        if isinstance(ident, dict) and ("gguf_sha256" in ident or ident.get("kind") == "hf-transformers"):
            report["notes"].insert(0, "NOTE: a small local model (e.g. the embedded SmolLM2-135M) judges near chance; "
                                      "these numbers show the code path, not a useful judge. Use a strong judge via "
                                      "--base-url.")
        report["judge"] = {"method": method, "model": ident, "run_dir": str(ctx.run_dir), **self.judge_info(rows)}
        report["inputs"] = {"bench": bench, "judgments": str(path),
                            "limit_per_subset": getattr(ctx.dataset, "limit_per_subset", None)}
        if self.options.compare:
            from reflectkit.evaluate.judge_metrics import compare_bench

            report["compare"] = compare_bench(report, [_named_report(p) for p in self.options.compare],
                                              label=f"{method} ({_model_name(ident)})")
        return report


def _named_report(spec: Path) -> tuple[str, dict[str, Any]]:
    """``NAME=PATH`` or ``PATH`` (named after the report's judge model) -> (name, report)."""
    from reflectkit.evaluate.report import read_report

    text = str(spec)
    name, _, path = text.partition("=") if "=" in text and not Path(text).exists() else ("", "", text)
    rep = read_report(Path(path))
    if rep.get("kind") != "judge_bench":
        raise UserError(f"--compare {path}: not a judge bench report (kind {rep.get('kind')!r})")
    if not name:
        j = rep.get("judge") or {}
        name = f"{j.get('method', '?')} ({_model_name(j.get('model'))})"
    return name, rep


def _model_name(ident: Any) -> str:
    if isinstance(ident, dict):
        return str(ident.get("model") or Path(str(ident.get("path", "?"))).name)
    return str(ident)


def _texts(r: Record) -> str:
    raw = r.raw
    if all(isinstance(raw.get(k), str) for k in ("question", "answer_1", "answer_2")):
        return raw["question"] + raw["answer_1"] + raw["answer_2"]
    return r.prompt_text + 2 * r.output  # a record that is not a pair (a pipeline's dry run estimates on its input)


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class PairwiseDataset(Dataset):
    """Two answer files joined on id (``answers``: the files of A and B)."""

    answers: tuple[Path, Path] | None = None


@dataclass
class BenchDataset(Dataset):
    """Judge benchmark pairs with gold labels (``limit_per_subset``: the ``limit`` they were read with)."""

    bench: str = ""
    limit_per_subset: int | None = None


def _answers_of(ds: Dataset) -> tuple[Path, Path]:
    answers = getattr(ds, "answers", None)
    return (Path(answers[0]), Path(answers[1])) if answers else (ds.path, ds.path)


def _dataset(path: Path, raws: list[dict[str, Any]], cls: type[Dataset] = Dataset, **extra: Any) -> Dataset:
    records = [Record(id=str(r["id"]), index=i, instruction=r["question"], output=r["answer_1"], raw=r)
               for i, r in enumerate(raws)]
    payload = json.dumps(raws, sort_keys=True, ensure_ascii=False, default=str)
    return cls(path, "jsonl", "alpaca", records, [], hashlib.sha256(payload.encode()).hexdigest(),
               {"instruction": "question", "output": "answer_1"}, len(records), **extra)


def _question(row: dict[str, Any]) -> str:
    q = row.get("prompt", row.get("question", row.get("instruction")))
    if not isinstance(q, str):
        return ""
    return f"{q}\n\n{row['input']}" if isinstance(row.get("input"), str) and row["input"] else q


def pairwise_dataset(answers_a: Path, answers_b: Path, *, response_field: str | None = None,
                     limit: int | None = None) -> Dataset:
    """Join two answer files on ``id``; both must answer the same questions."""
    rows_a, rows_b = read_jsonl(answers_a), read_jsonl(answers_b)
    by_b = {}
    for r in rows_b:
        by_b[row_id(r, answers_b)] = r
    ids_a = [row_id(r, answers_a) for r in rows_a]
    missing_b = [i for i in ids_a if i not in by_b]
    missing_a = sorted(set(by_b) - set(ids_a))
    if missing_b or missing_a:
        where, first = (answers_b, missing_b[0]) if missing_b else (answers_a, missing_a[0])
        raise UserError(f"{where}: no answer for id {first!r} ({len(missing_b) + len(missing_a)} ids are not in both "
                        "files; judge answers to the same questions)")
    raws = []
    for r, rid in zip(rows_a, ids_a):
        q = _question(r) or _question(by_b[rid])
        if not q:
            raise UserError(f"{answers_a}:{r.get('_line', '?')}: no question text (expected 'prompt' or 'question')")
        raws.append({"id": rid, "question": q, "answer_1": response_of(r, answers_a, response_field),
                     "answer_2": response_of(by_b[rid], answers_b, response_field)})
        if limit and len(raws) >= limit:
            break
    return _dataset(answers_a, raws, PairwiseDataset, answers=(answers_a, answers_b))


BENCHES = ("llmbar", "judgebench")
LLMBAR_SUBSETS = ("Natural", "Adversarial_Neighbor", "Adversarial_GPTInst", "Adversarial_GPTOut", "Adversarial_Manual")
JUDGEBENCH_FILES = ("judgebench_gpt4o", "judgebench_claude35")


def bench_dataset(name: str, *, data: str | Path | None = None, limit: int | None = None,
                  subsets: list[str] | None = None) -> Dataset:
    """LLMBar (5 subsets, 419 pairs) or JudgeBench (350 + 270 pairs) from ``shared/data/judge``; ``limit`` is per
    subset. ``label`` is the position ("1"/"2") of the better answer in order 1."""
    from reflectkit.evalsets import data_dir

    if name not in BENCHES:
        raise UserError(f"unknown judge benchmark {name!r}; available: {', '.join(BENCHES)}")
    root = data_dir(data) / "judge" / name
    all_subsets = LLMBAR_SUBSETS if name == "llmbar" else JUDGEBENCH_FILES
    chosen = subsets or list(all_subsets)
    for s in chosen:
        if s not in all_subsets:
            raise UserError(f"--subset {s!r}: {name} has {', '.join(all_subsets)}")
    raws: list[dict[str, Any]] = []
    for s in chosen:
        path = root / (f"{s}.json" if name == "llmbar" else f"{s}.jsonl")
        if not path.exists():
            raise UserError(f"{path}: judge benchmark file not found (check --data-dir)")
        items = json.loads(path.read_text(encoding="utf-8")) if name == "llmbar" else read_jsonl(path, what="benchmark")
        for i, it in enumerate(items):
            if limit and i >= limit:
                break
            try:
                if name == "llmbar":
                    raw = {"id": f"{s}-{i}", "question": it["input"], "answer_1": it["output_1"],
                           "answer_2": it["output_2"], "label": str(it["label"]), "subset": s}
                else:
                    raw = {"id": f"{s}-{it['pair_id']}", "question": it["question"], "answer_1": it["response_A"],
                           "answer_2": it["response_B"], "label": {"A>B": "1", "B>A": "2"}[it["label"]], "subset": s,
                           "source": it.get("source")}
            except KeyError as exc:
                raise UserError(f"{path}:{i + 1}: unexpected benchmark row (missing or bad {exc})") from None
            raws.append(raw)
    return _dataset(root, raws, BenchDataset, bench=name, limit_per_subset=limit)



# --------------------------------------------------------------------------------------------- outputs


def hoist_row(row: dict[str, Any]) -> dict[str, Any]:
    """review/review_reverse/scores/scores_reverse at the top level of a judgment row (the format ``judge
    summarize`` reads and upstream Cherry_LLM review files use), before ``reflectkit``."""
    row = dict(row)
    row.pop("_line", None)
    stage = (row.get("reflectkit") or {}).get("judge") or {}
    new = {k: v for k, v in row.items() if k != "reflectkit" and k not in HOISTED}
    for k in HOISTED:
        new[k] = stage.get(k)
    new["reflectkit"] = row.get("reflectkit")
    return new


def _calls(rows: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [((r.get("reflectkit") or {}).get("judge") or {}).get("calls") for r in rows]
    got = [c for c in calls if isinstance(c, int)]
    return {"calls_per_pair": (sum(got) / len(got)) if got else None, "judge_calls_recorded": sum(got)}


def summarize_rows(rows: list[dict[str, Any]], path: Path | str, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """W/T/L, win rate and bias metrics of judgment rows (``review``/``review_reverse`` or recorded verdicts)."""
    from reflectkit.evaluate.judge_metrics import pairwise_report, wtl

    outs = [row_outcomes(r, path) for r in rows]
    lab = tuple(labels) if labels else ("model_1", "model_2")
    if len(lab) != 2 or not all(lab):
        raise UserError(f"--labels must name two sides, e.g. model_1,model_2; got {labels!r}")
    report = pairwise_report([(o1, o2) for o1, o2, _ in outs], labels=(lab[0], lab[1]))
    report["counts"]["failed_rows"] = sum(src == "failed" for _, _, src in outs)
    report["counts"].update({k: v for k, v in _calls(rows).items() if v is not None})
    report["per_item"] = [{"id": str(r.get("id", i)), "verdict": o1, "verdict_reverse": o2, "result": wtl(o1, o2)}
                          for i, (r, (o1, o2, _)) in enumerate(zip(rows, outs))]
    report["inputs"] = {"judgments": str(path)}
    return report


def row_outcomes(row: dict[str, Any], path: Path | str = "<judgments>") -> tuple[Outcome, Outcome, str]:
    """(order-1 outcome, order-2 outcome, source) of a judgment row.

    Rows with ``review``/``review_reverse`` text are re-parsed with the verbatim score-line rule (so published
    judgments can be re-checked); reflective-judge rows use their recorded verdicts; failed rows are unparsed."""
    stage = (row.get("reflectkit") or {}).get("judge") if isinstance(row.get("reflectkit"), dict) else None
    if isinstance(row.get("review"), str) or isinstance(row.get("review_reverse"), str):
        outs = []
        for key in ("review", "review_reverse"):
            v = row.get(key)
            if v is not None and not isinstance(v, str):
                raise UserError(f"{path}:{row.get('_line', '?')}: {key!r} must be the judge's text (a string)")
            outs.append(scores_outcome(parse_score(v)) if isinstance(v, str) else None)
        return outs[0], outs[1], "review"
    if isinstance(stage, dict) and "verdict" in stage:
        return stage.get("verdict"), stage.get("verdict_reverse"), "verdict"
    if isinstance(stage, dict) and stage.get("status") == "failed":
        return None, None, "failed"
    raise UserError(f"{path}:{row.get('_line', '?')}: not a judgment row (needs 'review' and 'review_reverse', "
                    "or a reflectkit.judge verdict)")


def bench_or_file(source: Any, *, data: str | Path | None = None, limit: int | None = None,
                  subsets: list[str] | None = None, mapping: dict[str, str] | None = None) -> Dataset:
    """A named benchmark (``llmbar``, ``judgebench``) or a labelled pairwise file (:func:`labelled_pairs`)."""
    p = Path(str(source))
    if str(source) in BENCHES or (not p.exists() and not p.suffix and len(p.parts) == 1):  # a benchmark's name
        return bench_dataset(str(source), data=data, limit=limit, subsets=subsets)
    if subsets:
        raise UserError("--subset only applies to a named benchmark (llmbar, judgebench)")
    return labelled_pairs(Path(source), limit=limit, mapping=mapping)


def labelled_pairs(path: Path, *, limit: int | None = None, mapping: dict[str, str] | None = None) -> Dataset:
    """Pairs with gold labels from a JSON/JSONL file in LLMBar shape (``input``, ``output_1``, ``output_2``, ``label``
    1/2), JudgeBench shape (``question``, ``response_A``, ``response_B``, ``label`` "A>B"/"B>A") or reflectkit's
    (``question``, ``answer_1``, ``answer_2``, ``label`` 1/2); ``--map question=q,answer_1=a,...`` renames fields."""
    if not path.exists():
        raise UserError(f"{path}: labelled pairwise file not found (or name a benchmark: {', '.join(BENCHES)})")
    items = read_jsonl(path, what="labelled pairwise")
    m = dict(mapping or {})
    raws: list[dict[str, Any]] = []
    for i, it in enumerate(items):
        if limit and len(raws) >= limit:
            break
        line = it.get("_line", i + 1)
        get = lambda k: it.get(m.get(k, k))  # noqa: E731
        if m or "answer_1" in it:
            q, a1, a2, lab = get("question"), get("answer_1"), get("answer_2"), get("label")
        elif "output_1" in it:
            q, a1, a2, lab = it.get("input"), it.get("output_1"), it.get("output_2"), it.get("label")
        elif "response_A" in it:
            q, a1, a2 = it.get("question"), it.get("response_A"), it.get("response_B")
            lab = {"A>B": "1", "B>A": "2"}.get(str(it.get("label")), it.get("label"))
        else:
            raise UserError(f"{path}:{line}: not a labelled pair (expected question/answer_1/answer_2/label, LLMBar's "
                            "input/output_1/output_2/label or JudgeBench's question/response_A/response_B/label; "
                            "or --map the fields)")
        label = str(lab) if lab is not None else ""
        if label not in ("1", "2"):
            raise UserError(f"{path}:{line}: label must be 1 or 2 (the better answer), got {lab!r}")
        for name, v in (("question", q), ("answer_1", a1), ("answer_2", a2)):
            if not isinstance(v, str):
                raise UserError(f"{path}:{line}: {name} is missing or not text")
        rid = str(it.get("id", it.get("pair_id", f"{path.stem}-{i}")))
        raws.append({"id": rid, "question": q, "answer_1": a1, "answer_2": a2, "label": label,
                     "subset": str(it.get("subset") or path.stem)})
    if not raws:
        raise UserError(f"{path}: no labelled pairs")
    return _dataset(path, raws, BenchDataset, bench=path.name, limit_per_subset=limit)
