"""Versioned prompt files.

Prompts live in text files under ``prompts/<recipe>/<set>/``; the ``paper`` set of each recipe holds the
published prompts verbatim (with their source in the set's ``SOURCE.md``). A prompt set's version is the sha256 of
its files, recorded in every manifest and mixed into every cache key. Users can pass their own directory as a set.
"""

from __future__ import annotations

import hashlib
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


def load_prompt_set(recipe: str, name: str = "paper") -> PromptSet:
    """Load a built-in set by name, or a user directory of ``*.txt`` files by path."""
    candidate = Path(name)
    if candidate.is_dir():
        path = candidate
    else:
        path = PROMPTS_DIR / recipe / name
        if not path.is_dir():
            raise UserError(
                f"unknown prompt set {name!r} for {recipe}; built-in sets: {', '.join(available_sets(recipe)) or 'none'}"
                " (or give a directory of .txt files)"
            )
    texts: dict[str, str] = {}
    h = hashlib.sha256()
    for f in sorted(path.glob("*.txt")):
        text = f.read_text(encoding="utf-8")
        texts[f.stem] = text
        h.update(f.name.encode() + b"\0" + text.encode("utf-8") + b"\0")
    if not texts:
        raise UserError(f"prompt set directory {path} contains no .txt prompt files")
    return PromptSet(recipe, name if not candidate.is_dir() else str(path), path, texts, h.hexdigest())
