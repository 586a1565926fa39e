"""Python API for evaluation: the same functions the CLI calls.

>>> from reflectkit.evaluate import api
>>> s = api.generate("gsm8k", "answers.jsonl", model="embedded", limit=20)          # doctest: +SKIP
>>> api.eval_gsm8k("answers.jsonl")["metrics"]["flexible_extract"]                   # doctest: +SKIP
>>> api.judge_pairwise("a.jsonl", "b.jsonl", method="plain")["metrics"]["win_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from reflectkit.engine.run import Run, RunSummary
from reflectkit.errors import UserError
from reflectkit.evaluate.models import GenModelSpec, open_model, resolve_model
from reflectkit.evaluate.report import default_paths, write_report
from reflectkit.llm.cache import ResponseCache
from reflectkit.llm.factory import ModelSpec

ModelArg = str | GenModelSpec | ModelSpec | None


def _spec(model: ModelArg, **kwargs: Any) -> GenModelSpec:
    if isinstance(model, GenModelSpec):
        return model
    if isinstance(model, ModelSpec):
        return resolve_model(model.model, base_url=model.base_url, api_key_env=model.api_key_env,
                             timeout=model.timeout, max_attempts=model.max_attempts)
    return resolve_model(model, **kwargs)


def _run(step_factory: Any, spec: GenModelSpec, ds: Any, *, output: Path | None, run_dir: Path | None,
         cache_dir: str | Path | None, use_cache: bool, cache_only: bool, concurrency: int, progress: bool,
         restart: bool, setting_name: str = "-") -> tuple[RunSummary, Any]:
    async def go() -> tuple[RunSummary, Any]:
        cache = ResponseCache(cache_dir) if use_cache else None
        model = await open_model(spec, cache=cache, concurrency=concurrency, setting_name=setting_name,
                                 cache_only=cache_only)
        step = step_factory(model)
        try:
            summary = await Run(step, ds, output=output, run_dir=run_dir, concurrency=concurrency, progress=progress,
                                restart=restart, extra_manifest={"model_spec": spec.describe()}).execute()
            return summary, step
        finally:
            await model.aclose()

    return asyncio.run(go())


def generate(evalset: str | Path, output: str | Path, *, model: ModelArg = "embedded", base_url: str | None = None,
             api_key_env: str | None = None, adapter: str | Path | None = None, prompt_format: str = "chat",
             limit: int | None = None, shots: int = 0, max_tokens: int = 512, temperature: float = 0.0,
             system: str | None = None, mapping: dict[str, str] | None = None, data: str | Path | None = None,
             run_dir: str | Path | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
             cache_only: bool = False, concurrency: int = 8, progress: bool = False, restart: bool = False) -> RunSummary:
    """Answer every item of an eval set (built-in name or file + mapping); writes JSONL rows to ``output``."""
    from reflectkit.evaluate.generate import GenerateConfig, GenerateStep, evalset_dataset

    spec = _spec(model, base_url=base_url, api_key_env=api_key_env, adapter=adapter, prompt_format=prompt_format)
    cfg = GenerateConfig(evalset=str(evalset), shots=shots, max_tokens=max_tokens, temperature=temperature, system=system)
    ds, items = evalset_dataset(str(evalset), data=data, mapping=mapping, limit=limit,
                                model_label=str(spec.model or spec.kind))
    summary, _ = _run(lambda m: GenerateStep(m, cfg, items, data), spec, ds, output=Path(output),
                      run_dir=Path(run_dir) if run_dir else None, cache_dir=cache_dir, use_cache=use_cache,
                      cache_only=cache_only, concurrency=concurrency, progress=progress, restart=restart)
    return summary


def refine(evalset: str | Path, output: str | Path, *, model: ModelArg = "embedded", base_url: str | None = None,
           api_key_env: str | None = None, adapter: str | Path | None = None, prompt_format: str = "chat",
           rounds: int = 2, limit: int | None = None, shots: int = 0, max_tokens: int = 512,
           critique_max_tokens: int = 512, system: str | None = None, mapping: dict[str, str] | None = None,
           data: str | Path | None = None, run_dir: str | Path | None = None, cache_dir: str | Path | None = None,
           use_cache: bool = True, cache_only: bool = False, concurrency: int = 8, progress: bool = False,
           restart: bool = False) -> RunSummary:
    """Self-Refine: draft, then up to ``rounds`` critique -> revise rounds per item (all kept in the record)."""
    from reflectkit.evaluate.generate import GenerateConfig, evalset_dataset
    from reflectkit.evaluate.refine import RefineConfig, RefineStep

    spec = _spec(model, base_url=base_url, api_key_env=api_key_env, adapter=adapter, prompt_format=prompt_format)
    gen = GenerateConfig(evalset=str(evalset), shots=shots, max_tokens=max_tokens, system=system)
    ds, items = evalset_dataset(str(evalset), data=data, mapping=mapping, limit=limit,
                                model_label=str(spec.model or spec.kind))
    cfg = RefineConfig(rounds=rounds, critique_max_tokens=critique_max_tokens)
    summary, _ = _run(lambda m: RefineStep(m, gen, cfg, items, data), spec, ds, output=Path(output),
                      run_dir=Path(run_dir) if run_dir else None, cache_dir=cache_dir, use_cache=use_cache,
                      cache_only=cache_only, concurrency=concurrency, progress=progress, restart=restart)
    return summary


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
    """GSM8K strict-match and flexible-extract accuracy with CIs; writes ``<answers>.gsm8k.{json,md}`` by default."""
    from reflectkit.evaluate.gsm8k import eval_gsm8k_file

    report = eval_gsm8k_file(answers, references=references, data=data, response_field=response_field)
    return _write(report, Path(answers), "gsm8k", json_path, md_path, write)


def eval_ifeval(answers: str | Path, *, json_path: str | Path | None = None, md_path: str | Path | None = None,
                input_data: str | Path | None = None, response_field: str | None = None, output_only: bool = True,
                write: bool = True) -> dict[str, Any]:
    """IFEval prompt/instruction-level accuracy (strict, loose) with CIs over prompts."""
    from reflectkit.evaluate.ifeval_report import eval_ifeval_file

    report = eval_ifeval_file(Path(answers), input_data=Path(input_data) if input_data else None,
                              response_field=response_field, output_only=output_only)
    return _write(report, Path(answers), "ifeval", json_path, md_path, write)


def _judge_run(ds: Any, *, judge: ModelArg, method: str, k: int, max_tokens: int, sample_temperature: float,
               prompt_set: str | None, judge_base_url: str | None, judge_api_key_env: str | None,
               output: Path, run_dir: str | Path | None, cache_dir: str | Path | None, use_cache: bool,
               cache_only: bool, concurrency: int, progress: bool, restart: bool) -> RunSummary:
    from reflectkit.evaluate.judge import JudgeConfig
    from reflectkit.evaluate.judge_step import JudgeStep, hoist_reviews

    spec = _spec(judge, base_url=judge_base_url, api_key_env=judge_api_key_env)
    cfg = JudgeConfig(method=method, max_tokens=max_tokens, k=k, sample_temperature=sample_temperature,
                      prompt_set=prompt_set)
    summary, _ = _run(lambda m: JudgeStep(m, cfg), spec, ds, output=output, run_dir=Path(run_dir) if run_dir else None,
                      cache_dir=cache_dir, use_cache=use_cache, cache_only=cache_only, concurrency=concurrency,
                      progress=progress, restart=restart)
    hoist_reviews(output)
    return summary


def _calls(rows: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [((r.get("reflectkit") or {}).get("judge") or {}).get("calls") for r in rows]
    got = [c for c in calls if isinstance(c, int)]
    return {"calls_per_pair": (sum(got) / len(got)) if got else None, "judge_calls_recorded": sum(got)}


def judge_pairwise(answers_a: str | Path, answers_b: str | Path, *, judge: ModelArg = None, method: str = "plain",
                   output: str | Path | None = None, labels: tuple[str, str] | None = None, k: int = 4,
                   max_tokens: int = 1024, sample_temperature: float = 0.7, prompt_set: str | None = None,
                   judge_base_url: str | None = None, judge_api_key_env: str | None = None, limit: int | None = None,
                   response_field: str | None = None, json_path: str | Path | None = None,
                   md_path: str | Path | None = None, run_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None, use_cache: bool = True, cache_only: bool = False,
                   concurrency: int = 8, progress: bool = False, restart: bool = False) -> dict[str, Any]:
    """Judge A vs B in both orders (verbatim Cherry judge by default); returns the W/T/L report with CIs.

    Judgments go to ``output`` (default ``<answers_a>.vs.<answers_b>.judgments.jsonl``)."""
    from reflectkit.evaluate.judge_step import pairwise_dataset

    pa, pb = Path(answers_a), Path(answers_b)
    out = Path(output) if output else pa.with_name(f"{pa.stem}.vs.{pb.stem}.judgments.jsonl")
    ds = pairwise_dataset(pa, pb, response_field=response_field, limit=limit)
    summary = _judge_run(ds, judge=judge, method=method, k=k, max_tokens=max_tokens,
                         sample_temperature=sample_temperature, prompt_set=prompt_set, judge_base_url=judge_base_url,
                         judge_api_key_env=judge_api_key_env, output=out, run_dir=run_dir, cache_dir=cache_dir,
                         use_cache=use_cache, cache_only=cache_only, concurrency=concurrency, progress=progress,
                         restart=restart)
    report = summarize_judgments(out, labels=labels or (pa.stem, pb.stem), json_path=json_path, md_path=md_path)
    report["judge"] = {"method": method, "model": summary.manifest.get("models", {}).get("judge"),
                       "run_dir": str(summary.run_dir), "failed_pairs": summary.failed}
    return report


def summarize_judgments(path: str | Path, *, labels: tuple[str, str] | list[str] | None = None,
                        json_path: str | Path | None = None, md_path: str | Path | None = None,
                        write: bool = True) -> dict[str, Any]:
    """Recompute W/T/L, win rate and bias metrics from recorded judgments (``review``/``review_reverse``)."""
    from reflectkit.evaluate.answersfile import read_jsonl
    from reflectkit.evaluate.judge_metrics import pairwise_report, wtl
    from reflectkit.evaluate.judge_step import row_outcomes

    p = Path(path)
    rows = read_jsonl(p, what="judgments")
    outs = [row_outcomes(r, p) for r in rows]
    lab = tuple(labels) if labels else ("model_1", "model_2")
    if len(lab) != 2 or not all(lab):
        raise UserError(f"--labels must name two sides, e.g. model_1,model_2; got {labels!r}")
    report = pairwise_report([(o1, o2) for o1, o2, _ in outs], labels=(lab[0], lab[1]))
    report["counts"]["failed_rows"] = sum(src == "failed" for _, _, src in outs)
    report["counts"].update({k: v for k, v in _calls(rows).items() if v is not None})
    report["per_item"] = [{"id": str(r.get("id", i)), "verdict": o1, "verdict_reverse": o2, "result": wtl(o1, o2)}
                          for i, (r, (o1, o2, _)) in enumerate(zip(rows, outs))]
    report["inputs"] = {"judgments": str(p)}
    return _write(report, p, "summary", json_path, md_path, write)


def judge_bench(bench: str, *, judge: ModelArg = None, method: str = "plain", output: str | Path | None = None,
                k: int = 4, max_tokens: int = 1024, sample_temperature: float = 0.7, prompt_set: str | None = None,
                judge_base_url: str | None = None, judge_api_key_env: str | None = None, limit: int | None = None,
                subsets: list[str] | None = None, data: str | Path | None = None, json_path: str | Path | None = None,
                md_path: str | Path | None = None, run_dir: str | Path | None = None,
                cache_dir: str | Path | None = None, use_cache: bool = True, cache_only: bool = False,
                concurrency: int = 8, progress: bool = False, restart: bool = False) -> dict[str, Any]:
    """Score a judge on LLMBar or JudgeBench (``limit`` pairs per subset): strict and order-averaged accuracy,
    positional agreement and unknowns, with CIs."""
    from reflectkit.evaluate.answersfile import read_jsonl
    from reflectkit.evaluate.judge_metrics import bench_report
    from reflectkit.evaluate.judge_step import bench_dataset, row_outcomes

    ds = bench_dataset(bench, data=data, limit=limit, subsets=subsets)
    out = Path(output) if output else Path(f"judge-bench-{bench}-{method}.jsonl")
    summary = _judge_run(ds, judge=judge, method=method, k=k, max_tokens=max_tokens,
                         sample_temperature=sample_temperature, prompt_set=prompt_set, judge_base_url=judge_base_url,
                         judge_api_key_env=judge_api_key_env, output=out, run_dir=run_dir, cache_dir=cache_dir,
                         use_cache=use_cache, cache_only=cache_only, concurrency=concurrency, progress=progress,
                         restart=restart)
    rows = read_jsonl(out, what="judgments")
    scored = []
    for r in rows:
        o1, o2, _ = row_outcomes(r, out)
        scored.append({"id": r["id"], "label": r["label"], "subset": r["subset"], "o1": o1, "o2": o2})
    ident = summary.manifest.get("models", {}).get("judge") or {}
    report = bench_report(scored, title=f"Judge bench: {bench} ({method} judge, {len(scored)} pairs)")
    report["counts"]["failed_pairs"] = summary.failed
    report["counts"].update({k2: v for k2, v in _calls(rows).items() if v is not None})
    if "gguf_sha256" in ident or ident.get("kind") == "hf-transformers":
        report["notes"].insert(0, "NOTE: a small local model (e.g. the embedded SmolLM2-135M) judges near chance; "
                                  "these numbers show the code path, not a useful judge. Use a strong judge via --base-url.")
    report["per_item"] = [{"id": s["id"], "metrics": {"strict": int(s["o1"] == s["label"] and s["o2"] == ("2" if s["label"] == "1" else "1")),
                                                      "order_averaged": ((s["o1"] == s["label"]) + (s["o2"] == ("2" if s["label"] == "1" else "1"))) / 2}}
                          for s in scored]
    report["judge"] = {"method": method, "model": ident, "run_dir": str(summary.run_dir)}
    report["inputs"] = {"bench": bench, "judgments": str(out), "limit_per_subset": limit}
    return _write(report, out, "bench", json_path, md_path, True)


def compare(run_a: str | Path, run_b: str | Path, *, metrics: list[str] | None = None,
            labels: tuple[str, str] | None = None) -> dict[str, Any]:
    """Paired-bootstrap differences between two eval reports (JSON written by ``eval gsm8k``/``eval ifeval``)."""
    from reflectkit.evaluate.compare import compare_files

    kwargs: dict[str, Any] = {"metrics": metrics}
    if labels:
        kwargs["labels"] = labels
    return compare_files(Path(run_a), Path(run_b), **kwargs)

