"""The Record: one training example in a shape-independent form."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: Key under which reflectkit stores its own fields in every output row.
RK_KEY = "reflectkit"


def content_hash(instruction: str, input: str, output: str) -> str:
    payload = json.dumps([instruction, input, output], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def row_id(index: int, instruction: str, input: str, output: str) -> str:
    """Stable row id: position plus a content hash (``000042-1a2b3c4d5e6f``)."""
    return f"{index:06d}-{content_hash(instruction, input, output)[:12]}"


@dataclass
class Record:
    """One (instruction, input, output) example.

    ``raw`` is the row exactly as read (used to write the output back in the input's shape);
    ``shape`` is ``alpaca``, ``messages`` or ``sharegpt``; ``meta`` is what earlier reflectkit stages
    stored under the ``reflectkit`` key of the row (read back when stages are chained).
    """

    id: str
    index: int
    instruction: str
    input: str = ""
    output: str = ""
    system: str = ""
    shape: str = "alpaca"
    raw: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    turns: int = 1  # number of user/assistant exchanges in chat shapes
    extra: dict[str, Any] = field(default_factory=dict)  # unmapped fields (e.g. a reference answer)

    @property
    def prompt_text(self) -> str:
        """Instruction plus input, as the papers measure "instruction length"."""
        return f"{self.instruction}\n{self.input}" if self.input else self.instruction
