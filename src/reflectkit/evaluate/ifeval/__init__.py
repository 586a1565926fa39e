"""IFEval scoring (Zhou et al., 2023), faithful to google-research's ``instruction_following_eval``.

* :func:`evaluate_responses` scores response rows: prompt- and instruction-level accuracy, strict and loose,
  per prompt and per instruction type.
* :func:`load_responses` reads a responses file (upstream ``prompt``/``response`` JSONL, or ``reflectkit generate``
  output).
* :data:`INSTRUCTION_DICT` maps the 25 instruction ids to their checkers.

How each piece maps to the upstream sources, and the few deviations, are in ``docs/ifeval.md``.
"""

from __future__ import annotations

from reflectkit.evaluate.ifeval.instructions import INSTRUCTION_DICT, Instruction, InstructionArgsError, build_instruction
from reflectkit.evaluate.ifeval.scoring import (
    InputExample,
    OutputExample,
    evaluate_responses,
    instruction_following_loose,
    instruction_following_strict,
    load_responses,
    loose_variants,
    read_prompt_list,
)

__all__ = [
    "INSTRUCTION_DICT",
    "InputExample",
    "Instruction",
    "InstructionArgsError",
    "OutputExample",
    "build_instruction",
    "evaluate_responses",
    "instruction_following_loose",
    "instruction_following_strict",
    "load_responses",
    "loose_variants",
    "read_prompt_list",
]
