"""Python API for evaluation: the same functions the CLI calls.

>>> from reflectkit.evaluate import api
>>> s = api.generate("gsm8k", "answers.jsonl", model="embedded", limit=20)          # doctest: +SKIP
>>> api.eval_gsm8k("answers.jsonl")["metrics"]["flexible_extract"]                   # doctest: +SKIP
>>> api.judge_pairwise("a.jsonl", "b.jsonl", method="plain")["metrics"]["win_rate"]  # doctest: +SKIP

``generate`` and ``refine`` return the engine's :class:`~reflectkit.engine.run.RunSummary`; the judges and the
evals return their report (a dict with ``metrics``, ``counts``, ``per_item``, ``markdown`` and ``paths``). Model
arguments (``model=``, ``judge=``) take a :class:`~reflectkit.llm.spec.ModelSpec`, a string (``'embedded'``, a
.gguf path, ``hf:DIR``, a ``reflectkit train`` output directory, or an endpoint's model name together with
``base_url``) or a dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflectkit.engine.api import api_function
from reflectkit.engine.run import RunSummary
from reflectkit.evaluate.eval_step import EvalStep, eval_report
from reflectkit.evaluate.generate import GenerateStep
from reflectkit.evaluate.judge_step import JudgeBenchStep, JudgeStep
from reflectkit.evaluate.refine import RefineStep
from reflectkit.evaluate.report import default_paths, write_report
from reflectkit.llm.spec import ModelSpec

ModelArg = str | ModelSpec | dict | None

_generate = api_function(GenerateStep)
_refine = api_function(RefineStep)
_judge = api_function(JudgeStep)
_judge_bench = api_function(JudgeBenchStep)
#: ``eval`` as a step: ``run_eval("answers.jsonl", metric="gsm8k", run_dir=...)`` writes eval.json/eval.md there
run_eval = api_function(EvalStep)


def model_spec(model: ModelArg = None, **parts: Any) -> ModelSpec | None:
    """``model`` with the separately given settings (``base_url``, ``api_key_env``, ``adapter``, ...) folded in;
    None when nothing was given (the step's default: the embedded model)."""
    given = {k: (str(v) if isinstance(v, Path) else v) for k, v in parts.items() if v is not None}
    if model is None and not given:
        return None
    base = ModelSpec.coerce(model).model_dump(exclude_defaults=True)
    return ModelSpec(**{**base, **given})


def generate(evalset: str | Path, output: str | Path | None = None, *, model: ModelArg = None,
             base_url: str | None = None, api_key_env: str | None = None, adapter: str | Path | None = None,
             prompt_format: str | None = None, **kwargs: Any) -> RunSummary:
    """Answer every item of an eval set (built-in name or file + ``mapping``); writes JSONL rows to ``output``.

    Keywords: the options of :class:`~reflectkit.evaluate.generate.GenerateOptions` (``shots``, ``max_tokens``,
    ``temperature``, ``top_p``, ``system``, ``data``, ...), ``model`` (see the module docstring; ``base_url``,
    ``api_key_env``, ``adapter``, ``prompt_format`` are folded into it) and the engine's plumbing (``limit``,
    ``mapping``, ``run_dir``, ``cache_dir``, ``use_cache``, ``cache_only``, ``concurrency``, ``progress``,
    ``restart``, ``clients``)."""
    spec = model_spec(model, base_url=base_url, api_key_env=api_key_env, adapter=adapter, prompt_format=prompt_format)
    return _generate(str(evalset), output, model=spec, **kwargs)


def refine(evalset: str | Path, output: str | Path | None = None, *, model: ModelArg = None,
           base_url: str | None = None, api_key_env: str | None = None, adapter: str | Path | None = None,
           prompt_format: str | None = None, **kwargs: Any) -> RunSummary:
    """Self-Refine: draft, then up to ``rounds`` critique -> revise rounds per item (all kept in the record).
    Keywords as :func:`generate`, plus ``rounds`` and ``critique_max_tokens``."""
    spec = model_spec(model, base_url=base_url, api_key_env=api_key_env, adapter=adapter, prompt_format=prompt_format)
    return _refine(str(evalset), output, model=spec, **kwargs)


def _write(report: dict[str, Any], source: Path, kind: str, json_path: str | Path | None,
           md_path: str | Path | None, write: bool) -> dict[str, Any]:
    if write:
        dj, dm = default_paths(source, kind)
        report["markdown"] = write_report(report, Path(json_path) if json_path else dj, Path(md_path) if md_path else dm)
        report["paths"] = {"json": str(json_path or dj), "md": str(md_path or dm)}
    return report


def eval_gsm8k(answers: str | Path, *, json_path: str | Path | None = None, md_path: str | Path | None = None,
               references: str | None = None, data: str | Path | None = None, response_field: str | None = None,
               write: bool = True) -> dict[str, Any]:
    """GSM8K strict-match and flexible-extract accuracy with CIs; writes ``<answers>.gsm8k.{json,md}`` by default.
    (The ``eval`` step with ``metric="gsm8k"``, without a run directory.)"""
    report = eval_report("gsm8k", answers, references=references, data=data, response_field=response_field)
    return _write(report, Path(answers), "gsm8k", json_path, md_path, write)


def eval_ifeval(answers: str | Path, *, json_path: str | Path | None = None, md_path: str | Path | None = None,
                input_data: str | Path | None = None, response_field: str | None = None, output_only: bool = True,
                write: bool = True) -> dict[str, Any]:
    """IFEval prompt/instruction-level accuracy (strict, loose) with CIs over prompts.
    (The ``eval`` step with ``metric="ifeval"``, without a run directory.)"""
    report = eval_report("ifeval", answers, input_data=input_data, response_field=response_field,
                         whole_response=not output_only)
    return _write(report, Path(answers), "ifeval", json_path, md_path, write)


def _report(summary: Any) -> Any:
    return summary if isinstance(summary, dict) else dict(summary.details)


def judge_pairwise(answers_a: str | Path, answers_b: str | Path, *, judge: ModelArg = None,
                   judge_base_url: str | None = None, judge_api_key_env: str | None = None,
                   labels: tuple[str, str] | list[str] | None = None, output: str | Path | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """Judge A vs B in both orders (verbatim Cherry judge by default); returns the W/T/L report with CIs.

    Judgments go to ``output`` (default ``<answers_a>.vs.<answers_b>.judgments.jsonl``), the report next to them
    (``<judgments>.summary.json/.md``, or ``json_path``/``md_path``). Keywords: the options of
    :class:`~reflectkit.evaluate.judge_step.JudgeOptions` (``method``, ``k``, ``max_tokens``,
    ``sample_temperature``, ``prompt_set``, ``response_field``, ``json_path``, ``md_path``), ``judge`` (its model)
    and the engine's plumbing (``limit``, ``run_dir``, ``cache_dir``, ``use_cache``, ``concurrency``, ...).
    With ``dry_run=True`` the estimate."""
    spec = model_spec(judge, base_url=judge_base_url, api_key_env=judge_api_key_env)
    return _report(_judge([str(answers_a), str(answers_b)], output, judge=spec,
                          labels=list(labels) if labels is not None else None, **kwargs))


def summarize_judgments(path: str | Path, *, labels: tuple[str, str] | list[str] | None = None,
                        json_path: str | Path | None = None, md_path: str | Path | None = None,
                        write: bool = True) -> dict[str, Any]:
    """Recompute W/T/L, win rate and bias metrics from recorded judgments (``review``/``review_reverse``)."""
    from reflectkit.evaluate.answersfile import read_jsonl
    from reflectkit.evaluate.judge_step import summarize_rows

    p = Path(path)
    report = summarize_rows(read_jsonl(p, what="judgments"), p, labels)
    return _write(report, p, "summary", json_path, md_path, write)


def judge_bench(bench: str, *, judge: ModelArg = None, judge_base_url: str | None = None,
                judge_api_key_env: str | None = None, subsets: list[str] | None = None,
                output: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """Score a judge on LLMBar or JudgeBench (``limit`` pairs per subset): strict and order-averaged accuracy,
    positional agreement and unknowns, with CIs. Judgments go to ``output`` (default
    ``judge-bench-<bench>-<method>.jsonl``), the report to ``<judgments>.bench.json/.md``. Keywords as
    :func:`judge_pairwise` (``subsets``, ``data`` instead of ``labels``, ``response_field``)."""
    spec = model_spec(judge, base_url=judge_base_url, api_key_env=judge_api_key_env)
    if subsets is not None:
        kwargs["subset"] = list(subsets)
    return _report(_judge_bench(bench, output, judge=spec, **kwargs))


def compare(run_a: str | Path, run_b: str | Path, *, metrics: list[str] | None = None,
            labels: tuple[str, str] | None = None) -> dict[str, Any]:
    """Paired-bootstrap differences between two eval reports (JSON written by ``eval gsm8k``/``eval ifeval``)."""
    from reflectkit.evaluate.compare import compare_files

    kwargs: dict[str, Any] = {"metrics": metrics}
    if labels:
        kwargs["labels"] = labels
    return compare_files(Path(run_a), Path(run_b), **kwargs)


__all__ = ["generate", "refine", "eval_gsm8k", "eval_ifeval", "run_eval", "judge_pairwise", "summarize_judgments",
           "judge_bench", "compare", "model_spec"]
