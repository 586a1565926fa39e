"""The ``reflectkit`` command line: a thin typer app over the Python API.

Each recipe package registers its own commands (``<package>/cli.py: register(app)``), so this file only wires
them together and turns user errors into one clear line and exit code 2 (never a traceback).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from reflectkit import cli_common as c
from reflectkit.errors import UserError

app = typer.Typer(
    name="reflectkit",
    help="Reflection-tuning of LLM instruction data, end to end and verifiably.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Packages that contribute commands. Each has ``cli.py`` with ``register(app)``.
COMMAND_MODULES = (
    "reflectkit.recycle.cli",
    "reflectkit.scoring.cli",
    "reflectkit.select.cli",
    "reflectkit.decontam.cli",
    "reflectkit.evaluate.cli",
    "reflectkit.synth.cli",
    "reflectkit.train.cli",
    "reflectkit.pipeline.cli",
    "reflectkit.report.cli",
)


@app.callback()
def _global(
    cache_dir: Annotated[
        Optional[Path],
        typer.Option("--cache-dir", envvar="REFLECTKIT_CACHE_DIR", help="Response cache directory (default ~/.cache/reflectkit)."),
    ] = None,
) -> None:
    c.STATE["cache_dir"] = cache_dir


cache_app = typer.Typer(help="Export, import and inspect the LLM response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("export")
def cache_export(path: Annotated[Path, typer.Argument(help="File to write (.jsonl or .jsonl.gz).")]) -> None:
    """Export every cached response, so others can replay a run without oracle access."""
    from reflectkit.llm.cache import ResponseCache

    n = ResponseCache(c.cache_dir()).export(path)
    print(f"exported {n} cached responses to {path}")


@cache_app.command("import")
def cache_import(path: Annotated[Path, typer.Argument(help="A file written by `reflectkit cache export`.")]) -> None:
    """Import cached responses (keys are re-verified against their requests)."""
    from reflectkit.llm.cache import ResponseCache

    added, present = ResponseCache(c.cache_dir()).import_(path)
    print(f"imported {added} responses ({present} already present) into {c.cache_dir()}")


@cache_app.command("info")
def cache_info() -> None:
    """Where the cache is and how many responses it holds."""
    from reflectkit.llm.cache import ResponseCache

    cache = ResponseCache(c.cache_dir())
    print(f"{cache.path}: {len(cache)} cached responses")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or (exc.name and name.startswith(exc.name + ".")):
                continue  # that part of reflectkit is not built yet
            raise
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the exit code (0 ok, 1 finished with failed rows, 2 user error)."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = 2
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        code = 130
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        code = 130
    else:
        code = rv if isinstance(rv, int) else 0
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
