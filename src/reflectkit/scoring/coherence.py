"""Coherence of an instruction and its response: cosine similarity of all-MiniLM-L6-v2 sentence embeddings.

Its own module so that endpoint scoring (no local student) does not import torch through the scorer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

Triple = tuple[str, str, str]


def coherences(triples: Sequence[Triple], *, enabled: bool = True, cache_dir: Path | None = None) -> list[float | None]:
    """Cosine similarity of the embeddings of instruction(+"\\n"+input) and response, per triple (None when off)."""
    if not enabled or not triples:
        return [None] * len(triples)
    import numpy as np

    from reflectkit.embed import encode

    ins = [f"{i}\n{x}" if x else i for i, x, _ in triples]
    emb = encode(ins + [o for _, _, o in triples], cache_dir=cache_dir)
    a, b = emb[: len(triples)], emb[len(triples):]
    return [float(v) for v in np.sum(a * b, axis=1)]
