"""Python API for decontamination: the same function the CLI calls.

>>> from reflectkit.decontam.api import decontaminate
>>> s = decontaminate("train.jsonl", ["gsm8k", "ifeval"], "clean.jsonl")  # doctest: +SKIP
>>> s.counts, s.report_md  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reflectkit.data.io import read_dataset
from reflectkit.decontam.benchmarks import load_benchmarks
from reflectkit.decontam.step import DEFAULT_JUDGE_MIN_SIMILARITY, DEFAULT_THRESHOLD, DecontamConfig, DecontamStep
from reflectkit.engine.run import Run, RunSummary
from reflectkit.errors import UserError
from reflectkit.llm.cache import CachedChatModel, ResponseCache, default_cache_dir
from reflectkit.llm.factory import ModelSpec, build_chat_model


@dataclass
class DecontamSummary:
    """What a decontamination run produced. ``counts`` has clean / contaminated / unchecked / failed rows."""

    counts: dict[str, int]
    rows_in: int
    rows_out: int
    output: Path | None
    report_jsonl: Path
    report_md: Path
    manifest_path: Path
    run_dir: Path
    per_benchmark: dict[str, dict[str, Any]]
    threshold: float | None
    judge_calls: int
    cache_hits: int
    wall_time_s: float
    run: RunSummary = field(repr=False)

    @property
    def contaminated(self) -> int:
        return self.counts.get("contaminated", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def report_prefix(output: Path) -> Path:
    """``clean.jsonl`` -> ``clean.contamination`` (the report is ``clean.contamination.jsonl`` / ``.md``)."""
    return output.with_name(output.stem + ".contamination")


async def run_decontam(step: DecontamStep, ds: Any, *, output: Path | None, run_dir: Path | None, concurrency: int,
                       progress: bool, restart: bool) -> RunSummary:
    run = Run(step, ds, output=output, run_dir=run_dir, concurrency=concurrency, progress=progress, restart=restart)
    step.run_dir = run.run_dir
    try:
        return await run.execute()
    finally:
        if step.judge is not None:
            await step.judge.aclose()


def summarise(step: DecontamStep, s: RunSummary) -> DecontamSummary:
    stats = s.manifest.get("decontam", {})
    return DecontamSummary(
        counts=dict(s.counts), rows_in=s.rows_in, rows_out=s.rows_out, output=s.output,
        report_jsonl=Path(stats["report_jsonl"]), report_md=Path(stats["report_md"]), manifest_path=s.manifest_path,
        run_dir=s.run_dir, per_benchmark=stats.get("per_benchmark", {}), threshold=stats.get("threshold"),
        judge_calls=s.calls, cache_hits=s.cache_hits, wall_time_s=s.wall_time_s, run=s,
    )


def decontaminate(
    train: str | Path,
    against: list[str],
    output: str | Path | None,
    *,
    ngram_n: int = 13,
    ngram: bool = True,
    embedding: bool = True,
    llm: bool = False,
    judge: ModelSpec | None = None,
    top_k: int = 1,
    threshold: float = DEFAULT_THRESHOLD,
    judge_min_similarity: float = DEFAULT_JUDGE_MIN_SIMILARITY,
    judge_prompt: str = "auto",
    prompt_set: str = "paper",
    unknown_as: Literal["contaminated", "clean"] = "contaminated",
    mark_only: bool = False,
    run_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
    progress: bool = False,
    mapping: dict[str, str] | None = None,
    bench_mapping: dict[str, str] | None = None,
    format: str | None = None,
    skip_bad_rows: bool = False,
    concurrency: int = 8,
    use_cache: bool = True,
    judge_model: CachedChatModel | None = None,
    restart: bool = False,
) -> DecontamSummary:
    """Remove (or with ``mark_only`` mark) training rows that overlap the ``against`` benchmarks.

    ``against``: built-in names (``gsm8k``, ``ifeval``, ``vicuna``, ``koala``, ``wizardlm``, ``sinstruct``,
    ``lima``, ``all``) or benchmark files (fields renamed with ``bench_mapping``: question=, input=, answer=, id=).
    ``judge``: the LLM judge (default: the embedded model); ``judge_model`` passes a ready model instead.
    The report is written beside ``output`` as ``<stem>.contamination.jsonl`` / ``.md`` (or into the run dir).
    """
    if isinstance(against, (str, Path)):
        against = [str(against)]
    cfg = DecontamConfig(ngram=ngram, ngram_n=ngram_n, embedding=embedding, llm=llm, top_k=top_k, threshold=threshold,
                         judge_min_similarity=judge_min_similarity, judge_prompt=judge_prompt, prompt_set=prompt_set,
                         unknown_as=unknown_as, mark_only=mark_only)
    cfg.validate()
    ds = read_dataset(train, format=format, mapping=mapping, skip_bad_rows=skip_bad_rows, require_output=False).limit(limit)
    benches = load_benchmarks([str(a) for a in against], data_dir=data_dir, mapping=bench_mapping)
    cdir = Path(cache_dir) if cache_dir else default_cache_dir()
    model = judge_model
    if llm and model is None:
        model = build_chat_model(judge or ModelSpec(), cache=ResponseCache(cdir) if use_cache else None,
                                 concurrency=concurrency, setting_name="--judge")
    out = Path(output) if output else None
    step = DecontamStep(benches, cfg, judge=model, cache_dir=cdir, report_prefix=report_prefix(out) if out else None,
                        concurrency=concurrency, progress=progress)
    if out is not None and out.resolve() == Path(train).resolve():
        raise UserError(f"-o {out}: the output would overwrite the training file")
    s = asyncio.run(run_decontam(step, ds, output=out, run_dir=Path(run_dir) if run_dir else None,
                                 concurrency=concurrency, progress=progress, restart=restart))
    return summarise(step, s)
