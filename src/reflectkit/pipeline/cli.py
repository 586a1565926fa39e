"""``reflectkit run PIPELINE.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from reflectkit import cli_steps as c


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        pipeline: Annotated[Path, typer.Argument(help="Pipeline file (YAML); see docs/pipeline.md.", show_default=False)],
        from_stage: Annotated[Optional[str], typer.Option("--from", help="Re-run this stage and every stage after it.")] = None,
        only: Annotated[Optional[str], typer.Option("--only", help="Run only this stage (earlier stages must have finished).")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan with estimated calls and tokens, then exit.")] = False,
        no_report: Annotated[bool, typer.Option("--no-report", help="Do not write report.html at the end.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ) -> None:
        """Run a declarative pipeline: each stage in its own sub-directory, skipped when unchanged, resumable."""
        from reflectkit.pipeline.runner import run_pipeline

        res = run_pipeline(pipeline, from_stage=from_stage, only=only, dry_run=dry_run,
                           progress=c.progress_enabled(quiet), cache_dir=c.cache_dir(),
                           report=False if no_report else None)
        raise typer.Exit(res.exit_code)
