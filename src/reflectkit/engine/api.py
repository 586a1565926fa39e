"""The Python API, derived from the registry: one function runs any step, and each step gets a function of its own
with its options as keywords (``reflectkit.recycle.api.recycle`` is ``api_function(RecycleStep)``).

The CLI calls exactly these functions, and pipelines call :func:`run` too, so the three surfaces validate options
with the same model and the same messages.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reflectkit.engine.run import Run, RunSummary
from reflectkit.engine.step import Step, option_names
from reflectkit.errors import UserError

#: Keywords every step function takes besides its options and model roles.
PLUMBING: dict[str, Any] = {
    "run_dir": None,
    "limit": None,
    "concurrency": 8,
    "cache_dir": None,
    "use_cache": True,
    "cache_only": False,
    "format": None,
    "mapping": None,
    "skip_bad_rows": False,
    "progress": False,
    "restart": False,
    "clients": None,
    "gate_failed": False,
    "executor": "local",
    "ray_address": None,
    "ray_workers": None,
}


def first_problem(exc: ValidationError, noun: str = "option") -> tuple[tuple[str | int, ...], str]:
    """(location, one-line message) of the first problem of a pydantic error, with pydantic's internal location
    parts and its "Value error, " prefix removed; ``noun`` names what the keys are ("option", "key")."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown {noun}"
    elif err["type"] == "missing":
        msg = f"required {noun} is missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return loc, msg + more


def validation_message(exc: ValidationError, label: Callable[[str], str] = lambda f: f) -> str:
    """One line for the first problem, naming the option as its surface spells it (``--max-tokens`` on the CLI,
    ``max_tokens`` in Python; pipelines name ``file.yaml:7: stages[0].options.max_tokens``)."""
    loc, msg = first_problem(exc)
    name = label(str(loc[0])) if loc else "options"
    return f"{name}: {msg}"


def make_step(step_cls: type[Step[Any]], options: Mapping[str, Any], models: Mapping[str, Any] | None = None,
              *, label: Callable[[str], str] = lambda f: f) -> Step[Any]:
    """Validate ``options`` with the step's model (UserError naming the option) and build the step."""
    try:
        opts = step_cls.Options(**options)
    except ValidationError as exc:
        raise UserError(f"{step_cls.name}: {validation_message(exc, label)}") from None
    return step_cls(opts, models=models)


def check_plumbing(p: Mapping[str, Any]) -> None:
    """The shared keywords, checked the same way for the CLI, Python and pipelines."""
    if p.get("limit") is not None and p["limit"] < 1:
        raise UserError(f"--limit must be at least 1, got {p['limit']}")
    if p.get("concurrency") is not None and p["concurrency"] < 1:
        raise UserError(f"--concurrency must be at least 1, got {p['concurrency']}")
    if p.get("cache_only") and not p.get("use_cache", True):
        raise UserError("--cache-only needs the cache; drop --no-cache")


def run(step: Step[Any] | str | type[Step[Any]], input: Any = None, output: str | Path | None = None, *,
        models: Mapping[str, Any] | None = None, dry_run: bool = False, **kwargs: Any) -> Any:
    """Run a step (an instance, a class or a registered name) over ``input``; returns its :class:`RunSummary`
    (with ``dry_run``: the estimate, a dict). Keywords: the step's options (when given a class or name), its
    model roles in ``models``, and the plumbing in :data:`PLUMBING`."""
    from reflectkit.engine import registry

    if isinstance(step, str):
        step = registry.get(step)
    # given a class or a name, a step option named like a plumbing keyword (stats' ``format``, also as an alias)
    # is the option; a built step already has its options, so every keyword left is plumbing
    names = option_names(step.Options) if isinstance(step, type) else {}
    plumbing = {k: kwargs.pop(k) for k in list(kwargs) if k in PLUMBING and k not in names}
    if isinstance(step, type):
        step = make_step(step, kwargs, models)
    elif kwargs:
        raise TypeError(f"unexpected keyword arguments for a step instance: {', '.join(kwargs)}")
    p = {**PLUMBING, **plumbing}
    check_plumbing(p)
    ds = step.read_input(input, format=p["format"], mapping=p["mapping"], skip_bad_rows=p["skip_bad_rows"],
                         limit=p["limit"])
    if dry_run:
        return with_cost(step, step.estimate(ds.records))
    out = Path(output) if output else None
    if out is not None and ds.path is not None and out.exists() and out.resolve() == Path(ds.path).resolve():
        raise UserError(f"-o {out}: the output would overwrite the input file")
    from reflectkit.engine.executors import executor_for

    executor = executor_for(p["executor"], ray_address=p["ray_address"], ray_workers=p["ray_workers"])
    runner = Run(step, ds, output=out, run_dir=Path(p["run_dir"]) if p["run_dir"] else None,
                 concurrency=p["concurrency"], progress=p["progress"], restart=p["restart"],
                 cache_dir=Path(p["cache_dir"]) if p["cache_dir"] else None, use_cache=p["use_cache"],
                 cache_only=p["cache_only"], clients=p["clients"], gate_failed=p["gate_failed"], executor=executor)
    return asyncio.run(runner.execute())


def with_cost(step: Step[Any], estimate: dict[str, Any]) -> dict[str, Any]:
    """Add the estimated cost to a ``--dry-run`` estimate when an endpoint role has prices (``--price-in`` /
    ``--price-out`` or the built-in table): prompt tokens x input price + the most completion tokens x output
    price, an upper bound since answers are usually shorter than ``max_tokens``."""
    from reflectkit.llm.pricing import prices_for

    roles = [r for r in step.active_roles() if step.model_roles[r].kind == "chat" and step.spec(r).base_url]
    prices = next((p for r in roles if (p := prices_for(step.spec(r))) is not None), None)
    if prices is None or "prompt_tokens" not in estimate:
        return estimate
    completion = int(estimate.get("max_completion_tokens", 0) or 0)
    cost = prices.cost(int(estimate["prompt_tokens"]), completion)
    out = dict(estimate)
    out["estimated_cost_usd"] = (f"at most {cost:.4f} (prompt {prices.price_in:g} + completion "
                                 f"{prices.price_out:g} USD per million tokens; {prices.source})")
    return out


def api_function(step_cls: type[Step[Any]], *, input_name: str = "input") -> Callable[..., Any]:
    """The Python function of one step: ``fn(input, output=None, *, <options>, <roles>, <plumbing>)``.

    Its signature is derived from the options model (visible to ``help()`` and IDEs); model roles take a
    :class:`~reflectkit.llm.spec.ModelSpec`, a string (``'embedded'``, a path, a model name) or a dict.
    """
    fields = step_cls.Options.model_fields
    names = option_names(step_cls.Options)
    roles = tuple(step_cls.model_roles)

    def fn(*args: Any, **kwargs: Any) -> Any:
        if len(args) > 2:
            raise TypeError(f"{step_cls.name}() takes the input and the output positionally; options are keywords")
        input = args[0] if args else kwargs.pop(input_name, None)
        output = args[1] if len(args) > 1 else kwargs.pop("output", None)
        models = {r: kwargs.pop(r) for r in roles if r in kwargs}
        unknown = [k for k in kwargs if k not in names and k not in PLUMBING and k != "dry_run"]
        if unknown:
            raise TypeError(f"{step_cls.name}() got unexpected keyword arguments: {', '.join(unknown)}")
        return run(step_cls, input, output, models=models, **kwargs)

    params = [inspect.Parameter(input_name, inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("output", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
    for name, f in fields.items():
        default = f.default if not f.is_required() else inspect.Parameter.empty
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=f.annotation))
    for r in roles:
        params.append(inspect.Parameter(r, inspect.Parameter.KEYWORD_ONLY, default=None))
    for name, default in PLUMBING.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
    fn.__signature__ = inspect.Signature(params, return_annotation=RunSummary)  # type: ignore[attr-defined]
    fn.__name__ = fn.__qualname__ = step_cls.name
    fn.__doc__ = (step_cls.__doc__ or "").strip() + "\n\nOptions: " + ", ".join(fields)
    return fn


__all__ = ["PLUMBING", "api_function", "check_plumbing", "make_step", "run", "validation_message"]
