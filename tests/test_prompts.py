"""load_prompt_set: built-in names always mean the built-in set; user directories are given as paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflectkit.errors import UserError
from reflectkit.prompts import PROMPTS_DIR, available_sets, load_prompt_set


def _user_set(d: Path, text: str = "my prompt {x}") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "reflection.system.txt").write_text(text, encoding="utf-8")
    return d


def test_builtin_name_is_not_shadowed_by_a_directory_in_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "paper" in available_sets("synth")
    _user_set(tmp_path / "paper", "shadow")
    monkeypatch.chdir(tmp_path)
    ps = load_prompt_set("synth", "paper")
    assert ps.path == PROMPTS_DIR / "synth" / "paper"
    assert ps.name == "paper"
    assert ps["reflection.system"] != "shadow"
    assert ps["reflection.system"] == (PROMPTS_DIR / "synth" / "paper" / "reflection.system.txt").read_text(encoding="utf-8")


def test_dot_path_selects_the_user_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _user_set(tmp_path / "paper", "shadow")
    monkeypatch.chdir(tmp_path)
    ps = load_prompt_set("synth", "./paper")
    assert ps.path.resolve() == (tmp_path / "paper").resolve()
    assert ps.texts == {"reflection.system": "shadow"}
    assert ps.sha256 != load_prompt_set("synth", "paper").sha256


def test_absolute_and_home_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _user_set(tmp_path / "mine")
    assert load_prompt_set("synth", str(d)).texts == {"reflection.system": "my prompt {x}"}
    monkeypatch.setenv("HOME", str(tmp_path))
    ps = load_prompt_set("synth", "~/mine")
    assert ps.path == d and ps.texts == {"reflection.system": "my prompt {x}"}


def test_relative_path_with_separator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _user_set(tmp_path / "sets" / "paper", "nested")
    monkeypatch.chdir(tmp_path)
    assert load_prompt_set("synth", "sets/paper").texts == {"reflection.system": "nested"}


def test_bare_name_that_is_not_builtin_may_be_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _user_set(tmp_path / "custom", "custom text")
    monkeypatch.chdir(tmp_path)
    assert "custom" not in available_sets("synth")
    ps = load_prompt_set("synth", "custom")
    assert ps.texts == {"reflection.system": "custom text"}


def test_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"unknown prompt set 'nosuch' for synth; built-in sets: .*paper"):
        load_prompt_set("synth", "nosuch")
    with pytest.raises(UserError, match="prompt set directory .*missing not found"):
        load_prompt_set("synth", "./missing")
    (tmp_path / "afile.txt").write_text("x")
    with pytest.raises(UserError, match="is not a directory"):
        load_prompt_set("synth", "./afile.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="contains no .txt prompt files"):
        load_prompt_set("synth", "./empty")


def test_builtin_sets_of_every_recipe_load() -> None:
    for recipe in sorted(p.name for p in PROMPTS_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"):
        for name in available_sets(recipe):
            ps = load_prompt_set(recipe, name)
            assert ps.texts and ps.version.startswith(f"{recipe}/{name}@")
