"""Python API for decontamination: the function ``reflectkit decontaminate`` calls, derived from
:class:`~reflectkit.decontam.step.DecontamStep` (plus the old positional order: train, against, output).

>>> from reflectkit.decontam.api import decontaminate
>>> s = decontaminate("train.jsonl", ["gsm8k", "ifeval"], "clean.jsonl")  # doctest: +SKIP
>>> s.counts, s.report_md, s.per_benchmark  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflectkit.decontam.benchmarks import format_bench_map
from reflectkit.decontam.step import DecontamOptions, DecontamStep, report_prefix
from reflectkit.engine.api import api_function
from reflectkit.engine.run import RunSummary
from reflectkit.errors import UserError

_decontaminate = api_function(DecontamStep)


def decontaminate(train: str | Path, against: list[str] | str | None = None, output: str | Path | None = None, *,
                  bench_mapping: dict[str, str] | None = None, judge_model: Any = None, **kwargs: Any) -> Any:
    """Remove (or with ``mark_only`` mark) training rows that overlap the ``against`` benchmarks.

    ``against``: built-in names (``gsm8k``, ``ifeval``, ``vicuna``, ``koala``, ``wizardlm``, ``sinstruct``,
    ``lima``, ``all``) or benchmark files (fields renamed with ``bench_map="question=prompt,answer=solution"`` or
    ``bench_mapping={"question": "prompt"}``). ``judge``: the LLM judge's spec (default: the embedded model);
    ``judge_model`` passes a ready client instead. Every other keyword is an option of
    :class:`~reflectkit.decontam.step.DecontamOptions` or the engine's plumbing (``run_dir``, ``limit``,
    ``cache_dir``, ``use_cache``, ``mapping``, ...). Returns the :class:`~reflectkit.engine.run.RunSummary`
    (``s.per_benchmark``, ``s.threshold``, ``s.judge_calls``, ``s.report_md``, ``s.report_jsonl``).
    """
    if against is not None:
        kwargs["against"] = [str(against)] if isinstance(against, (str, Path)) else [str(a) for a in against]
    if bench_mapping is not None:
        kwargs["bench_map"] = format_bench_map(bench_mapping)
    if judge_model is not None:
        kwargs["clients"] = {**(kwargs.get("clients") or {}), "judge": judge_model}
    if output is not None and Path(output).resolve() == Path(train).resolve():
        raise UserError(f"-o {output}: the output would overwrite the training file")
    return _decontaminate(train, output, **kwargs)


__all__ = ["decontaminate", "DecontamStep", "DecontamOptions", "RunSummary", "report_prefix"]
