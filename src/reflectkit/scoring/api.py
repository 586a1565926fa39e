"""Python API for scoring: the function ``reflectkit score`` calls, derived from :class:`ScoreStep`.

Scores go under ``reflectkit.score`` of each output row; with ``recycle --phase all`` inputs, each variant's scores
go under ``reflectkit.score.variants.<name>`` (``variants=None`` or ``"all"``: all present; a list or
``"original,both"``: only those; ``[]`` or ``"none"``: none). ``threads`` sets torch's (process-wide) CPU thread
count; on a busy machine 1 is often fastest. Resumable: re-running with the same arguments continues where a
killed run stopped.

>>> from reflectkit.scoring.api import score
>>> s = score("alpaca.json", "scored.jsonl", limit=20)  # doctest: +SKIP
"""

from __future__ import annotations

from reflectkit.engine.api import api_function
from reflectkit.scoring.step import DEFAULT_BATCH_SIZE, ScoreStep

score = api_function(ScoreStep)

__all__ = ["score", "DEFAULT_BATCH_SIZE"]
