"""``reflectkit score`` and ``reflectkit stats``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from reflectkit import cli_common as c

StudentOpt = Annotated[str, typer.Option("--student", help="'embedded' (SmolLM2-135M-Instruct), a local HF model dir or a .gguf.")]


def _variants(text: str) -> list[str] | None:
    t = text.strip().lower()
    if t == "all":
        return None
    if t == "none":
        return []
    return [v.strip() for v in t.split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    @app.command("score")
    def score_cmd(
        input: c.InputArg,
        output: c.OutputOpt = None,
        student: StudentOpt = "embedded",
        max_length: Annotated[int, typer.Option("--max-length", min=8, help="Truncate as the reference does (tokens).")] = 2048,
        prompt: Annotated[str, typer.Option("--prompt", help="Student prompt wrapper: vicuna (paper default), alpaca or chat.")] = "vicuna",
        variants: Annotated[str, typer.Option("--variants", help="Recycle variants to score: all, none, or e.g. original,both.")] = "all",
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per batch (and per ledger commit).")] = 32,
        token_budget: Annotated[int, typer.Option("--token-budget", min=64, help="Padded tokens per forward micro-batch.")] = 4096,
        device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present).")] = None,
        threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default: torch's choice; 1 is often fastest on a busy machine).")] = None,
        no_coherence: Annotated[bool, typer.Option("--no-coherence", help="Skip the Sentence-BERT coherence score.")] = False,
        run_dir: c.RunDirOpt = None,
        limit: c.LimitOpt = None,
        restart: c.RestartOpt = False,
        format: c.FormatOpt = None,
        map: c.MapOpt = None,
        skip_bad_rows: c.SkipBadOpt = False,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Score rows with a student model: IFD, r-IFD, perplexities, coherence, gzip ratio (Cherry LLM,
        Selective Reflection-Tuning)."""
        from reflectkit.data.io import parse_mapping
        from reflectkit.scoring.api import score

        if output is None:
            raise c.UserError("score needs -o OUTPUT")
        summary = score(input, output, student=student, run_dir=run_dir, limit=limit, max_length=max_length, prompt=prompt,
                        batch_size=batch_size, token_budget=token_budget, cache_dir=c.cache_dir(), device=device,
                        coherence=not no_coherence, progress=c.progress_enabled(quiet), restart=restart, format=format,
                        mapping=parse_mapping(map), variants=_variants(variants), skip_bad_rows=skip_bad_rows, threads=threads)
        c.print_summary(summary)
        raise typer.Exit(summary.exit_code)

    @app.command("stats")
    def stats_cmd(
        files: Annotated[list[Path], typer.Argument(help="Scored files (output of `reflectkit score`).", show_default=False)],
        fmt: Annotated[str, typer.Option("--format", help="markdown, csv or json.")] = "markdown",
        variant: Annotated[Optional[str], typer.Option("--variant", help="Use reflectkit.score.variants.<name> instead of the row's own scores.")] = None,
    ) -> None:
        """The papers' data-statistics table (lengths, perplexities, coherence, IFD, r-IFD) for scored files."""
        from reflectkit.scoring.stats import stats_table

        print(stats_table(files, fmt=fmt, variant=variant), end="")
