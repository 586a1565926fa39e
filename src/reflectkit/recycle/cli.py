"""``reflectkit recycle``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from reflectkit import cli_common as c


def register(app: typer.Typer) -> None:
    @app.command("recycle")
    def recycle_cmd(
        input: c.InputArg,
        output: c.OutputOpt = None,
        phase: Annotated[str, typer.Option("--phase", help="instruction, response, both (instruction then response) or all (the four variants for selective selection).")] = "response",
        max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Oracle max_tokens; cut-off answers are flagged.")] = 1024,
        structured: Annotated[bool, typer.Option("--structured", help="Ask for JSON (response_format json_schema) where supported.")] = False,
        prompt_set: Annotated[str, typer.Option("--prompt-set", help="Prompt set: 'paper' (verbatim) or a directory.")] = "paper",
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
        format: c.FormatOpt = None,
        map: c.MapOpt = None,
        skip_bad_rows: c.SkipBadOpt = False,
        no_cache: c.NoCacheOpt = False,
        cache_only: c.CacheOnlyOpt = False,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Recycle instruction data with an oracle (Reflection-Tuning, Li et al. 2023)."""
        from reflectkit.data.io import parse_mapping, read_dataset
        from reflectkit.recycle.step import RecycleConfig, RecycleStep

        ds = read_dataset(input, format=format, mapping=parse_mapping(map), skip_bad_rows=skip_bad_rows).limit(limit)
        cfg = RecycleConfig(phase=phase, max_tokens=max_tokens, structured=structured, prompt_set=prompt_set)  # type: ignore[arg-type]
        flags = c.ModelFlags(oracle_model, oracle_base_url, oracle_api_key_env, timeout, max_attempts)
        summary = c.run_oracle_step("recycle", lambda model: RecycleStep(model, cfg), ds, flags, output=output,
                                    dry_run=dry_run, run_dir=run_dir, concurrency=concurrency, quiet=quiet,
                                    restart=restart, no_cache=no_cache, cache_only=cache_only)
        raise typer.Exit(summary.exit_code)
