"""Content hashes that decide whether a stage can be skipped: inputs + options + models + code version."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import reflectkit
from reflectkit.data.io import file_sha256

_PKG_ROOT = Path(reflectkit.__file__).resolve().parent
_CODE_SUFFIXES = (".py", ".txt", ".json", ".md", ".j2", ".yaml")


@functools.lru_cache(maxsize=None)
def code_version(packages: tuple[str, ...]) -> str:
    """reflectkit's version plus a hash of the source of ``packages`` and of the engine and data layers."""
    h = hashlib.sha256(reflectkit.__version__.encode())
    for pkg in sorted(set(packages) | {"engine", "data"}):
        root = _PKG_ROOT / pkg
        if not root.exists():
            continue
        for f in sorted(root.rglob("*")):
            if f.is_file() and f.suffix in _CODE_SUFFIXES and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(_PKG_ROOT)).encode())
                h.update(f.read_bytes())
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
