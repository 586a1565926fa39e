"""``reflectkit decontaminate TRAIN --against BENCH [BENCH...] -o CLEAN``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from reflectkit import cli_common as c
from reflectkit.errors import UserError

JudgeModelOpt = Annotated[Optional[str], typer.Option(
    "--judge-model", help="Judge model name at the endpoint, or a local .gguf path. Default: embedded SmolLM2-135M.")]
JudgeUrlOpt = Annotated[Optional[str], typer.Option("--judge-base-url", help="OpenAI-compatible base URL for the judge.")]
JudgeKeyEnvOpt = Annotated[Optional[str], typer.Option(
    "--judge-api-key-env", help="Environment variable holding the judge's API key (default OPENAI_API_KEY).")]


def parse_bench_map(spec: str | None) -> dict[str, str]:
    """``--bench-map question=prompt,answer=solution`` (fields: question, input, answer, id)."""
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, col = (s.strip() for s in part.partition("="))
        if not sep or not col:
            raise UserError(f"--bench-map: expected FIELD=COLUMN pairs separated by commas, got {part!r}")
        if key not in ("question", "input", "answer", "id"):
            raise UserError(f"--bench-map: unknown field {key!r}; mappable fields are question, input, answer, id")
        out[key] = col
    return out


def register(app: typer.Typer) -> None:
    @app.command("decontaminate")
    def decontaminate_cmd(
        input: c.InputArg,
        more_benchmarks: Annotated[Optional[List[str]], typer.Argument(
            help="More benchmarks after --against (so `--against gsm8k ifeval` works).", show_default=False)] = None,
        against: Annotated[Optional[List[str]], typer.Option(
            "--against", help="Benchmark: gsm8k, ifeval, vicuna, koala, wizardlm, sinstruct, lima, all, or a file "
                              "(repeat, comma-separate, or list several after the flag).")] = None,
        output: c.OutputOpt = None,
        ngram: Annotated[bool, typer.Option("--ngram/--no-ngram", help="Word n-gram overlap detector.")] = True,
        ngram_n: Annotated[int, typer.Option("--ngram-n", min=1, help="n for the n-gram detector.")] = 13,
        embedding: Annotated[bool, typer.Option("--embedding/--no-embedding", help="all-MiniLM-L6-v2 cosine detector.")] = True,
        llm: Annotated[bool, typer.Option("--llm/--no-llm", help="LLM judge on the embedding stage's candidate pairs.")] = False,
        top_k: Annotated[int, typer.Option("--top-k", min=1, help="Candidate training rows per benchmark item.")] = 1,
        threshold: Annotated[Optional[float], typer.Option("--threshold", help="Cosine threshold of the embedding detector (default 0.86, calibrated on held-out data).")] = None,
        judge_min_similarity: Annotated[Optional[float], typer.Option("--judge-min-similarity", help="Only pairs at or above this cosine go to the judge (default 0.7).")] = None,
        judge_prompt: Annotated[str, typer.Option("--judge-prompt", help="auto (math for gsm8k, knowledge otherwise), math, code, knowledge or number_substitution.")] = "auto",
        prompt_set: Annotated[str, typer.Option("--prompt-set", help="Judge prompt set: 'paper' (LLM Decontaminator, verbatim) or a directory.")] = "paper",
        unknown_as: Annotated[str, typer.Option("--unknown-as", help="How an unparsable judge verdict counts: contaminated or clean.")] = "contaminated",
        mark_only: Annotated[bool, typer.Option("--mark-only", help="Keep flagged rows, marked in reflectkit.decontam, instead of removing them.")] = False,
        bench_map: Annotated[Optional[str], typer.Option("--bench-map", help="Fields of benchmark files, e.g. question=prompt,answer=solution.")] = None,
        data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Shared data directory with the built-in benchmarks.")] = None,
        judge_model: JudgeModelOpt = None,
        judge_base_url: JudgeUrlOpt = None,
        judge_api_key_env: JudgeKeyEnvOpt = None,
        timeout: c.TimeoutOpt = 600.0,
        max_attempts: c.MaxAttemptsOpt = 6,
        run_dir: c.RunDirOpt = None,
        limit: c.LimitOpt = None,
        concurrency: c.ConcurrencyOpt = 8,
        dry_run: c.DryRunOpt = False,
        restart: c.RestartOpt = False,
        format: c.FormatOpt = None,
        map: c.MapOpt = None,
        skip_bad_rows: c.SkipBadOpt = False,
        no_cache: c.NoCacheOpt = False,
        cache_only: c.CacheOnlyOpt = False,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Find and remove training rows that contain benchmark items (n-gram, embedding and LLM-judge detectors)."""
        from reflectkit.data.io import parse_mapping, read_dataset
        from reflectkit.decontam.api import report_prefix, run_decontam, summarise
        from reflectkit.decontam.benchmarks import load_benchmarks
        from reflectkit.decontam.step import (DEFAULT_JUDGE_MIN_SIMILARITY, DEFAULT_THRESHOLD, DecontamConfig,
                                              DecontamStep)

        names = list(against or []) + list(more_benchmarks or [])
        if not names:
            raise UserError("decontaminate needs --against BENCH (e.g. --against gsm8k ifeval, or --against all)")
        cfg = DecontamConfig(
            ngram=ngram, ngram_n=ngram_n, embedding=embedding, llm=llm, top_k=top_k,
            threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
            judge_min_similarity=DEFAULT_JUDGE_MIN_SIMILARITY if judge_min_similarity is None else judge_min_similarity,
            judge_prompt=judge_prompt, prompt_set=prompt_set, unknown_as=unknown_as, mark_only=mark_only,  # type: ignore[arg-type]
        )
        cfg.validate()
        ds = read_dataset(input, format=format, mapping=parse_mapping(map), skip_bad_rows=skip_bad_rows,
                          require_output=False).limit(limit)
        benches = load_benchmarks(names, data_dir=data_dir, mapping=parse_bench_map(bench_map))
        flags = c.ModelFlags(judge_model, judge_base_url, judge_api_key_env, timeout, max_attempts)
        if dry_run:
            step = DecontamStep(benches, cfg, judge=None if not llm else _unbuilt(flags))
            c.print_dry_run("decontaminate", step.estimate(ds.records))
            raise typer.Exit(0)
        if output is None:
            raise UserError("decontaminate needs -o OUTPUT (the cleaned dataset)")
        if output.resolve() == input.resolve():
            raise UserError(f"-o {output}: the output would overwrite the training file")
        model = None
        if llm:
            model = c.open_model(flags, no_cache=no_cache, cache_only=cache_only, concurrency=concurrency,
                                 setting_name="--judge")
        step = DecontamStep(benches, cfg, judge=model, cache_dir=c.cache_dir(), report_prefix=report_prefix(output),
                            concurrency=concurrency, progress=c.progress_enabled(quiet))
        summary = asyncio.run(run_decontam(step, ds, output=output, run_dir=run_dir, concurrency=concurrency,
                                           progress=c.progress_enabled(quiet), restart=restart))
        s = summarise(step, summary)
        c.print_summary(summary)
        print(f"  report:   {s.report_md} (+ {s.report_jsonl.name})")
        for name, b in s.per_benchmark.items():
            print(f"  {name}: {b['items_matched']}/{b['items']} items matched, {b['rows_flagged']} rows flagged"
                  + (f", {b['unknown_verdicts']} unknown verdicts" if b["unknown_verdicts"] else ""))
        raise typer.Exit(s.exit_code)


def _unbuilt(flags: c.ModelFlags) -> Any:
    from reflectkit.llm.factory import build_chat_model

    return build_chat_model(flags.spec(), cache=None, setting_name="--judge")
