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

import inspect
from typing import Any

from reflectkit.engine.api import api_function
from reflectkit.synth.step import SynthStep

_synthesize = api_function(SynthStep)

#: keywords of this function that are other spellings of an option (``format`` is plumbing for other steps)
_ALIASES = {"format": "answer_format", "max_attempts": "attempts"}


def synthesize(*args: Any, **kwargs: Any) -> Any:
    for old, new in _ALIASES.items():
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"synthesize() got both {old!r} and {new!r}")
            kwargs[new] = kwargs.pop(old)
    return _synthesize(*args, **kwargs)


synthesize.__doc__ = _synthesize.__doc__
synthesize.__signature__ = inspect.signature(_synthesize)  # type: ignore[attr-defined]

__all__ = ["synthesize"]
