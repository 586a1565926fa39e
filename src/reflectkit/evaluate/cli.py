"""``reflectkit generate``, ``reflectkit eval gsm8k|ifeval|compare``, ``reflectkit judge pairwise|summarize|bench``,
``reflectkit refine``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from reflectkit import cli_common as c

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", help="embedded (default), a .gguf file, hf:DIR / a HF model dir / a `reflectkit train` output dir, "
                    "or a model name with --base-url.")]
BaseUrlOpt = Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1.")]
KeyEnvOpt = Annotated[Optional[str], typer.Option("--api-key-env", help="Environment variable holding the API key.")]
AdapterOpt = Annotated[Optional[Path], typer.Option("--adapter", help="PEFT LoRA adapter directory (with a HF --model).")]
PromptFmtOpt = Annotated[str, typer.Option("--prompt-format", help="HF models: chat (tokenizer chat template) or raw (plain completion).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Shared data directory (default: auto-detected).")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Report JSON (default: next to the input).")]
MdOpt = Annotated[Optional[Path], typer.Option("--md", help="Report markdown table (default: next to the input).")]
RespFieldOpt = Annotated[Optional[str], typer.Option("--response-field", help="Field holding the answer (default response/output/completion).")]
MethodOpt = Annotated[str, typer.Option("--judge", help="plain (verbatim Cherry/Reflection-Tuning judge) or reflective (ReflectRM-style).")]
KOpt = Annotated[int, typer.Option("--k", min=1, help="Reflective judge: analyses sampled per order.")]
JudgeTokOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="Judge max_tokens (upstream: 1024).")]
SampleTempOpt = Annotated[float, typer.Option("--sample-temperature", min=0.0, help="Reflective judge: temperature of the k analyses.")]
JPromptOpt = Annotated[Optional[str], typer.Option("--prompt-set", help="Judge prompt set name or directory (default: paper / reflective).")]


def _model_kwargs(model: str | None, base_url: str | None, api_key_env: str | None, timeout: float,
                  max_attempts: int, adapter: Path | None = None, prompt_format: str = "chat") -> Any:
    from reflectkit.evaluate.models import resolve_model

    return resolve_model(model, base_url=base_url, api_key_env=api_key_env, adapter=adapter,
                         prompt_format=prompt_format, timeout=timeout, max_attempts=max_attempts)


def _print_report(report: dict[str, Any]) -> None:
    print(report.get("markdown", ""), end="")
    if "paths" in report:
        print(f"\nwrote {report['paths']['json']} and {report['paths']['md']}")


def _labels(spec: str | None) -> tuple[str, str] | None:
    if spec is None:
        return None
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise c.UserError(f"--labels: expected two names separated by a comma (e.g. model_1,model_2), got {spec!r}")
    return parts[0], parts[1]


def register(app: typer.Typer) -> None:  # noqa: C901 (one function per command, registered together)
    eval_app = typer.Typer(help="Score answers: GSM8K, IFEval; compare two runs with a paired bootstrap.", no_args_is_help=True)
    judge_app = typer.Typer(help="Pairwise LLM judges (both orders), recorded-judgment summaries, judge benchmarks.",
                            no_args_is_help=True)
    app.add_typer(eval_app, name="eval")
    app.add_typer(judge_app, name="judge")

    @app.command("generate")
    def generate_cmd(
        evalset: Annotated[str, typer.Argument(help="Eval set name (gsm8k, ifeval, vicuna, koala, wizardlm, sinstruct, lima, ...) or a file.")],
        output: c.OutputOpt = None,
        model: ModelOpt = None,
        base_url: BaseUrlOpt = None,
        api_key_env: KeyEnvOpt = None,
        adapter: AdapterOpt = None,
        prompt_format: PromptFmtOpt = "chat",
        shots: Annotated[int, typer.Option("--shots", min=0, help="GSM8K: k-shot exemplars from gsm8k_train (0 = zero-shot).")] = 0,
        max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Max new tokens per answer.")] = 512,
        temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy.")] = 0.0,
        system: Annotated[Optional[str], typer.Option("--system", help="System prompt.")] = None,
        data_dir: DataOpt = None,
        timeout: c.TimeoutOpt = 600.0,
        max_attempts: c.MaxAttemptsOpt = 6,
        run_dir: c.RunDirOpt = None,
        limit: c.LimitOpt = None,
        concurrency: c.ConcurrencyOpt = 8,
        dry_run: c.DryRunOpt = False,
        restart: c.RestartOpt = False,
        map: c.MapOpt = None,
        no_cache: c.NoCacheOpt = False,
        cache_only: c.CacheOnlyOpt = False,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Answer an eval set with any model (resumable, cached); writes JSONL rows id/prompt/response/model."""
        from reflectkit.data.io import parse_mapping
        from reflectkit.evaluate import api

        spec = _model_kwargs(model, base_url, api_key_env, timeout, max_attempts, adapter, prompt_format)
        if dry_run:
            from reflectkit.evaluate.generate import GenerateConfig, GenerateStep, evalset_dataset
            from reflectkit.evaluate.models import build_model

            ds, items = evalset_dataset(evalset, data=data_dir, mapping=parse_mapping(map), limit=limit)
            step = GenerateStep(build_model(spec, cache=None, setting_name="-"),
                                GenerateConfig(evalset=evalset, shots=shots, max_tokens=max_tokens, system=system), items, data_dir)
            c.print_dry_run("generate", step.estimate(ds.records))
            raise typer.Exit(0)
        if output is None:
            raise c.UserError("generate needs -o OUTPUT (a .jsonl file)")
        if cache_only and no_cache:
            raise c.UserError("--cache-only needs the cache; drop --no-cache")
        summary = api.generate(evalset, output, model=spec, limit=limit, shots=shots, max_tokens=max_tokens,
                               temperature=temperature, system=system, mapping=parse_mapping(map), data=data_dir,
                               run_dir=run_dir, cache_dir=c.cache_dir(), use_cache=not no_cache, cache_only=cache_only,
                               concurrency=concurrency, progress=c.progress_enabled(quiet), restart=restart)
        c.print_summary(summary)
        raise typer.Exit(summary.exit_code)

    @app.command("refine")
    def refine_cmd(
        evalset: Annotated[str, typer.Argument(help="Eval set name or file (as for generate).")],
        output: c.OutputOpt = None,
        rounds: Annotated[int, typer.Option("--rounds", min=0, help="Max critique -> revise rounds.")] = 2,
        model: ModelOpt = None,
        base_url: BaseUrlOpt = None,
        api_key_env: KeyEnvOpt = None,
        adapter: AdapterOpt = None,
        prompt_format: PromptFmtOpt = "chat",
        shots: Annotated[int, typer.Option("--shots", min=0, help="GSM8K draft: k-shot exemplars.")] = 0,
        max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Max tokens of drafts and revisions.")] = 512,
        critique_max_tokens: Annotated[int, typer.Option("--critique-max-tokens", min=1)] = 512,
        system: Annotated[Optional[str], typer.Option("--system", help="System prompt.")] = None,
        data_dir: DataOpt = None,
        timeout: c.TimeoutOpt = 600.0,
        max_attempts: c.MaxAttemptsOpt = 6,
        run_dir: c.RunDirOpt = None,
        limit: c.LimitOpt = None,
        concurrency: c.ConcurrencyOpt = 8,
        restart: c.RestartOpt = False,
        map: c.MapOpt = None,
        no_cache: c.NoCacheOpt = False,
        cache_only: c.CacheOnlyOpt = False,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Self-Refine at inference time: draft -> critique -> revise (every round kept in the record)."""
        from reflectkit.data.io import parse_mapping
        from reflectkit.evaluate import api

        if output is None:
            raise c.UserError("refine needs -o OUTPUT (a .jsonl file)")
        spec = _model_kwargs(model, base_url, api_key_env, timeout, max_attempts, adapter, prompt_format)
        summary = api.refine(evalset, output, model=spec, rounds=rounds, limit=limit, shots=shots, max_tokens=max_tokens,
                             critique_max_tokens=critique_max_tokens, system=system, mapping=parse_mapping(map),
                             data=data_dir, run_dir=run_dir, cache_dir=c.cache_dir(), use_cache=not no_cache,
                             cache_only=cache_only, concurrency=concurrency, progress=c.progress_enabled(quiet),
                             restart=restart)
        c.print_summary(summary)
        raise typer.Exit(summary.exit_code)

    @eval_app.command("gsm8k")
    def eval_gsm8k_cmd(
        answers: Annotated[Path, typer.Argument(help="Answers JSONL (from generate/refine, or any rows with id + response).")],
        json_path: JsonOpt = None,
        md_path: MdOpt = None,
        references: Annotated[Optional[str], typer.Option("--references", help="Eval set with the reference answers when rows have no 'answer' (default gsm8k).")] = None,
        data_dir: DataOpt = None,
        response_field: RespFieldOpt = None,
    ) -> None:
        """GSM8K exact match: strict (#### N) and flexible (last number), with 95% CIs."""
        from reflectkit.evaluate import api

        _print_report(api.eval_gsm8k(answers, json_path=json_path, md_path=md_path, references=references,
                                     data=data_dir, response_field=response_field))

    @eval_app.command("ifeval")
    def eval_ifeval_cmd(
        answers: Annotated[Path, typer.Argument(help="Answers JSONL: rows with key (or numeric id) or prompt, and response.")],
        json_path: JsonOpt = None,
        md_path: MdOpt = None,
        input_data: Annotated[Optional[Path], typer.Option("--input-data", help="IFEval input_data.jsonl (default: shared data).")] = None,
        response_field: RespFieldOpt = None,
        whole_response: Annotated[bool, typer.Option("--whole-response", help="Score the whole text, not only <output>.")] = False,
    ) -> None:
        """IFEval prompt- and instruction-level accuracy, strict and loose, with 95% CIs over prompts."""
        from reflectkit.evaluate import api

        _print_report(api.eval_ifeval(answers, json_path=json_path, md_path=md_path, input_data=input_data,
                                      response_field=response_field, output_only=not whole_response))

    @eval_app.command("compare")
    def eval_compare_cmd(
        run_a: Annotated[Path, typer.Argument(help="Report JSON of run A (from eval gsm8k/ifeval or judge bench).")],
        run_b: Annotated[Path, typer.Argument(help="Report JSON of run B (same eval set).")],
        metric: Annotated[Optional[list[str]], typer.Option("--metric", help="Only these metrics (repeatable).")] = None,
        labels: Annotated[Optional[str], typer.Option("--labels", help="Names for A and B, e.g. base,tuned.")] = None,
        json_path: JsonOpt = None,
    ) -> None:
        """Difference A - B per metric with a paired bootstrap 95% CI; says when it is not significant."""
        from reflectkit.evaluate import api
        from reflectkit.evaluate.compare import compare_markdown
        from reflectkit.evaluate.report import _write_atomic

        res = api.compare(run_a, run_b, metrics=metric, labels=_labels(labels))
        md = compare_markdown(res)
        print(md, end="")
        if json_path:
            _write_atomic(json_path, json.dumps(res, indent=2) + "\n")

    @judge_app.command("pairwise")
    def judge_pairwise_cmd(
        answers_a: Annotated[Path, typer.Argument(help="Answers of model A (JSONL with id, prompt, response).")],
        answers_b: Annotated[Path, typer.Argument(help="Answers of model B (same ids).")],
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Judgments JSONL (default <A>.vs.<B>.judgments.jsonl).")] = None,
        judge: MethodOpt = "plain",
        model: ModelOpt = None,
        base_url: BaseUrlOpt = None,
        api_key_env: KeyEnvOpt = None,
        labels: Annotated[Optional[str], typer.Option("--labels", help="Names of A and B, e.g. tuned,base.")] = None,
        k: KOpt = 4,
        max_tokens: JudgeTokOpt = 1024,
        sample_temperature: SampleTempOpt = 0.7,
        prompt_set: JPromptOpt = None,
        response_field: RespFieldOpt = None,
        json_path: JsonOpt = None,
        md_path: MdOpt = None,
        timeout: c.TimeoutOpt = 600.0,
        max_attempts: c.MaxAttemptsOpt = 6,
        run_dir: c.RunDirOpt = None,
        limit: c.LimitOpt = None,
        concurrency: c.ConcurrencyOpt = 8,
        restart: c.RestartOpt = False,
        no_cache: c.NoCacheOpt = False,
        cache_only: c.CacheOnlyOpt = False,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Judge A vs B in both orders: W/T/L, win rate (W-L)/N+1, consistency, position bias, unparsed, with CIs."""
        from reflectkit.evaluate import api

        spec = _model_kwargs(model, base_url, api_key_env, timeout, max_attempts)
        report = api.judge_pairwise(answers_a, answers_b, judge=spec, method=judge, output=output, labels=_labels(labels),
                                    k=k, max_tokens=max_tokens, sample_temperature=sample_temperature,
                                    prompt_set=prompt_set, limit=limit, response_field=response_field,
                                    json_path=json_path, md_path=md_path, run_dir=run_dir, cache_dir=c.cache_dir(),
                                    use_cache=not no_cache, cache_only=cache_only, concurrency=concurrency,
                                    progress=c.progress_enabled(quiet), restart=restart)
        _print_report(report)
        if report["judge"]["failed_pairs"]:
            c.stderr(f"{report['judge']['failed_pairs']} pair(s) failed (counted as unparsed); re-run to retry them")
            raise typer.Exit(1)

    @judge_app.command("summarize")
    def judge_summarize_cmd(
        judgments: Annotated[Path, typer.Argument(help="JSONL with question, answer_1, answer_2, review, review_reverse.")],
        labels: Annotated[Optional[str], typer.Option("--labels", help="Names of the two sides, e.g. model_1,model_2.")] = None,
        json_path: JsonOpt = None,
        md_path: MdOpt = None,
    ) -> None:
        """Recompute W/T/L, win rate and bias metrics from recorded judge outputs (no judge calls)."""
        from reflectkit.evaluate import api

        _print_report(api.summarize_judgments(judgments, labels=_labels(labels), json_path=json_path, md_path=md_path))

    @judge_app.command("bench")
    def judge_bench_cmd(
        bench: Annotated[str, typer.Argument(help="llmbar (5 subsets, 419 pairs) or judgebench (350 + 270 pairs).")],
        judge: MethodOpt = "plain",
        model: ModelOpt = None,
        base_url: BaseUrlOpt = None,
        api_key_env: KeyEnvOpt = None,
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Judgments JSONL (default judge-bench-<bench>-<judge>.jsonl).")] = None,
        subset: Annotated[Optional[list[str]], typer.Option("--subset", help="Only these subsets/files (repeatable).")] = None,
        limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="First N pairs of each subset.")] = None,
        k: KOpt = 4,
        max_tokens: JudgeTokOpt = 1024,
        sample_temperature: SampleTempOpt = 0.7,
        prompt_set: JPromptOpt = None,
        data_dir: DataOpt = None,
        json_path: JsonOpt = None,
        md_path: MdOpt = None,
        timeout: c.TimeoutOpt = 600.0,
        max_attempts: c.MaxAttemptsOpt = 6,
        run_dir: c.RunDirOpt = None,
        concurrency: c.ConcurrencyOpt = 8,
        restart: c.RestartOpt = False,
        no_cache: c.NoCacheOpt = False,
        cache_only: c.CacheOnlyOpt = False,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Meta-evaluate a judge: strict (both orders) and order-averaged accuracy, positional agreement, unknowns."""
        from reflectkit.evaluate import api

        spec = _model_kwargs(model, base_url, api_key_env, timeout, max_attempts)
        report = api.judge_bench(bench, judge=spec, method=judge, output=output, k=k, max_tokens=max_tokens,
                                 sample_temperature=sample_temperature, prompt_set=prompt_set, limit=limit,
                                 subsets=subset, data=data_dir, json_path=json_path, md_path=md_path, run_dir=run_dir,
                                 cache_dir=c.cache_dir(), use_cache=not no_cache, cache_only=cache_only,
                                 concurrency=concurrency, progress=c.progress_enabled(quiet), restart=restart)
        _print_report(report)
