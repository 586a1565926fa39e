"""``reflectkit report RUN_DIR -o report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        run_dir: Annotated[Path, typer.Argument(help="A pipeline output directory (or one step's run directory).",
                                                show_default=False)],
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="HTML file (default RUN_DIR/report.html).")] = None,
        max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows embedded in the row browser.")] = 20000,
    ) -> None:
        """Write one self-contained HTML report (no network needed) for a pipeline or step run."""
        from reflectkit.report.build import build_report

        path = build_report(run_dir, output or (run_dir / "report.html"), max_rows=max_rows)
        print(f"report: {path}")
