"""code_version: which source edits re-run a pipeline stage and which do not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import reflectkit.pipeline.hashing as hashing
from reflectkit.pipeline.hashing import SHARED_CODE, code_version


@pytest.fixture
def pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the reflectkit source tree that code_version hashes instead of the installed one."""
    root = tmp_path / "reflectkit"
    shutil.copytree(hashing._PKG_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(hashing, "_PKG_ROOT", root)
    code_version.cache_clear()
    yield root
    code_version.cache_clear()


def _version(packages: tuple[str, ...]) -> str:
    code_version.cache_clear()
    return code_version(packages)


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


STAGE = ("synth", "prompts/synth")


@pytest.mark.parametrize("rel", [
    "student.py", "embed.py", "evalsets.py", "answers.py", "errors.py", "prompts/__init__.py",
    "llm/cache.py", "engine/run.py", "data/io.py",
])
def test_shared_modules_change_every_stage(pkg: Path, rel: str) -> None:
    assert (pkg / rel).is_file(), rel
    before = {p: _version(p) for p in [STAGE, ("recycle", "prompts/recycle"), ()]}
    _append(pkg / rel, "\n# edited\n")
    for p, v in before.items():
        assert _version(p) != v, (rel, p)


def test_own_package_and_prompt_files_change_only_that_stage(pkg: Path) -> None:
    synth, recycle = _version(STAGE), _version(("recycle", "prompts/recycle"))
    _append(pkg / "synth" / "step.py", "\n# edited\n")
    assert _version(STAGE) != synth
    assert _version(("recycle", "prompts/recycle")) == recycle
    synth = _version(STAGE)
    prompt = next((pkg / "prompts" / "synth").rglob("*.txt"))
    _append(prompt, " ")
    assert _version(STAGE) != synth
    assert _version(("recycle", "prompts/recycle")) == recycle


@pytest.mark.parametrize("rel", [
    "prompts/synth/paper/SOURCE.md", "synth/NOTES.md", "engine/README.md", "llm/notes.md",
])
def test_markdown_edits_do_not_change_the_version(pkg: Path, rel: str) -> None:
    before = _version(STAGE)
    _append(pkg / rel, "\nMore documentation.\n")
    assert _version(STAGE) == before


def test_single_file_entries_are_hashed(pkg: Path) -> None:
    (pkg / "extra_helper.py").write_text("X = 1\n")
    with_file = _version(("extra_helper.py",))
    without = _version(())
    assert with_file != without
    (pkg / "extra_helper.py").write_text("X = 2\n")
    assert _version(("extra_helper.py",)) != with_file
    assert _version(()) == without  # not named, not hashed


def test_shared_entries_exist_and_missing_entries_are_ignored(pkg: Path) -> None:
    for entry in SHARED_CODE:
        assert (pkg / entry).exists(), entry
    assert _version(("no_such_pkg", "nope.py")) == _version(())


def test_listing_a_shared_module_twice_changes_nothing(pkg: Path) -> None:
    assert _version(("embed.py", "llm", "engine")) == _version(())


def test_other_code_files_outside_the_stage_do_not_matter(pkg: Path) -> None:
    before = _version(STAGE)
    _append(pkg / "report" / "build.py", "\n# edited\n")
    assert _version(STAGE) == before


def test_version_prefix_is_the_package_version() -> None:
    import reflectkit

    code_version.cache_clear()
    assert code_version(STAGE).startswith(reflectkit.__version__ + "+")
