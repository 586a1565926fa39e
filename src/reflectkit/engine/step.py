"""What a recipe step is: a pure function of (record, models) -> RowResult."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from reflectkit.data.record import Record

FAILED = "failed"


@dataclass
class RowResult:
    """The outcome of one step on one row.

    ``status`` is step-specific (``rewritten``, ``kept_original``, ``scored``, ...) except ``failed``, which every
    step uses for rows that errored after retries; ``reason`` says why for anything but plain success.
    ``rk`` is stored under ``reflectkit.<step name>`` in the output row. ``instruction``/``input``/``output``
    replace the row's texts when set. ``drop`` removes the row from the output (it stays in the ledger and counts).
    """

    status: str
    reason: str | None = None
    rk: dict[str, Any] = field(default_factory=dict)
    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    drop: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "rk": self.rk,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "drop": self.drop,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RowResult":
        return cls(**d)

    @classmethod
    def failure(cls, reason: str, **rk: Any) -> "RowResult":
        return cls(status=FAILED, reason=reason, rk=rk)


@runtime_checkable
class Step(Protocol):
    """A recipe step. Implement ``process`` (per-row, async, may call models) or ``process_batch`` (batched, sync).

    ``config()`` returns the options that determine the output; it feeds the run fingerprint and the manifest.
    ``models()`` returns the models the step calls, by role (``oracle``, ``judge``, ...).
    """

    name: str

    def config(self) -> dict[str, Any]: ...


def estimate_tokens(text: str) -> int:
    """Rough token estimate used by ``--dry-run`` (about 4 characters per token for English)."""
    return max(1, len(text) // 4)
