"""Content hashes that decide whether a stage can be skipped: inputs + options + models + code version."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import reflectkit
from reflectkit.data.io import file_sha256

_PKG_ROOT = Path(reflectkit.__file__).resolve().parent
# Files whose content changes what a stage computes. Documentation (.md, e.g. a prompt set's SOURCE.md) is left
# out on purpose: editing it must not re-run stages.
_CODE_SUFFIXES = (".py", ".txt", ".json", ".j2", ".yaml")
# What every stage depends on, whatever its own ``code`` says: the engine, the data layer, the LLM clients and
# response cache, the student and embedding loaders, eval sets, answer extraction, errors and the prompt loader.
SHARED_CODE = (
    "engine",
    "data",
    "llm",
    "student.py",
    "embed.py",
    "evalsets.py",
    "answers.py",
    "errors.py",
    "prompts/__init__.py",
)


def _code_files(root: Path, entries: Iterable[str]) -> list[Path]:
    """The code files under ``root`` named by ``entries``: package directories (recursively) or single files."""
    files: set[Path] = set()
    for entry in entries:
        p = root / entry
        if p.is_dir():
            files.update(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        elif p.is_file():
            files.add(p)
    return sorted(f for f in files if f.suffix in _CODE_SUFFIXES)


@functools.lru_cache(maxsize=None)
def code_version(packages: tuple[str, ...]) -> str:
    """reflectkit's version plus a hash of the source a stage depends on.

    ``packages`` are paths relative to the ``reflectkit`` package: directories (``"synth"``, ``"prompts/synth"``)
    or single files (``"embed.py"``). :data:`SHARED_CODE` is always included. Only code and prompt files count
    (``.py``, ``.txt``, ``.json``, ``.j2``, ``.yaml``); documentation such as ``.md`` does not. Entries that do not
    exist are ignored.
    """
    h = hashlib.sha256(reflectkit.__version__.encode())
    for f in _code_files(_PKG_ROOT, (*SHARED_CODE, *packages)):
        h.update(f.relative_to(_PKG_ROOT).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return f"{reflectkit.__version__}+{h.hexdigest()[:16]}"


@functools.lru_cache(maxsize=256)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def data_hash(path: Path) -> str:
    """sha256 of a file (memoised on path, mtime and size)."""
    st = path.stat()
    return _file_hash(str(path), st.st_mtime_ns, st.st_size)


def stage_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
