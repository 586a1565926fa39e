"""Deterministic perturbations used to build the labelled decontamination sets (no model, no randomness per run)."""

from __future__ import annotations

import random
import re

_NUM_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w])")


def change_numbers(text: str, seed: int) -> str:
    """Replace every number with a different one of similar size (a "number substitution" rephrase)."""
    rng = random.Random(seed)

    def repl(m: re.Match[str]) -> str:
        s = m.group(1)
        if "." in s:
            whole, frac = s.split(".")
            return f"{int(whole) + rng.randint(1, 9)}.{frac}"
        n = int(s)
        delta = rng.randint(1, max(2, n // 2 if n > 4 else 3))
        return str(n + delta)

    return _NUM_RE.sub(repl, text)
