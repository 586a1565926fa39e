"""Python API for selection: the function ``reflectkit select`` calls, derived from :class:`SelectStep`.

>>> from reflectkit.select.api import select
>>> s = select(["scored.jsonl"], "cherry.jsonl", method="cherry", fraction=0.1)  # doctest: +SKIP
>>> print(s.funnel.format())  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

from reflectkit.engine.api import api_function
from reflectkit.engine.run import RunSummary
from reflectkit.select.step import SelectStep, input_count_error

_select = api_function(SelectStep)


def select(inputs: Sequence[str | Path] | str | Path, output: str | Path | None = None, **kwargs: Any) -> RunSummary:
    """Select rows from scored data; returns the run summary (``s.funnel.format()`` prints the funnel,
    ``s.funnel.to_dict()`` for JSON, ``s.dropped`` is the dropped rows' file).

    ``inputs``: one scored file (for ``selective*``: rows from ``recycle --phase all`` then ``score``), or four
    scored files aligned by ``reflectkit.id`` (by row position when the files carry no ids): original,
    instruction-, response-, both-reflected. The other keywords are :class:`SelectOptions` (``method``,
    ``fraction``, ``count``, ``where`` (a string or a list), ``key``, ``funnel_json``) and the run plumbing
    (``run_dir``, ``limit``, ``progress``, ``restart``, ``format``, ``mapping``, ...).
    """
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if len(paths) not in (1, 4):
        raise input_count_error(len(paths))
    if len(paths) == 4:
        if kwargs.get("variant_files"):
            raise TypeError("select() takes the variant files either as inputs[1:] or as variant_files, not both")
        kwargs["variant_files"] = [str(p) for p in paths[1:]]
    return _select(paths[0], output, **kwargs)


_sig = inspect.signature(_select)
select.__signature__ = _sig.replace(parameters=[  # type: ignore[attr-defined]
    inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    *[p for name, p in _sig.parameters.items() if name != "input"],
])

__all__ = ["select"]
