"""Prompt wrappers: verbatim copies of the published templates, and the student chat template option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflectkit.errors import UserError
from reflectkit.prompts import load_prompt_set
from reflectkit.scoring.wrappers import make_wrapper


def test_prompt_files_are_verbatim_copies_of_the_published_prompts(shared_data: Path) -> None:
    ref = json.loads((shared_data.parent / "reference" / "prompts.json").read_text())["student_prompts"]
    ps = load_prompt_set("scoring", "paper")
    for key in ("vicuna_no_input", "vicuna_input", "alpaca_no_input", "alpaca_input", "reverse_query"):
        assert ps[key] == ref[key]


def test_wrap_fills_once_and_reverse_query_is_wrapped_without_input() -> None:
    w = make_wrapper("vicuna")
    p = w.wrap("Echo {input}", "x {instruction}")
    assert p.endswith("USER: Echo {input}\nInput:\nx {instruction} ASSISTANT:")
    r = w.reverse("Paris.")
    assert "USER: Below is the response to an instruction, please guess the corresponding instruction for the given response.\nParis.\nGenerate the instruction for the above response. ASSISTANT:" in r
    assert make_wrapper("alpaca").wrap("Do it", "").endswith("### Instruction:\nDo it\n\n### Response:")


def test_chat_wrapper_uses_the_students_template(student_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(student_dir))
    p = make_wrapper("chat", tok).wrap("Name a color.", "")
    assert "Name a color." in p and p.rstrip().endswith("assistant")


def test_unknown_prompt_or_missing_chat_template() -> None:
    with pytest.raises(UserError, match="--prompt must be one of"):
        make_wrapper("llama")

    class NoTemplate:
        chat_template = None

    with pytest.raises(UserError, match="no chat template"):
        make_wrapper("chat", NoTemplate())
