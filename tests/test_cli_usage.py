"""Usage errors are one line on stderr and exit code 2, never a traceback, for every command."""

from __future__ import annotations

import typing

import pytest

from conftest import ALPACA, run_cli
from reflectkit.engine import registry


def _commands() -> list[list[str]]:
    cmds = []
    for name, cls in registry.all_steps().items():
        cmds.append({"judge": ["judge", "pairwise"], "judge-bench": ["judge", "bench"],
                     "eval": ["eval", "gsm8k"]}.get(name, [name]))
    return cmds + [["run"], ["report"], ["cache", "export"]]


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture()
def cli(capsys):
    """The CLI in-process (the subprocess form is tested on the issue's examples below)."""
    from reflectkit.cli import main

    def go(*argv: str) -> _Result:
        code = main(list(argv))
        out = capsys.readouterr()
        return _Result(code, out.out, out.err)

    return go


def _one_line_usage_error(r) -> None:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(lines) == 1, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c))
def test_unknown_option(cmd, cli):
    _one_line_usage_error(cli(*cmd, str(ALPACA), "--nope"))


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c))
def test_missing_argument(cmd, cli):
    _one_line_usage_error(cli(*cmd))


@pytest.mark.parametrize("cmd", [c for c in _commands() if c[0] in registry.names() + ["judge"] and c[0] != "eval"],
                         ids=lambda c: " ".join(c))
def test_bad_value(cmd, tmp_path, cli):
    cls = registry.get({"judge pairwise": "judge", "judge bench": "judge-bench"}.get(" ".join(cmd), cmd[0]))
    flag, value = ("--limit", "abc") if "limit" in cls.cli_plumbing else (None, None)
    if flag is None:  # a step without --limit: an integer option given a word, else a choice given a non-choice
        from reflectkit.cli_steps import flag_name

        fields = cls.Options.model_fields
        ints = [f for f, fi in fields.items() if fi.annotation is int]
        choices = [f for f, fi in fields.items() if typing.get_origin(fi.annotation) is typing.Literal]
        name = (ints or choices)[0]
        flag, value = flag_name(name, fields[name]).split("/")[0], "abc" if ints else "not-a-choice"
    args = [str(ALPACA)] + (["b.jsonl"] if cmd == ["judge", "pairwise"] else [])
    _one_line_usage_error(cli(*cmd, *args, "-o", str(tmp_path / "o.jsonl"), flag, value))


@pytest.mark.parametrize("argv", [["frobnicate"], ["score", "x.json", "--nope"], ["recycle"],
                                  ["recycle", "x.json", "-o", "y.jsonl", "--limit", "abc"], ["judge", "train"]])
def test_the_issue_examples(argv):
    _one_line_usage_error(run_cli(*argv))


def test_version():
    from reflectkit import __version__

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"reflectkit {__version__}"


def test_option_bounds_are_the_same_message_on_cli_api_and_yaml(tmp_path):
    """A value out of bounds is rejected by the options model on every surface with the same message."""
    from reflectkit.errors import UserError
    from reflectkit.pipeline.schema import load_pipeline
    from reflectkit.recycle.api import recycle

    cli = run_cli("recycle", str(ALPACA), "-o", str(tmp_path / "o.jsonl"), "--max-tokens", "0")
    assert cli.returncode == 2
    with pytest.raises(UserError) as api:
        recycle(ALPACA, tmp_path / "o.jsonl", max_tokens=0)
    (tmp_path / "d.json").write_text(ALPACA.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "p.yaml").write_text("input: d.json\noutput: out\nmodels: {oracle: embedded}\nstages:\n"
                                     "  - name: recycle\n    options: {max_tokens: 0}\n", encoding="utf-8")
    with pytest.raises(UserError) as yml:
        load_pipeline(tmp_path / "p.yaml")
    msg = "Input should be greater than or equal to 1"
    assert msg in cli.stderr and msg in str(api.value) and msg in str(yml.value)
    assert "--max-tokens" in cli.stderr and "max_tokens" in str(api.value) and "p.yaml:6" in str(yml.value)
