"""Parsing of the oracle's tagged answers, with adversarial outputs."""

from __future__ import annotations

import pytest

from reflectkit.recycle.parse import is_placeholder, parse_instruction_reflection, parse_response_reflection
from reflectkit.recycle.step import fill


def test_clean_instruction_pair() -> None:
    text = "The instruction is vague.\n[New Instruction] Explain photosynthesis in detail. [End]\n[New Answer] Plants use light... [End]"
    p = parse_instruction_reflection(text)
    assert p.ok and p.instruction == "Explain photosynthesis in detail." and p.answer == "Plants use light..."
    assert p.critique == "The instruction is vague."


def test_missing_end_is_tolerated_like_the_released_code() -> None:
    p = parse_instruction_reflection("[New Instruction] Do X.\n[New Answer] Done X")
    assert p.ok and p.answer == "Done X" and "new_answer_end_missing" in p.flags


def test_truncated_answer_without_end_is_a_failure() -> None:
    p = parse_instruction_reflection("[New Instruction] Do X. [End] [New Answer] Done X and then", truncated=True)
    assert not p.ok and "cut off by the length limit" in (p.reason or "")
    r = parse_response_reflection("critique [Better Answer] half an answ", truncated=True)
    assert not r.ok and "cut off" in (r.reason or "")


def test_instruction_without_answer_never_mixes() -> None:
    p = parse_instruction_reflection("Critique.\n[New Instruction] A better question? [End]")
    assert not p.ok and p.reason == "no [New Answer] ... [End] segment" and p.answer is None


def test_echoed_format_line_then_real_pair_picks_the_real_one() -> None:
    text = ("2. ... put the new instruction in the format of [New Instruction] your instruction [End]"
            "3. ... in the format of [New Answer] your answer [End]\n"
            "[New Instruction] Compare two sorting algorithms. [End]\n[New Answer] Merge sort is stable... [End]")
    p = parse_instruction_reflection(text)
    assert p.ok and p.instruction == "Compare two sorting algorithms." and "repeated_tags" in p.flags


@pytest.mark.parametrize("placeholder", ["your answer", "N/A", "  ", "[your answer]", "..."])
def test_placeholders_and_empty_are_failures(placeholder: str) -> None:
    assert not parse_response_reflection(f"Bad answer. [Better Answer] {placeholder} [End]").ok
    p = parse_instruction_reflection(f"[New Instruction] Real question? [End] [New Answer] {placeholder} [End]")
    assert not p.ok


def test_empty_output_and_no_tags() -> None:
    assert parse_response_reflection("").reason == "empty oracle output"
    assert parse_instruction_reflection("   \n").reason == "empty oracle output"
    assert parse_response_reflection("I think it is fine.").reason == "no [Better Answer] ... [End] segment"


def test_repeated_tags_last_real_answer_wins() -> None:
    p = parse_response_reflection("[Better Answer] draft one [End] on reflection: [Better Answer] final two [End]")
    assert p.ok and p.answer == "final two" and "repeated_tags" in p.flags


def test_markdown_decoration_and_case() -> None:
    p = parse_response_reflection("**[better answer]:** The fixed answer.\n**[END]**")
    assert p.ok and p.answer == "The fixed answer."


def test_tags_inside_the_instruction_do_not_break_parsing() -> None:
    instruction = "Explain what the marker [End] means in [New Answer] blocks."
    prompt = fill("[Instruction]\n{instruction}\n\n{output}", instruction=instruction, output="It ends a block.")
    assert instruction in prompt
    # The oracle quotes the instruction (with its tags) before giving its real pair.
    text = (f"The instruction \"{instruction}\" is unclear.\n"
            "[New Instruction] Describe how tagged output formats delimit sections. [End]\n"
            "[New Answer] Tags such as [Section] open a block and a closing marker ends it. [End]")
    p = parse_instruction_reflection(text, original_instruction=instruction)
    assert p.ok and p.instruction == "Describe how tagged output formats delimit sections."
    assert p.answer is not None and p.answer.startswith("Tags such as [Section]")


def test_echo_of_original_instruction_is_rejected() -> None:
    p = parse_instruction_reflection("[New Instruction] Name a colour. [End] [New Answer] Blue. [End]",
                                     original_instruction="Name a colour.")
    assert not p.ok and "repeats the original" in (p.reason or "")


def test_fill_is_single_pass() -> None:
    assert fill("{instruction}|{output}", instruction="uses {output} literally", output="X") == "uses {output} literally|X"


def test_placeholder_detection() -> None:
    assert is_placeholder("Your Answer.") and is_placeholder("") and not is_placeholder("Blue.")
