"""The ``reflectkit`` command line, generated from the step registry (:mod:`reflectkit.cli_steps`), plus the
commands that are not steps (``run``, ``report``, ``cache``, ``steps``, the evaluation helpers).

Every usage error (unknown option, missing argument, bad value) is one line on stderr and exit code 2; user
errors are ``error: <message>`` and exit 2; never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from reflectkit import __version__
from reflectkit import cli_steps as c
from reflectkit.errors import UserError
from reflectkit.llm.base import FatalModelError, RequestFailed
from reflectkit.llm.secrets import redact

try:  # typer >= 0.20 vendors its own click; older typers use the click package
    from typer._click import exceptions as click_exc  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

app = typer.Typer(
    name="reflectkit",
    help="Reflection-tuning of LLM instruction data, end to end and verifiably.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Modules contributing commands that are not registered steps (each has ``register(app)``).
EXTRA_COMMANDS = (
    "reflectkit.evaluate.cli",
    "reflectkit.pipeline.cli",
    "reflectkit.report.cli",
    "reflectkit.verify.cli",
)


def _version(value: bool) -> None:
    if value:
        print(f"reflectkit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    cache_dir: Annotated[
        Optional[Path],
        typer.Option("--cache-dir", envvar="REFLECTKIT_CACHE_DIR", help="Response cache directory (default ~/.cache/reflectkit)."),
    ] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    c.STATE["cache_dir"] = cache_dir


@app.command("steps")
def steps_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print every step's options as JSON schema.")] = False) -> None:
    """List every registered step (built-in and from installed packages) with its options."""
    print(c.steps_listing(as_json))


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
    import importlib

    c.register_steps(app)
    for name in EXTRA_COMMANDS:
        importlib.import_module(name).register(app)


_register_all()


def _one_line(exc: Exception) -> str:
    msg = " ".join(str(getattr(exc, "format_message", lambda: str(exc))()).split())
    ctx = getattr(exc, "ctx", None)
    where = f"reflectkit {ctx.command_path.split(' ', 1)[1]}: " if ctx is not None and " " in ctx.command_path else ""
    return f"{where}{msg} (see --help)"


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the exit code (0 ok, 1 finished with failed rows, 2 user error)."""
    try:
        rv = app(args=argv, standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except (FatalModelError, RequestFailed) as exc:  # a model error outside any row: still one line
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        code = 2
    except typer.Exit as exc:
        code = exc.exit_code
    except click_exc.NoArgsIsHelpError as exc:  # `reflectkit`, `reflectkit cache`: show the help
        print(exc.ctx.get_help() if exc.ctx is not None else str(exc))
        code = 2
    except click_exc.UsageError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        code = 2
    except click_exc.ClickException as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        code = exc.exit_code or 2
    except typer.Abort:
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
