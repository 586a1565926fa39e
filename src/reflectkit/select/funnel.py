"""The selection funnel: rows in, what each stage kept or dropped and why, rows out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stage:
    name: str
    rows_in: int
    outcomes: Counter[str] = field(default_factory=Counter)  # rule -> rows
    reasons: dict[str, str] = field(default_factory=dict)  # rule -> an example reason

    @property
    def dropped(self) -> int:
        return sum(n for r, n in self.outcomes.items() if not r.startswith("kept") and r != "pass")

    @property
    def rows_out(self) -> int:
        return self.rows_in - self.dropped


@dataclass
class Funnel:
    method: str
    rows_in: int
    stages: list[Stage] = field(default_factory=list)

    @property
    def rows_out(self) -> int:
        return self.stages[-1].rows_out if self.stages else self.rows_in

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "stages": [{"name": s.name, "rows_in": s.rows_in, "rows_out": s.rows_out, "outcomes": dict(sorted(s.outcomes.items())),
                        "reasons": dict(sorted(s.reasons.items()))} for s in self.stages],
        }

    def format(self) -> str:
        lines = [f"select ({self.method}): {self.rows_in} rows in"]
        for s in self.stages:
            lines.append(f"  {s.name}: {s.rows_in} in -> {s.rows_out} out")
            for rule, n in sorted(s.outcomes.items(), key=lambda kv: (not kv[0].startswith("kept"), kv[0])):
                if rule == "pass":
                    continue
                sign = "+" if rule.startswith("kept") else "-"
                lines.append(f"    {sign}{n:<7d} {rule:<26s} {s.reasons.get(rule, '')}")
        lines.append(f"  rows out: {self.rows_out}")
        return "\n".join(lines)
