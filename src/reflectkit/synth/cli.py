"""``reflectkit synthesize``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from reflectkit import cli_common as c


def print_synthesis(stats: dict) -> None:
    rate = stats.get("verification_rate")
    if stats.get("rows_checked"):
        print(f"  verified {stats['verified']}/{stats['rows_checked']} rows with a reference "
              f"(rate {rate:.3f}); attempts per verified example: {stats.get('attempts_per_verified')}; "
              f"oracle calls per verified example: {stats.get('oracle_calls_per_verified')}")
    if stats.get("rejected_file"):
        print(f"  dropped rows and reasons: {stats['rejected_file']}")


def register(app: typer.Typer) -> None:
    @app.command("synthesize")
    def synthesize_cmd(
        input: c.InputArg,
        output: c.OutputOpt = None,
        format: Annotated[str, typer.Option("--format", help="reflection (<thinking>/<reflection>/<output>) or plain-cot.")] = "reflection",
        answer_field: Annotated[Optional[str], typer.Option("--answer-field", help="Column with the reference answer (GSM8K: answer). Enables verification.")] = None,
        checker: Annotated[str, typer.Option("--checker", help="numeric (GSM8K-style numbers) or exact (case/space-insensitive match).")] = "numeric",
        attempts: Annotated[int, typer.Option("--attempts", min=1, help="Samples per row before it is recorded as malformed/unverified.")] = 4,
        keep_unverified: Annotated[bool, typer.Option("--keep-unverified", help="Write well-formed rows whose answer never matched (status unverified).")] = False,
        temperature: Annotated[float, typer.Option("--temperature", help="Temperature of retries (each retry has its own seed).")] = 0.7,
        first_temperature: Annotated[float, typer.Option("--first-temperature", help="Temperature of the first attempt.")] = 0.0,
        max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Oracle max_tokens per sample.")] = 1024,
        prompt_set: Annotated[str, typer.Option("--prompt-set", help="'paper' (Reflection 70B system prompt, verbatim) or a directory.")] = "paper",
        system_prompt: Annotated[Optional[str], typer.Option("--system-prompt", help="Use this system prompt instead of the prompt set's.")] = None,
        oracle_model: c.OracleModelOpt = None,
        oracle_base_url: c.OracleUrlOpt = None,
        oracle_api_key_env: c.OracleKeyEnvOpt = None,
        timeout: c.TimeoutOpt = 600.0,
        max_attempts: c.MaxAttemptsOpt = 6,
        run_dir: c.RunDirOpt = None,
        limit: c.LimitOpt = None,
        concurrency: c.ConcurrencyOpt = 8,
        dry_run: c.DryRunOpt = False,
        restart: c.RestartOpt = False,
        shape: Annotated[Optional[str], typer.Option("--shape", help="Record shape: alpaca, messages or sharegpt (auto-detected).")] = None,
        map: c.MapOpt = None,
        skip_bad_rows: c.SkipBadOpt = False,
        no_cache: c.NoCacheOpt = False,
        cache_only: c.CacheOnlyOpt = False,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Synthesize Reflection-70B-format (or plain-CoT) answers, validated and verified against reference answers."""
        from reflectkit.data.io import parse_mapping, read_dataset
        from reflectkit.synth.inputs import auto_mapping
        from reflectkit.synth.step import SynthConfig, SynthStep

        mapping = auto_mapping(input, parse_mapping(map))
        ds = read_dataset(input, format=shape, mapping=mapping, skip_bad_rows=skip_bad_rows, require_output=False).limit(limit)
        cfg = SynthConfig(format=format, answer_field=answer_field, checker=checker, max_attempts=attempts,  # type: ignore[arg-type]
                          keep_unverified=keep_unverified, temperature=temperature, first_temperature=first_temperature,
                          max_tokens=max_tokens, prompt_set=prompt_set, system_prompt=system_prompt)
        cfg.validate()
        if answer_field and not any(answer_field in r.raw for r in ds.records):
            raise c.UserError(f"--answer-field {answer_field!r}: no row of {input} has that field")
        flags = c.ModelFlags(oracle_model, oracle_base_url, oracle_api_key_env, timeout, max_attempts)
        summary = c.run_oracle_step("synthesize", lambda model: SynthStep(model, cfg), ds, flags, output=output,
                                    dry_run=dry_run, run_dir=run_dir, concurrency=concurrency, quiet=quiet,
                                    restart=restart, no_cache=no_cache, cache_only=cache_only)
        print_synthesis(summary.manifest.get("synthesis", {}))
        raise typer.Exit(summary.exit_code)
