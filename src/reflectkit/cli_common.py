"""Shared CLI plumbing: option types every step command takes, cache/model construction, summaries.

Conventions for every step command: ``--run-dir DIR``, ``--limit N``, ``--concurrency``, ``--dry-run``,
the oracle flags, ``-o OUTPUT``; exit codes 0 ok, 1 run finished with failed rows, 2 user error.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from reflectkit.errors import UserError

# ----------------------------------------------------------------------------- global state
STATE: dict[str, Any] = {"cache_dir": None}


def cache_dir() -> Path:
    from reflectkit.llm.cache import default_cache_dir

    return Path(STATE["cache_dir"]).expanduser() if STATE.get("cache_dir") else default_cache_dir()


# ----------------------------------------------------------------------------- option types
InputArg = Annotated[Path, typer.Argument(help="Dataset file: JSONL, JSON array, Parquet or CSV.", show_default=False)]
OutputOpt = Annotated[Optional[Path], typer.Option("-o", "--output", help="Output file (.jsonl or .parquet).")]
RunDirOpt = Annotated[Optional[Path], typer.Option("--run-dir", help="Run directory (ledger + manifest). Default: runs/<step>-<input>-<hash>.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N rows.")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print rows, estimated calls and tokens, then exit.")]
RestartOpt = Annotated[bool, typer.Option("--restart", help="Discard the run directory's ledger and start over.")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="Record shape: alpaca, messages or sharegpt (auto-detected).")]
MapOpt = Annotated[Optional[str], typer.Option("--map", help="Rename fields, e.g. instruction=question,output=answer.")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad-rows", help="Record and skip unreadable rows instead of stopping.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the response cache.")]
CacheOnlyOpt = Annotated[bool, typer.Option("--cache-only", help="Replay from the cache only; never call the endpoint.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
OracleModelOpt = Annotated[
    Optional[str],
    typer.Option("--oracle-model", help="Model name at the endpoint, or a local .gguf path. Default: embedded SmolLM2-135M."),
]
OracleUrlOpt = Annotated[Optional[str], typer.Option("--oracle-base-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1.")]
OracleKeyEnvOpt = Annotated[
    Optional[str], typer.Option("--oracle-api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY).")
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Per-request timeout in seconds.")]
MaxAttemptsOpt = Annotated[int, typer.Option("--max-attempts", min=1, help="Attempts per request (429/5xx/timeouts).")]


@dataclass
class ModelFlags:
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float = 600.0
    max_attempts: int = 6

    def spec(self) -> Any:
        from reflectkit.llm.factory import ModelSpec

        return ModelSpec(
            model=self.model, base_url=self.base_url, api_key_env=self.api_key_env, timeout=self.timeout,
            max_attempts=self.max_attempts,
        )


def open_cache(no_cache: bool) -> Any:
    from reflectkit.llm.cache import ResponseCache

    return None if no_cache else ResponseCache(cache_dir())


def open_model(flags: ModelFlags, *, no_cache: bool = False, cache_only: bool = False, concurrency: int = 8,
               setting_name: str = "--oracle") -> Any:
    """Build a model client. Endpoints are probed (``/v1/models``) by the engine when the run starts, inside the
    run's own event loop; code that calls the model outside the engine should ``await probe_model(model)`` first."""
    from reflectkit.llm.factory import build_chat_model

    if cache_only and no_cache:
        raise UserError("--cache-only needs the cache; drop --no-cache")
    return build_chat_model(flags.spec(), cache=open_cache(no_cache), concurrency=concurrency, setting_name=setting_name,
                            cache_only=cache_only)


async def probe_model(model: Any) -> None:
    """Ask an endpoint for its identity; unreachable endpoint or rejected key -> UserError (exit 2)."""
    from reflectkit.llm.factory import probe_model as _probe

    await _probe(model)


def run_oracle_step(name: str, make_step: Any, ds: Any, flags: ModelFlags, *, output: Path | None, dry_run: bool,
                    run_dir: Path | None, concurrency: int, quiet: bool, restart: bool, no_cache: bool,
                    cache_only: bool) -> Any:
    """The flow every per-row oracle step command shares: ``--dry-run`` prints the estimate and exits 0; otherwise
    ``-o`` is required, the model is built, the step runs through the engine and the summary is printed.
    ``make_step(model)`` builds the step. Returns the RunSummary."""
    from reflectkit.engine.run import run_step

    if dry_run:
        from reflectkit.llm.factory import build_chat_model

        print_dry_run(name, make_step(build_chat_model(flags.spec(), cache=None)).estimate(ds.records))
        raise typer.Exit(0)
    if output is None:
        raise UserError(f"{name} needs -o OUTPUT")
    step = make_step(open_model(flags, no_cache=no_cache, cache_only=cache_only, concurrency=concurrency))
    summary = run_step(step, ds, output=output, run_dir=run_dir, concurrency=concurrency,
                       progress=progress_enabled(quiet), restart=restart)
    print_summary(summary)
    return summary


def print_dry_run(step_name: str, estimate: dict[str, Any]) -> None:
    print(f"dry run: {step_name}")
    for k, v in estimate.items():
        print(f"  {k}: {v}")
    print("  (token counts are estimates: about 4 characters per token)")


def print_summary(summary: Any) -> None:
    counts = ", ".join(f"{k}={v}" for k, v in sorted(summary.counts.items()))
    print(f"{summary.step}: {summary.rows_in} rows -> {summary.rows_out} written ({counts})")
    print(f"  oracle calls {summary.calls}, cache hits {summary.cache_hits}, {summary.wall_time_s:.1f}s")
    if summary.output:
        print(f"  output:   {summary.output}")
    print(f"  manifest: {summary.manifest_path}")
    if summary.failed:
        print(f"  {summary.failed} rows failed; see reflectkit.{summary.step}.reason in the output. Re-run to retry them.")


def emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def progress_enabled(quiet: bool) -> bool:
    return not quiet and os.environ.get("REFLECTKIT_NO_PROGRESS") != "1"


def fail(message: str) -> None:
    raise UserError(message)


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
