"""Python API for synthesis: the function ``reflectkit synthesize`` calls, derived from :class:`SynthStep`.

Verification statistics are in ``summary.manifest["synthesis"]`` (also ``summary.synthesis``: ``verification_rate``,
``attempts_per_verified``, ``oracle_calls_per_verified``); dropped rows and their reasons in
``summary.files["rejected"]``.

>>> from reflectkit.synth.api import synthesize
>>> s = synthesize("gsm8k_train.jsonl", "refl.jsonl", answer_field="answer", limit=20)  # doctest: +SKIP

``format`` is the answer format (``reflection`` or ``plain-cot``) and ``max_attempts`` the samples per row, as
in pipeline files (their option names are ``answer_format`` and ``attempts``, the CLI's ``--format`` and
``--attempts``); the record shape is ``shape``.
"""

from __future__ import annotations

from reflectkit.engine.api import api_function
from reflectkit.synth.step import SynthStep

synthesize = api_function(SynthStep)

__all__ = ["synthesize"]
