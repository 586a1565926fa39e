"""The recipe contract, checked for every registered step: one options model behind the CLI flags, the API keywords
and the pipeline YAML keys; a dry run that needs no client and no key; JSON-clean configs; steps that pickle."""

from __future__ import annotations

import json
import pickle
import typing
from pathlib import Path

import pytest
import yaml

from conftest import ALPACA, GSM8K_TRAIN, run_cli
from reflectkit.cli_steps import build_command, flag_name
from reflectkit.engine import registry
from reflectkit.engine.api import api_function
from reflectkit.engine.step import TaskStep

STEPS = registry.names()


def _step(name: str):
    return registry.get(name)


def _answers(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    rows = [{"id": f"q{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i), "response": f"The answer is {2 * i}."}
            for i in range(3)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def dry_run_args(name: str, tmp_path: Path) -> list[str] | None:
    """Arguments for a --dry-run of each built-in step (None: the step has no dry run)."""
    cls = _step(name)
    if "dry_run" not in cls.cli_plumbing:
        return None
    return {
        "decontaminate": [str(ALPACA), "--against", "gsm8k"],
        "synthesize": [str(GSM8K_TRAIN), "--answer-field", "answer"],
        "generate": [str(_answers(tmp_path, "evalset.jsonl"))],
        "refine": [str(_answers(tmp_path, "evalset.jsonl"))],
        "judge-bench": ["llmbar"],
        "judge-data": ["llmbar"],
        "judge-train": ["llmbar"],
        "judge": [str(_answers(tmp_path, "a.jsonl")), str(_answers(tmp_path, "b.jsonl"))],
    }.get(name, [str(ALPACA)])


def test_every_builtin_step_is_registered():
    assert {"recycle", "score", "select", "decontaminate", "synthesize", "train", "generate", "judge", "eval",
            "stats"} <= set(STEPS)


@pytest.mark.parametrize("name", STEPS)
def test_options_schema_flags_and_yaml_keys_agree(name):
    """`reflectkit steps --json` lists each option with its flag; the generated command has that flag with the same
    default; the options model (what YAML validates against) has the same default."""
    cls = _step(name)
    listing = json.loads(run_cli("steps", "--json").stdout)[name]
    props = listing["options"].get("properties", {})
    assert set(props) == set(cls.Options.model_fields)
    cmd = typer_command(cls)
    params = {p.name: p for p in cmd.params}
    for fname, f in cls.Options.model_fields.items():
        if (f.json_schema_extra or {}).get("x-cli") is False:  # type: ignore[union-attr]
            continue
        assert props[fname]["x-flag"] == flag_name(fname, f)
        p = params[fname]
        first = flag_name(fname, f).split("/")[0]
        assert first in p.opts or p.param_type_name == "argument", (fname, p.opts)
        if not f.is_required() and f.default is not None and not isinstance(f.default, list):
            assert p.default == f.default, (fname, p.default, f.default)
            if "default" in props[fname]:
                assert props[fname]["default"] == json.loads(json.dumps(f.default, default=str))


def typer_command(cls):
    import typer
    from typer.main import get_command

    app = typer.Typer()
    app.command(cls.name)(build_command(cls))
    app.command("_unused")(lambda: None)
    return get_command(app).commands[cls.name]  # type: ignore[attr-defined]


def _cli_args(cls, values: dict) -> list[str]:
    args: list[str] = []
    for fname, v in values.items():
        f = cls.Options.model_fields[fname]
        if (f.json_schema_extra or {}).get("x-cli") is False or (f.json_schema_extra or {}).get("x-argument"):  # type: ignore[union-attr]
            continue
        flag = flag_name(fname, f)
        if isinstance(v, bool):
            on, _, off = flag.partition("/")
            if v or off:
                args.append(on if v else off)
        elif isinstance(v, list):
            for item in v:
                args += [flag, str(item)]
        elif v is not None:
            args += [flag, str(v)]
    return args


@pytest.mark.parametrize("name", STEPS)
def test_defaults_round_trip_through_cli_api_and_yaml(name, tmp_path):
    """The default options, spelled as CLI flags, as API keywords and as a YAML mapping, give the same options."""
    cls = _step(name)
    required = {f: _sample_required(cls, f) for f, fi in cls.Options.model_fields.items() if fi.is_required()}
    base = cls.Options(**required)
    values = base.model_dump()
    # YAML
    from_yaml = cls.Options.model_validate(yaml.safe_load(yaml.safe_dump(json.loads(base.model_dump_json()))))
    assert from_yaml == base
    # API keywords: the derived function's signature has every option as a keyword with the same default
    import inspect

    sig = inspect.signature(api_function(cls))
    for fname, f in cls.Options.model_fields.items():
        assert fname in sig.parameters
        if not f.is_required():
            assert sig.parameters[fname].default == f.default
    # CLI: parse the flags with the generated command and rebuild the options from what it received
    cmd = typer_command(cls)
    positional = ["in.jsonl"] if cls.inputs != "none" else []
    if cls.inputs == "many":
        positional = ["in.jsonl", "b.jsonl"] if name == "judge" else ["in.jsonl"]
    ctx = cmd.make_context(name, positional + _cli_args(cls, values))
    got = {k: v for k, v in ctx.params.items() if k in cls.Options.model_fields and v is not None and v != [] and v != ()}
    if cls.inputs == "many":
        got.update(cls.split_inputs(list(ctx.params["input"]))[1])
    rebuilt = cls.Options(**{**required, **got})
    assert rebuilt.model_dump() == {**values, **{k: rebuilt.model_dump()[k] for k in got if k not in values}}


def _sample_required(cls, fname: str):
    ann = cls.Options.model_fields[fname].annotation
    if typing.get_origin(ann) is typing.Literal:
        return typing.get_args(ann)[0]
    if typing.get_origin(ann) is list:
        return ["gsm8k"]
    return "x"


@pytest.mark.parametrize("name", STEPS)
def test_config_is_json_clean_and_the_step_pickles(name):
    cls = _step(name)
    required = {f: _sample_required(cls, f) for f, fi in cls.Options.model_fields.items() if fi.is_required()}
    step = cls(cls.Options(**required), models={r: "embedded" for r, m in cls.model_roles.items()})
    cfg = step.config()
    assert json.loads(json.dumps(cfg)) == cfg
    clone = pickle.loads(pickle.dumps(step))
    assert type(clone) is cls and clone.options == step.options and clone.models == step.models
    assert clone.config() == cfg


@pytest.mark.parametrize("name", STEPS)
def test_dry_run_needs_no_client_and_no_key(name, tmp_path):
    cls = _step(name)
    args = dry_run_args(name, tmp_path)
    if args is None:
        assert issubclass(cls, TaskStep), f"{name} takes no --dry-run, and only task steps may do without"
        return
    endpoint: list[str] = []
    for role, r in cls.model_roles.items():
        if r.kind == "chat":  # an endpoint that does not exist, and no key anywhere: nothing may be called
            pre = r.flag_prefix(role)
            endpoint += [f"{pre}model", "some-model", f"{pre}base-url", "http://127.0.0.1:9/v1"]
    env = {"OPENAI_API_KEY": ""}
    r = run_cli(*_command_path(cls).split(), *args, "--dry-run", *endpoint, "--limit", "2", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"dry run: {name}" in r.stdout and "rows: " in r.stdout


def _command_path(cls) -> str:
    return {"judge": "judge pairwise", "judge-bench": "judge bench", "judge-data": "judge build-data",
            "judge-train": "judge train"}.get(cls.name, cls.name)
