"""``reflectkit select``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from reflectkit import cli_common as c


def register(app: typer.Typer) -> None:
    @app.command("select")
    def select_cmd(
        inputs: Annotated[list[Path], typer.Argument(help="One scored file, or four aligned scored files: original, "
                                                          "instruction-, response-, both-reflected.", show_default=False)],
        output: c.OutputOpt = None,
        method: Annotated[str, typer.Option("--method", help="selective (released-code rules), selective-paper, cherry or filter.")] = "selective",
        fraction: Annotated[Optional[float], typer.Option("--fraction", help="cherry: keep this fraction (e.g. 0.05) of rows with IFD <= 1.")] = None,
        count: Annotated[Optional[int], typer.Option("--count", min=0, help="cherry: keep this many rows.")] = None,
        where: Annotated[Optional[list[str]], typer.Option("--where", help="Filter on a score, e.g. 'coherence >= 0.5' (repeatable, applied first).")] = None,
        key: Annotated[str, typer.Option("--key", help="cherry: score to rank by (ifd_loss as in Cherry LLM, or ifd_ppl).")] = "ifd_loss",
        funnel_json: Annotated[Optional[Path], typer.Option("--funnel-json", help="Also write the funnel as JSON here.")] = None,
        run_dir: c.RunDirOpt = None,
        limit: c.LimitOpt = None,
        restart: c.RestartOpt = False,
        format: c.FormatOpt = None,
        map: c.MapOpt = None,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Select rows by student scores: Selective Reflection-Tuning, Cherry top-k%, or --where filters."""
        from reflectkit.data.io import parse_mapping
        from reflectkit.select.api import select

        if output is None:
            raise c.UserError("select needs -o OUTPUT")
        s = select(inputs, output, method=method, fraction=fraction, count=count, where=where or [], key=key,
                   run_dir=run_dir, limit=limit, progress=c.progress_enabled(quiet), restart=restart, format=format,
                   mapping=parse_mapping(map))
        print(s.funnel.format())
        print(f"  output:   {s.run.output}")
        print(f"  dropped:  {s.run.run_dir / 'dropped.jsonl'} (id, rule, reason)")
        print(f"  manifest: {s.run.manifest_path}")
        if funnel_json:
            try:
                funnel_json.write_text(json.dumps(s.funnel.to_dict(), indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise c.UserError(f"--funnel-json {funnel_json}: cannot write: {exc.strerror or exc} "
                                  f"(the funnel is also in {s.run.run_dir / 'funnel.json'})") from None
        raise typer.Exit(s.exit_code)
