"""Python API for selection: the same function ``reflectkit select`` calls."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from reflectkit.data.io import read_dataset
from reflectkit.engine.run import RunSummary, run_step
from reflectkit.errors import UserError
from reflectkit.select.funnel import Funnel
from reflectkit.select.step import SelectConfig, SelectStep, read_variant_files


@dataclass
class SelectSummary:
    """The engine's run summary plus the funnel (``funnel.format()`` prints it; ``funnel.to_dict()`` for JSON)."""

    run: RunSummary
    funnel: Funnel

    @property
    def rows_in(self) -> int:
        return self.funnel.rows_in

    @property
    def rows_out(self) -> int:
        return self.funnel.rows_out

    @property
    def exit_code(self) -> int:
        return self.run.exit_code


def select(
    inputs: Sequence[str | Path],
    output: str | Path | None,
    *,
    method: str = "selective",
    fraction: float | None = None,
    count: int | None = None,
    where: Sequence[str] | str | None = None,
    key: str = "ifd_loss",
    run_dir: str | Path | None = None,
    limit: int | None = None,
    progress: bool = False,
    restart: bool = False,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
) -> SelectSummary:
    """Select rows from scored data.

    ``method``: ``selective`` (Selective Reflection-Tuning, released-code rules; default), ``selective-paper``
    (paper text: winner of each phase, no ``< 1`` thresholds), ``cherry`` (drop IFD > 1, keep the top ``fraction``
    or ``count`` by ``key``, default ``ifd_loss`` as in Cherry LLM), ``filter`` (only the ``where`` filters).
    ``inputs``: one scored file (for ``selective*``: rows from ``recycle --phase all`` then ``score``), or four
    scored files aligned by ``reflectkit.id`` (by row position when the files carry no ids): original, instruction-, response-, both-reflected.
    ``where``: filters like ``"coherence >= 0.5"`` on ``reflectkit.score``, applied first, in order.

    >>> from reflectkit.select.api import select
    >>> s = select(["scored.jsonl"], "cherry.jsonl", method="cherry", fraction=0.1)  # doctest: +SKIP
    >>> print(s.funnel.format())  # doctest: +SKIP
    """
    paths = list(inputs)
    if len(paths) not in (1, 4):
        raise UserError(f"select takes one input file or four aligned files (original, instruction, response, both); got {len(paths)}")
    full = read_dataset(paths[0], format=format, mapping=mapping, require_output=False)
    ds = full.limit(limit)
    wheres = [where] if isinstance(where, str) else list(where or [])
    cfg = SelectConfig(method=method, fraction=fraction, count=count, where=wheres, key=key,
                       variant_files=[str(p) for p in paths[1:]])
    step = SelectStep(cfg, read_variant_files(paths[1:], format=format, mapping=mapping) if len(paths) == 4 else None)
    step.original_rows = full.n_rows
    summary = run_step(step, ds, output=Path(output) if output else None, run_dir=Path(run_dir) if run_dir else None,
                       progress=progress, restart=restart)
    assert step.funnel is not None
    return SelectSummary(summary, step.funnel)
