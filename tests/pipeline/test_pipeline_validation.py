"""Invalid pipeline files get one message naming the file, the line and the key (exit 2, no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ALPACA, run_cli

from reflectkit.errors import UserError
from reflectkit.pipeline.schema import load_pipeline


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text, encoding="utf-8")
    return p


BASE = f"input: {ALPACA}\noutput: out\nmodels:\n  oracle: embedded\nstages:\n"


@pytest.mark.parametrize(
    "body, line, key, words",
    [
        ("  - name: recycle\n  - name: reflectify\n", 7, "stages[1].name", "unknown stage 'reflectify'"),
        ("  - name: recycle\n    options:\n      max_tokens: lots\n", 8, "stages[0].options.max_tokens", "integer"),
        ("  - name: recycle\n    options: {phase: sideways}\n", 7, "stages[0].options.phase", "instruction"),
        ("  - name: recycle\n    option: {}\n", 7, "stages[0].option", "unknown key"),
    ],
)
def test_bad_stage_names_key_and_line(tmp_path: Path, body: str, line: int, key: str, words: str) -> None:
    p = _write(tmp_path, BASE + body)
    with pytest.raises(UserError) as ei:
        load_pipeline(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}: {key}:"), msg
    assert words in msg


def test_missing_model_names_the_role(tmp_path: Path) -> None:
    p = _write(tmp_path, f"input: {ALPACA}\noutput: out\nmodels:\n  student: embedded\nstages:\n  - name: recycle\n")
    with pytest.raises(UserError) as ei:
        load_pipeline(p)
    assert f"{p}:6: stages[0].name:" in str(ei.value)
    assert "models.oracle is not defined" in str(ei.value)


def test_api_key_in_file_is_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, f"input: {ALPACA}\noutput: out\nmodels:\n  oracle:\n    model: gpt-4o\n"
                         "    base_url: http://localhost:1/v1\n    api_key: sk-secret\nstages:\n  - name: recycle\n")
    with pytest.raises(UserError) as ei:
        load_pipeline(p)
    assert f"{p}:7: models.oracle.api_key:" in str(ei.value)
    assert "sk-secret" not in str(ei.value)
    assert "api_key_env" in str(ei.value)


def test_missing_input_and_yaml_syntax(tmp_path: Path) -> None:
    p = _write(tmp_path, "output: out\nmodels: {oracle: embedded}\nstages: [recycle]\n")
    with pytest.raises(UserError, match=r":1: input: required key is missing"):
        load_pipeline(p)
    p = _write(tmp_path, BASE + "  - name: [recycle\n")
    with pytest.raises(UserError, match=r"p.yaml:\d+: invalid YAML"):
        load_pipeline(p)


def test_cli_exit_2_without_traceback(tmp_path: Path) -> None:
    p = _write(tmp_path, BASE + "  - name: recycle\n    options: {max_tokens: -3}\n")
    r = run_cli("run", str(p), "--dry-run")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{p}:7: stages[0].options.max_tokens:" in r.stderr


def test_dry_run_prints_plan_with_estimates(tmp_path: Path) -> None:
    from pipeline_helpers import recycle_stage, write_pipeline

    p = write_pipeline(tmp_path, recycle_stage("first", phase="all", max_tokens=100) + recycle_stage("second"), limit=3)
    r = run_cli("run", str(p), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "first" in r.stdout and "second" in r.stdout
    assert "~9 oracle calls" in r.stdout  # phase all: 3 calls per row, 3 rows
    assert "<=900 completion tokens" in r.stdout
    assert not (tmp_path / "out").exists()  # nothing ran
