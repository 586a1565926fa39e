"""Python API for recycling: the same function the CLI calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflectkit.data.io import read_dataset
from reflectkit.engine.run import RunSummary, run_step
from reflectkit.llm.cache import ResponseCache
from reflectkit.llm.factory import ModelSpec, build_chat_model
from reflectkit.recycle.step import RecycleConfig, RecycleStep


def recycle(
    input: str | Path,
    output: str | Path | None,
    *,
    phase: str = "response",
    oracle: ModelSpec | None = None,
    run_dir: str | Path | None = None,
    limit: int | None = None,
    concurrency: int = 8,
    max_tokens: int = 1024,
    structured: bool = False,
    prompt_set: str = "paper",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
    skip_bad_rows: bool = False,
    progress: bool = False,
    restart: bool = False,
) -> RunSummary:
    """Recycle a dataset with an oracle (Reflection-Tuning). Returns the run summary; see ``summary.manifest``.

    >>> from reflectkit.recycle.api import recycle
    >>> s = recycle("alpaca.json", "out.jsonl", phase="response", limit=20)  # doctest: +SKIP
    """
    ds = read_dataset(input, format=format, mapping=mapping, skip_bad_rows=skip_bad_rows).limit(limit)
    cache = ResponseCache(cache_dir) if use_cache else None
    model = build_chat_model(oracle or ModelSpec(), cache=cache, concurrency=concurrency)
    step = RecycleStep(model, RecycleConfig(phase=phase, max_tokens=max_tokens, structured=structured,  # type: ignore[arg-type]
                                            prompt_set=prompt_set))
    return run_step(step, ds, output=Path(output) if output else None, run_dir=Path(run_dir) if run_dir else None,
                    concurrency=concurrency, progress=progress, restart=restart)
