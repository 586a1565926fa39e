"""Reflection-Tuning data recycling (Li et al., 2023)."""

from reflectkit.recycle.parse import ParseResult, parse_instruction_reflection, parse_response_reflection
from reflectkit.recycle.step import KEPT, REWRITTEN, RecycleOptions, RecycleStep

__all__ = [
    "ParseResult",
    "parse_instruction_reflection",
    "parse_response_reflection",
    "RecycleOptions",
    "RecycleStep",
    "REWRITTEN",
    "KEPT",
]
