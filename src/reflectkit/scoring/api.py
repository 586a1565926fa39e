"""Python API for scoring: the same function ``reflectkit score`` calls."""

from __future__ import annotations

from pathlib import Path

from reflectkit.data.io import read_dataset
from reflectkit.engine.run import RunSummary, run_step
from reflectkit.scoring.step import ScoreConfig, ScoreStep

DEFAULT_BATCH_SIZE = 32


def score(
    input: str | Path,
    output: str | Path | None,
    *,
    student: str = "embedded",
    run_dir: str | Path | None = None,
    limit: int | None = None,
    max_length: int = 2048,
    prompt: str = "vicuna",
    batch_size: int = DEFAULT_BATCH_SIZE,
    token_budget: int = 4096,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    coherence: bool = True,
    progress: bool = False,
    restart: bool = False,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
    variants: list[str] | None = None,
    skip_bad_rows: bool = False,
    threads: int | None = None,
) -> RunSummary:
    """Score every row with a student model (IFD, r-IFD, perplexities, coherence, gzip ratio).

    Scores go under ``reflectkit.score`` of each output row; with ``recycle --phase all`` inputs, each variant's
    scores go under ``reflectkit.score.variants.<name>`` (``variants=None``: all present; a list: only those;
    ``[]``: none). ``threads`` sets torch's (process-wide) CPU thread count; on a busy machine 1 is often fastest.
    Resumable: re-running with the same arguments continues where a killed run stopped.

    >>> from reflectkit.scoring.api import score
    >>> s = score("alpaca.json", "scored.jsonl", limit=20)  # doctest: +SKIP
    """
    if threads:  # process-wide: torch has one intra-op pool
        import torch

        torch.set_num_threads(threads)
    ds = read_dataset(input, format=format, mapping=mapping, skip_bad_rows=skip_bad_rows).limit(limit)
    if batch_size < 1:
        from reflectkit.errors import UserError

        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    step = ScoreStep(ScoreConfig(student=student, prompt=prompt, max_length=max_length, variants=variants,
                                 coherence=coherence),
                     cache_dir=Path(cache_dir) if cache_dir else None, device=device, batch_size=batch_size,
                     token_budget=token_budget)
    return run_step(step, ds, output=Path(output) if output else None, run_dir=Path(run_dir) if run_dir else None,
                    progress=progress, restart=restart)
