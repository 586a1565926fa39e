"""Prompt wrappers for student scoring (``--prompt vicuna|alpaca|chat``).

``vicuna`` (default) and ``alpaca`` are the verbatim templates of tianyi-lab/Reflection_Tuning
``selection_code/data_analysis.py`` (``PROMPT_DICT_VICUNA`` / ``PROMPT_DICT_ALPACA``), stored in
``prompts/scoring/paper/``. ``chat`` uses the student's own chat template (an extension, not in the papers): the
user turn is the instruction (``instruction + "\\nInput:\\n" + input`` when there is an input) and the generation
prompt is added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reflectkit.errors import UserError
from reflectkit.prompts import PromptSet, load_prompt_set

PROMPTS = ("vicuna", "alpaca", "chat")
_PLACEHOLDER_RE = re.compile(r"\{(instruction|input|output)\}")


def fill(template: str, **values: str) -> str:
    """Fill placeholders in one pass (same result as the reference's ``str.format_map`` on these templates)."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass
class Wrapper:
    """Builds the student-side texts: the wrapped prompt and the reverse query."""

    name: str
    prompt_set: PromptSet
    tokenizer: Any = None  # only for ``chat``

    def wrap(self, instruction: str, input: str) -> str:
        """The prompt for ``instruction`` (+ ``input``), to which the response is appended directly."""
        if self.name == "chat":
            content = f"{instruction}\nInput:\n{input}" if input else instruction
            return str(self.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                          add_generation_prompt=True))
        if input:
            return fill(self.prompt_set[f"{self.name}_input"], instruction=instruction, input=input)
        return fill(self.prompt_set[f"{self.name}_no_input"], instruction=instruction)

    def reverse(self, output: str) -> str:
        """The reverse query for ``output``, wrapped as an instruction without input (as in the reference)."""
        return self.wrap(fill(self.prompt_set["reverse_query"], output=output), "")


def make_wrapper(name: str, tokenizer: Any = None) -> Wrapper:
    if name not in PROMPTS:
        raise UserError(f"--prompt must be one of {', '.join(PROMPTS)}, got {name!r}")
    if name == "chat" and not getattr(tokenizer, "chat_template", None):
        raise UserError("--prompt chat: the student's tokenizer has no chat template; use --prompt vicuna or alpaca")
    return Wrapper(name, load_prompt_set("scoring", "paper"), tokenizer)
