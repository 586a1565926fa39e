"""CLI commands generated from the step registry: flags -> options model -> the step's API function -> print.

Nothing here knows a particular step. Each option of a step's ``Options`` model becomes a flag (``max_tokens`` ->
``--max-tokens``; a bool ``x`` -> ``--x/--no-x``; a list -> a repeatable flag), each model role becomes its
flags (``--oracle-model``, ``--oracle-base-url``, ``--oracle-api-key-env``; a student role: ``--student``), and
the plumbing every step shares is added once. Validation is the options model's: the CLI passes the raw values.
"""

from __future__ import annotations

import inspect
import json
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic.fields import FieldInfo

from reflectkit.engine.step import Step
from reflectkit.errors import UserError

STATE: dict[str, Any] = {"cache_dir": None}


def cache_dir() -> Path:
    from reflectkit.llm.cache import default_cache_dir

    return Path(STATE["cache_dir"]).expanduser() if STATE.get("cache_dir") else default_cache_dir()


def progress_enabled(quiet: bool) -> bool:
    return not quiet and os.environ.get("REFLECTKIT_NO_PROGRESS") != "1"


# ----------------------------------------------------------------------------- field -> flag


def _extra(f: FieldInfo) -> dict[str, Any]:
    e = f.json_schema_extra
    return e if isinstance(e, dict) else {}


def flag_name(name: str, f: FieldInfo) -> str:
    """The CLI spelling of an option (``--max-tokens``; ``--x/--no-x`` for a bool)."""
    flag = _extra(f).get("x-flag")
    if flag:
        return str(flag)
    base = "--" + name.replace("_", "-")
    return f"{base}/--no-{name.replace('_', '-')}" if _base_type(f.annotation) is bool else base


def _base_type(ann: Any) -> Any:
    """The plain type under Optional[...] / Annotated[...]."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _base_type(typing.get_args(ann)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    return ann


def _cli_type(ann: Any) -> Any:
    """What typer parses (pydantic validates afterwards): str for Literals and unions, lists of str/int/float."""
    base = _base_type(ann)
    origin = typing.get_origin(base)
    if origin in (list, tuple, typing.List, typing.Sequence):
        args = typing.get_args(base)
        inner = _base_type(args[0]) if args else str
        return list[inner if inner in (int, float, str, Path) else str]  # type: ignore[valid-type]
    if origin is typing.Literal:
        return str
    if base in (int, float, bool, str, Path):
        return base
    return str


def _help(f: FieldInfo) -> str:
    h = f.description or ""
    choices = typing.get_args(_base_type(f.annotation)) if typing.get_origin(_base_type(f.annotation)) is typing.Literal else ()
    if choices and not all(str(c) in h for c in choices):
        h += f" One of: {', '.join(map(str, choices))}."
    return h


def option_params(step_cls: type[Step[Any]]) -> list[inspect.Parameter]:
    params = []
    for name, f in step_cls.Options.model_fields.items():
        extra = _extra(f)
        if extra.get("x-cli") is False:
            continue
        t = _cli_type(f.annotation)
        required = f.is_required()
        default = None if (required or typing.get_origin(t) is list) else f.default
        if extra.get("x-argument"):
            info: Any = typer.Argument(help=_help(f), show_default=False)
            ann = Annotated[Optional[t] if not required else t, info]
        else:
            decls = flag_name(name, f).split(" ")
            if extra.get("x-short"):
                decls.append(extra["x-short"])
            info = typer.Option(*decls, help=_help(f), show_default=not required and typing.get_origin(t) is not list)
            ann = Annotated[Optional[t], info]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann))
    return params


def role_params(step_cls: type[Step[Any]]) -> list[inspect.Parameter]:
    P = inspect.Parameter
    params: list[P] = []
    endpoint = student_endpoint = False
    for role, r in step_cls.model_roles.items():
        pre = r.flag_prefix(role)
        if r.kind == "student":
            params.append(
                P(f"role__{role}", P.KEYWORD_ONLY, default="embedded", annotation=Annotated[str, typer.Option(
                    f"--{role}", help=r.help or "'embedded' (SmolLM2-135M-Instruct), a local HF model dir or a .gguf.")]))
            if not r.endpoint:
                continue
            student_endpoint = True
            params += [
                P(f"role__{role}__base_url", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
                    f"--{role}-base-url", help="OpenAI-compatible endpoint serving the student (prompt log-probs).")]),
                P(f"role__{role}__model", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
                    f"--{role}-model", help="The student's model name at --" + role + "-base-url.")]),
                P(f"role__{role}__api_key_env", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
                    f"--{role}-api-key-env", help="Environment variable holding the endpoint's API key.")]),
            ]
            continue
        endpoint = True
        what = r.help or f"The {role} model"
        params += [
            P(f"role__{role}__model", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
                f"{pre}model", help=f"{what}: model name at the endpoint, a local .gguf, or 'embedded' (default: embedded SmolLM2-135M).")]),
            P(f"role__{role}__base_url", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[list[str]], typer.Option(
                f"{pre}base-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1; repeat it for a "
                "fleet of endpoints serving the same model.", show_default=False)]),
            P(f"role__{role}__api_key_env", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
                f"{pre}api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY).")]),
            P(f"role__{role}__claims", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
                f"{pre}claims", help="What the endpoint claims to be ('embedded', a .gguf, an HF dir or a "
                "fingerprint file): every call's prompt token count is checked against it.")]),
        ]
        if r.local:
            params += [
                P(f"role__{role}__adapter", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
                    f"{pre}adapter", help="PEFT LoRA adapter directory for a local HF model.")]),
                P(f"role__{role}__prompt_format", P.KEYWORD_ONLY, default="chat", annotation=Annotated[str, typer.Option(
                    f"{pre}prompt-format", help="Local HF models: chat (chat template) or raw (plain text prompt).")]),
            ]
    if endpoint or student_endpoint:
        params += [
            P("role__timeout", P.KEYWORD_ONLY, default=600.0, annotation=Annotated[float, typer.Option(
                "--timeout", help="Per-request timeout in seconds.")]),
            P("role__max_attempts", P.KEYWORD_ONLY, default=6, annotation=Annotated[int, typer.Option(
                "--max-attempts", help="Attempts per request (429/5xx/timeouts).")]),
            P("role__concurrency", P.KEYWORD_ONLY, default=8, annotation=Annotated[int, typer.Option(
                "--concurrency", help="Requests in flight.")]),
        ]
    if endpoint:  # chat endpoints: verification, rate limits, budgets, the response cache
        params += [
            P("role__canary_every", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[int], typer.Option(
                "--canary-every", help="Endpoints: repeat a verification canary every K calls (0: off).")]),
            P("role__on_drift", P.KEYWORD_ONLY, default="stop", annotation=Annotated[str, typer.Option(
                "--on-drift", help="When an endpoint stops answering like itself: stop (exit 3) or mark the rows.")]),
            P("role__rpm", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[float], typer.Option(
                "--rpm", help="Requests per minute allowed per endpoint.")]),
            P("role__tpm", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[float], typer.Option(
                "--tpm", help="Tokens per minute allowed per endpoint (prompt estimate + max_tokens).")]),
            P("role__adaptive", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
                "--adaptive-concurrency", help="Lower concurrency on repeated 429s and raise it again (AIMD).")]),
            P("role__price_in", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[float], typer.Option(
                "--price-in", help="Price per million prompt tokens (default: built-in table by model name).")]),
            P("role__price_out", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[float], typer.Option(
                "--price-out", help="Price per million completion tokens.")]),
            P("role__max_cost", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[float], typer.Option(
                "--max-cost", help="Stop gracefully (exit 1, resumable) when the estimated spend reaches this.")]),
            P("role__no_cache", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
                "--no-cache", help="Do not read or write the response cache.")]),
            P("role__cache_only", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
                "--cache-only", help="Replay from the cache only; never call the endpoint.")]),
        ]
    return params


def common_params(step_cls: type[Step[Any]]) -> list[inspect.Parameter]:
    P = inspect.Parameter
    ps: list[P] = []
    if step_cls.inputs == "one":
        ps.append(P("input", P.POSITIONAL_OR_KEYWORD, annotation=Annotated[str, typer.Argument(
            help=step_cls.input_help, show_default=False)]))
    elif step_cls.inputs == "many":
        ps.append(P("input", P.POSITIONAL_OR_KEYWORD, annotation=Annotated[list[str], typer.Argument(
            help=step_cls.input_help, show_default=False)]))
    out_help = "Output file (.jsonl or .parquet)." if step_cls.produces_data else "Output directory or file."
    ps.append(P("output", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[Path], typer.Option(
        "-o", "--output", help=out_help)]))
    plumbing = [
        P("run_dir", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[Path], typer.Option(
            "--run-dir", help="Run directory (ledger + manifest). Default: runs/<step>-<input>-<hash>.")]),
        P("limit", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[int], typer.Option(
            "--limit", help="Only the first N rows.")]),
        P("dry_run", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
            "--dry-run", help="Print rows, estimated calls and tokens, then exit (needs no model and no key).")]),
        P("restart", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
            "--restart", help="Discard the run directory's ledger and start over.")]),
        P("format", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
            "--format", help="Record shape: alpaca, messages or sharegpt (auto-detected).")]),
        P("map", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
            "--map", help="Rename fields, e.g. instruction=question,output=answer.")]),
        P("skip_bad_rows", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
            "--skip-bad-rows", help="Record and skip unreadable rows instead of stopping.")]),
        P("quiet", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
            "--quiet", "-q", help="No progress output.")]),
    ]
    ps += [p for p in plumbing if p.name in step_cls.cli_plumbing]
    if step_cls.kind != "task":  # where rows run (engine.executors); task steps have no rows
        ps += [
            P("executor", P.KEYWORD_ONLY, default="local", annotation=Annotated[str, typer.Option(
                "--executor", help="Where rows run: local, or ray (a Ray cluster; pip install 'reflectkit[ray]'). "
                "The output is the same.")]),
            P("ray_address", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
                "--ray-address", help="--executor ray: a running cluster (auto, ray://HOST:10001). Default: start "
                "a local one.")]),
            P("ray_workers", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[int], typer.Option(
                "--ray-workers", help="--executor ray: the most actors (default: the cluster's CPUs; its GPUs for "
                "scoring).")]),
        ]
    return ps


# ----------------------------------------------------------------------------- the command


def print_dry_run(step_name: str, estimate: dict[str, Any]) -> None:
    print(f"dry run: {step_name}")
    for k, v in estimate.items():
        print(f"  {k}: {v}")
    print("  (token counts are estimates: about 4 characters per token)")


def print_summary(summary: Any, kind: str = "row") -> None:
    if kind == "task":
        print(f"{summary.step}: done in {summary.wall_time_s:.1f}s")
        for name, path in summary.files.items():
            print(f"  {name + ':':<10}{path}")
        print(f"  manifest: {summary.manifest_path}")
        return
    counts = ", ".join(f"{k}={v}" for k, v in sorted(summary.counts.items()))
    print(f"{summary.step}: {summary.rows_in} rows -> {summary.rows_out} written ({counts})")
    print(f"  oracle calls {summary.calls}, cache hits {summary.cache_hits}, {summary.wall_time_s:.1f}s")
    for role, ident in ((getattr(summary, "manifest", None) or {}).get("models") or {}).items():
        if not isinstance(ident, dict):
            continue
        line = (ident.get("cache") or {}).get("line")
        if line:  # whose answers were replayed
            print(f"  {role}: {line}")
        drift = (ident.get("verification") or {}).get("drift")
        if drift:
            print(f"  {role}: endpoint drift at call {drift['call']}: {drift['reason']}")
    if summary.output:
        print(f"  output:   {summary.output}")
    print(f"  manifest: {summary.manifest_path}")
    if summary.failed:
        print(f"  {summary.failed} rows failed; see reflectkit.{summary.step}.reason in the output. Re-run to retry them.")


#: endpoint settings given once on the command line and applied to every endpoint role of the step
SHARED_SPEC_FLAGS = ("timeout", "max_attempts", "canary_every", "on_drift", "rpm", "tpm", "adaptive", "price_in",
                     "price_out", "max_cost")


def _models_from_flags(step_cls: type[Step[Any]], kw: dict[str, Any]) -> dict[str, Any]:
    from reflectkit.llm.spec import ModelSpec

    models: dict[str, Any] = {}
    common = {k: kw.pop(f"role__{k}") for k in SHARED_SPEC_FLAGS if f"role__{k}" in kw}
    common = {k: v for k, v in common.items() if v is not None}
    for role, r in step_cls.model_roles.items():
        vals = {k.split("__", 2)[2]: kw.pop(k) for k in list(kw) if k.startswith(f"role__{role}__")}
        vals = {k: v for k, v in vals.items() if v is not None}
        if r.kind == "student":
            name = kw.pop(f"role__{role}")
            if vals.get("base_url"):
                if name not in (None, "embedded") and vals.get("model") and name != vals["model"]:
                    raise UserError(f"give the endpoint's model name once: --{role}-model (not also --{role})")
                vals.setdefault("model", None if name == "embedded" else name)
                if not vals.get("model"):
                    raise UserError(f"--{role}-base-url is set but --{role}-model (the model name there) is missing")
                models[role] = ModelSpec(**vals, **{k: v for k, v in common.items() if k in ("timeout", "max_attempts")})
            elif vals:
                raise UserError(f"--{role}-model and --{role}-api-key-env need --{role}-base-url "
                                f"(a local student is given with --{role})")
            else:
                models[role] = ModelSpec.coerce(name)
            continue
        urls = vals.pop("base_url", None) or []
        if urls:
            vals["base_url"] = urls[0]
            if len(urls) > 1:
                vals["base_urls"] = tuple(urls)
        try:
            models[role] = ModelSpec(**vals, **common)
        except Exception as exc:  # pydantic: bad --timeout, an api-key-env that looks like a key
            from pydantic import ValidationError

            if isinstance(exc, ValidationError):
                from reflectkit.engine.api import validation_message

                pre = r.flag_prefix(role)
                raise UserError(validation_message(exc, lambda f: pre + f.replace("_", "-")
                                                   if f not in SHARED_SPEC_FLAGS else "--" + f.replace("_", "-")))
            raise
    return models


def build_command(step_cls: type[Step[Any]]) -> Any:
    """The typer command function of a step."""
    fields = step_cls.Options.model_fields

    def command(**kw: Any) -> None:
        from reflectkit.data.io import parse_mapping
        from reflectkit.engine.api import check_plumbing, make_step, run

        output, dry_run, quiet = kw.pop("output"), kw.pop("dry_run", False), kw.pop("quiet", False)
        input = kw.pop("input", None)
        no_cache, cache_only = kw.pop("role__no_cache", False), kw.pop("role__cache_only", False)
        if "role__concurrency" in kw:
            kw["concurrency"] = kw.pop("role__concurrency")
        models = _models_from_flags(step_cls, kw)
        plumbing = {k: kw.pop(k) for k in ("run_dir", "limit", "restart", "format", "skip_bad_rows", "concurrency")
                    if k in kw and (k in step_cls.cli_plumbing or k == "concurrency")}
        plumbing.update({k: kw.pop(k) for k in ("executor", "ray_address", "ray_workers") if k in kw})
        check_plumbing({**plumbing, "cache_only": cache_only, "use_cache": not no_cache})
        mapping = parse_mapping(kw.pop("map", None))
        options = {k: v for k, v in kw.items() if k in fields and not (v is None and not fields[k].is_required()
                                                                          and fields[k].default is not None)}
        options = {k: v for k, v in options.items() if not (isinstance(v, (list, tuple)) and not v and not fields[k].is_required())}
        if step_cls.inputs == "many":
            input, extra = step_cls.split_inputs(list(input or []))
            for k, v in extra.items():  # extra positionals add to a list option given as a flag
                options[k] = [*options[k], *v] if isinstance(v, list) and isinstance(options.get(k), list) else v
        step = make_step(step_cls, options, models, label=lambda f: flag_name(f, fields[f]).split("/")[0]
                         if f in fields else f)
        if dry_run:
            print_dry_run(step_cls.name, run(step, input, None, dry_run=True, mapping=mapping,
                                             **{k: v for k, v in plumbing.items() if k in ("limit", "format", "skip_bad_rows")}))
            raise typer.Exit(0)
        if output is None and step_cls.needs_output:
            raise UserError(f"{step_cls.name} needs -o OUTPUT")
        summary = run(step, input, output, mapping=mapping, cache_dir=cache_dir(), use_cache=not no_cache,
                      cache_only=cache_only, progress=progress_enabled(quiet), **plumbing)
        if step_cls.cli_summary:
            print_summary(summary, step_cls.kind)
        for line in step.summary_lines(summary):
            print(line)
        raise typer.Exit(summary.exit_code)

    params = common_params(step_cls) + option_params(step_cls) + role_params(step_cls)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = f"{step_cls.name}_cmd"
    command.__doc__ = (step_cls.__doc__ or step_cls.name).strip().split("\n\n")[0]
    return command


def register_steps(app: typer.Typer) -> None:
    from reflectkit.engine import registry

    for name, cls in registry.all_steps().items():
        if cls.cli_command is False:
            continue
        app.command(cls.cli_command or name, help=(cls.__doc__ or name).strip().split("\n\n")[0])(build_command(cls))


# ----------------------------------------------------------------------------- reflectkit steps


def steps_listing(as_json: bool) -> str:
    from reflectkit.engine import registry

    steps = registry.all_steps()
    if as_json:
        out = {}
        for name, cls in steps.items():
            schema = cls.Options.model_json_schema()
            for fname, f in cls.Options.model_fields.items():
                prop = schema.get("properties", {}).get(fname)
                if prop is not None:  # options with no flag are a positional input or set in Python/YAML only
                    prop["x-flag"] = flag_name(fname, f) if _extra(f).get("x-cli") is not False else None
            out[name] = {"kind": cls.kind, "summary": (cls.__doc__ or "").strip().split("\n")[0],
                         "model_roles": {r: {"kind": m.kind} for r, m in cls.model_roles.items()},
                         "produces_data": cls.produces_data, "files": dict(cls.files),
                         "manifest_sections": list(cls.manifest_sections), "options": schema}
        return json.dumps(out, indent=2, default=str)
    lines = []
    for name, cls in steps.items():
        lines.append(f"{name} [{cls.kind}]  {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
        roles = ", ".join(f"{r} ({m.kind})" for r, m in cls.model_roles.items())
        if roles:
            lines.append(f"  models: {roles}")
        if cls.files:
            lines.append(f"  writes: {', '.join(cls.files)}")
        for fname, f in cls.Options.model_fields.items():
            default = "required" if f.is_required() else f"default {f.default!r}"
            lines.append(f"  {fname:<22} {default:<24} {f.description or ''}")
    return "\n".join(lines)
