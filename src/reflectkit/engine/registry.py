"""The step registry: every recipe by name, built-in or from another package.

Built-in steps and third-party ones are found the same way, through the entry-point group ``reflectkit.steps``
(``name = "package.module:StepClass"``), so a package can add a step with no change to reflectkit. The CLI
commands, the Python API functions and the pipeline stage kinds are all derived from what is registered here.
"""

from __future__ import annotations

import functools
import os
import sys
from importlib import metadata
from typing import Any

from reflectkit.engine.step import Step
from reflectkit.errors import UserError

GROUP = "reflectkit.steps"

def _load(target: str) -> type[Step[Any]]:
    module, _, attr = target.partition(":")
    mod = __import__(module, fromlist=[attr])
    cls = getattr(mod, attr)
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        raise TypeError(f"{target} is not a reflectkit Step class")
    return cls


@functools.lru_cache(maxsize=1)
def _discover() -> tuple[dict[str, str], frozenset[str]]:
    """(name -> "module:Class", names that reflectkit itself ships). reflectkit's own steps win a name clash."""
    found: dict[str, str] = {}
    builtin: set[str] = set()
    for ep in metadata.entry_points(group=GROUP):
        ours = ep.dist is not None and ep.dist.name == "reflectkit"
        if ours:
            builtin.add(ep.name)
        if ours or ep.name not in found:
            found[ep.name] = ep.value
    return found, frozenset(builtin)


def _targets() -> dict[str, str]:
    return _discover()[0]


def names() -> list[str]:
    return sorted(_targets())


def get(name: str) -> type[Step[Any]]:
    """The step class registered under ``name`` (UserError listing the known names otherwise)."""
    targets = _targets()
    if name not in targets:
        raise UserError(f"unknown step {name!r}; registered steps: {', '.join(sorted(targets))}")
    return _cached(name, targets[name])


@functools.lru_cache(maxsize=None)
def _cached(name: str, target: str) -> type[Step[Any]]:
    cls = _load(target)
    if cls.name != name:
        raise TypeError(f"entry point {name!r} -> {target} registers a step named {cls.name!r}")
    return cls


def all_steps() -> dict[str, type[Step[Any]]]:
    """Every registered step, by name. A third-party step that fails to import is reported, not fatal."""
    out: dict[str, type[Step[Any]]] = {}
    for name in names():
        try:
            out[name] = get(name)
        except Exception as exc:  # a broken plugin must not take the built-in commands down
            if name in _discover()[1] and os.environ.get("REFLECTKIT_STRICT_STEPS") == "1":
                raise
            print(f"warning: step {name!r} ({_targets()[name]}) could not be loaded: {exc}", file=sys.stderr)
    return out


def refresh() -> None:
    """Forget what was discovered (after a package was installed in this process, e.g. in tests)."""
    _discover.cache_clear()
    _cached.cache_clear()
