"""The run engine: concurrency, ledger (exact resume), progress and manifest around a recipe Step."""

from reflectkit.engine.run import Run, RunSummary, run_step, default_run_dir
from reflectkit.engine.step import FAILED, RowResult, Step, estimate_tokens
from reflectkit.engine.ledger import Ledger

__all__ = ["Run", "RunSummary", "run_step", "default_run_dir", "FAILED", "RowResult", "Step", "estimate_tokens", "Ledger"]
