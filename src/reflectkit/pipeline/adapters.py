"""One small adapter per stage kind: call the recipe's Python API with the stage's options.

Each adapter returns a :class:`StageResult`. Recipe modules are imported lazily, so a pipeline only needs the
recipes it uses.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reflectkit.errors import UserError
from reflectkit.llm.factory import ModelSpec
from reflectkit.pipeline.schema import Pipeline, Stage

_PLUMBING = ("cache_dir", "progress", "concurrency", "limit", "run_dir", "format", "shape")


@dataclass
class StageContext:
    pipeline: Pipeline
    stage: Stage
    dir: Path
    input: Path | None
    data_outputs: dict[str, Path]  # earlier stages' data outputs, by stage name
    artefacts: dict[str, Path]  # earlier stages' other outputs (a trained model dir), by stage name
    limit: int | None
    cache_dir: Path
    concurrency: int
    progress: bool

    @property
    def output(self) -> Path:
        return self.dir / "output.jsonl"

    @property
    def reads_pipeline_input(self) -> bool:
        return self.input is not None and self.input == self.pipeline.input

    def chat(self, role: str) -> ModelSpec:
        return self.pipeline.models[role].chat_spec()

    def student(self) -> str:
        return self.pipeline.models["student"].student_ref()

    def stage_data(self, name: str) -> Path:
        if name in ("input", "_input"):
            return self.pipeline.input
        if name not in self.data_outputs:
            raise UserError(f"stage {self.stage.name!r}: {name!r} is not an earlier stage with a data output")
        return self.data_outputs[name]


@dataclass
class StageResult:
    output: Path | None = None  # data that feeds the next stage
    artefact: Path | None = None  # e.g. a trained model directory
    failed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # named side files (reports) for the HTML report


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a recipe API, leaving out plumbing arguments (cache_dir, progress, ...) it does not take."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params or k not in _PLUMBING}
    return fn(*args, **kwargs)


def _common(ctx: StageContext) -> dict[str, Any]:
    kw: dict[str, Any] = {"run_dir": ctx.dir, "cache_dir": ctx.cache_dir, "concurrency": ctx.concurrency,
                          "progress": ctx.progress}
    if ctx.reads_pipeline_input:
        kw["limit"] = ctx.limit
    return kw


def _summary(s: Any, output: Path | None, **files: str) -> StageResult:
    counts = dict(getattr(s, "counts", {}) or {})
    failed = int(getattr(s, "failed", counts.get("failed", 0)) or 0)
    return StageResult(output=output, failed=failed, counts=counts, files=files)


def run_recycle(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.recycle.api import recycle

    kw = _common(ctx)
    if ctx.reads_pipeline_input and ctx.pipeline.spec.format:
        kw["format"] = ctx.pipeline.spec.format
    s = call(recycle, ctx.input, ctx.output, oracle=ctx.chat("oracle"), **o.api_kwargs(), **kw)
    return _summary(s, ctx.output)


def run_score(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.scoring.api import score

    s = call(score, ctx.input, ctx.output, student=ctx.student(), **o.api_kwargs(), **_common(ctx))
    return _summary(s, ctx.output)


def run_select(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.select.api import select

    s = call(select, [ctx.input], ctx.output, **o.api_kwargs(), **_common(ctx))
    return _summary(s, ctx.output)


def _resolve_bench(ctx: StageContext, name: str) -> str:
    p = (ctx.pipeline.file.parent / name)
    return str(p.resolve()) if ("/" in name or name.endswith((".json", ".jsonl", ".csv", ".parquet"))) else name


def run_decontaminate(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.decontam.api import decontaminate

    judge = ctx.chat("judge") if o.llm else None
    against = [_resolve_bench(ctx, a) for a in o.against]
    s = call(decontaminate, ctx.input, against, ctx.output, judge=judge, **o.api_kwargs("against"), **_common(ctx))
    files = {"contamination_jsonl": str(getattr(s, "report_jsonl", "")), "contamination_md": str(getattr(s, "report_md", ""))}
    return _summary(s, ctx.output, **{k: v for k, v in files.items() if v})


def run_stats(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.scoring.stats import stats_table

    names = o.inputs or list(ctx.data_outputs)
    paths = [ctx.stage_data(n) for n in names]
    empty = [n for n, p in zip(names, paths) if p.exists() and not p.read_bytes().strip()]
    paths = [p for n, p in zip(names, paths) if n not in empty]
    if not paths:
        out = ctx.dir / "stats.md"
        out.write_text(f"No statistics: the inputs ({', '.join(names)}) have no rows.\n", encoding="utf-8")
        return StageResult(files={"stats": str(out)}, counts={"inputs": 0})
    table = stats_table(paths, o.format)
    if empty and o.format == "markdown":
        table = f"{table}\n\n(no rows in: {', '.join(empty)})\n"
    ext = {"markdown": "md", "csv": "csv", "json": "json"}[o.format]
    out = ctx.dir / f"stats.{ext}"
    out.write_text(table if isinstance(table, str) else json.dumps(table, indent=2, default=str), encoding="utf-8")
    return StageResult(files={"stats": str(out)}, counts={"inputs": len(paths)})


def run_synthesize(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.synth.api import synthesize

    s = call(synthesize, ctx.input, ctx.output, oracle=ctx.chat("oracle"), **o.api_kwargs(), **_common(ctx))
    return _summary(s, ctx.output)


def run_train(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.train.api import train

    out_dir = ctx.dir / "model"
    s = call(train, ctx.input, out_dir, student=ctx.student(), **o.api_kwargs(), **_common(ctx))
    res = _summary(s, None)
    res.artefact = out_dir
    return res


def run_generate(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.evaluate.api import generate

    if o.model in ("student", "oracle"):
        entry = ctx.pipeline.models[o.model]
        model: Any = entry.student_ref() if o.model == "student" else entry.chat_spec()
    elif o.model in ctx.artefacts:
        model = str(ctx.artefacts[o.model])
    else:
        raise UserError(f"stage {ctx.stage.name!r}: options.model {o.model!r} is neither a model role nor an earlier "
                        "train stage")
    evalset = _resolve_bench(ctx, o.evalset)
    s = call(generate, evalset, ctx.output, model=model, **o.api_kwargs("evalset", "model"), **_common(ctx))
    return _summary(s, ctx.output)


def run_eval(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.evaluate import api

    fn = api.eval_gsm8k if o.metric == "gsm8k" else api.eval_ifeval
    js, md = ctx.dir / "eval.json", ctx.dir / "eval.md"
    call(fn, ctx.input, json_path=js, md_path=md)
    return StageResult(files={"eval_json": str(js), "eval_md": str(md)})


def run_judge(ctx: StageContext, o: Any) -> StageResult:
    from reflectkit.evaluate.api import judge_pairwise

    js, md = ctx.dir / "judge.json", ctx.dir / "judge.md"
    call(judge_pairwise, ctx.stage_data(o.a), ctx.stage_data(o.b), judge=ctx.chat("judge"), labels=(o.a, o.b),
         output=ctx.dir / "judgments.jsonl", json_path=js, md_path=md, **o.api_kwargs("a", "b"), **_common(ctx))
    return StageResult(files={"judge_json": str(js), "judge_md": str(md)})


ADAPTERS: dict[str, Callable[[StageContext, Any], StageResult]] = {
    "recycle": run_recycle, "score": run_score, "select": run_select, "decontaminate": run_decontaminate,
    "stats": run_stats, "synthesize": run_synthesize, "train": run_train, "generate": run_generate,
    "eval": run_eval, "judge": run_judge,
}
