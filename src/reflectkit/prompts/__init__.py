"""Versioned prompt files.

Prompts live in text files under ``prompts/<recipe>/<set>/``; the ``paper`` set of each recipe holds the
published prompts verbatim (with their source in the set's ``SOURCE.md``). A prompt set's version is the sha256 of
its files, recorded in every manifest and mixed into every cache key. Users can pass their own directory as a set.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from reflectkit.errors import UserError

PROMPTS_DIR = Path(__file__).parent


@dataclass(frozen=True)
class PromptSet:
    recipe: str
    name: str
    path: Path
    texts: dict[str, str]
    sha256: str

    def __getitem__(self, key: str) -> str:
        try:
            return self.texts[key]
        except KeyError:
            raise UserError(
                f"prompt set {self.name!r} ({self.path}) has no prompt {key}.txt; it has: {', '.join(sorted(self.texts))}"
            ) from None

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.texts.get(key, default)

    @property
    def version(self) -> str:
        return f"{self.recipe}/{self.name}@{self.sha256[:16]}"


def available_sets(recipe: str) -> list[str]:
    d = PROMPTS_DIR / recipe
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def _is_path_like(name: str) -> bool:
    """True when ``name`` is written as a path (``./x``, ``~/x``, ``a/b``, ``/abs``), not as a bare set name."""
    seps = tuple(s for s in (os.sep, os.altsep, "/") if s)
    return any(sep in name for sep in seps) or name.startswith((".", "~")) or Path(name).is_absolute()


def load_prompt_set(recipe: str, name: str = "paper") -> PromptSet:
    """Load a built-in set by name, or a user directory of ``*.txt`` files by path.

    A bare name that is a built-in set of ``recipe`` always means the built-in set, even when a directory of that
    name exists in the current directory (give ``./paper`` to use that one). A name written as a path (with a
    separator, or starting with ``.`` or ``~``, or absolute) is always a user directory. A bare name that is not
    built-in is used as a directory if one exists.
    """
    builtin = PROMPTS_DIR / recipe / name
    if not _is_path_like(name) and name in available_sets(recipe):
        path, label = builtin, name
    else:
        candidate = Path(name).expanduser()
        if candidate.is_dir():
            path, label = candidate, str(candidate)
        elif _is_path_like(name):
            what = "is not a directory" if candidate.exists() else "not found"
            raise UserError(f"prompt set directory {candidate} {what} (give a directory of .txt prompt files)")
        else:
            raise UserError(
                f"unknown prompt set {name!r} for {recipe}; built-in sets: {', '.join(available_sets(recipe)) or 'none'}"
                " (or give a directory of .txt files as a path, e.g. ./my-prompts)"
            )
    texts: dict[str, str] = {}
    h = hashlib.sha256()
    for f in sorted(path.glob("*.txt")):
        text = f.read_text(encoding="utf-8")
        texts[f.stem] = text
        h.update(f.name.encode() + b"\0" + text.encode("utf-8") + b"\0")
    if not texts:
        raise UserError(f"prompt set directory {path} contains no .txt prompt files")
    return PromptSet(recipe, label, path, texts, h.hexdigest())
