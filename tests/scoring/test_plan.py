"""The four token sequences of ``build_plans`` against the reference's own tokenization (no model needed).

The equivalence test covers the default student, whose tokenizer adds no special tokens. Here a tokenizer that adds
a BOS token exercises the other branch (``encode(truncation=True)`` instead of slicing), with truncation, and rows
where ``rfind`` finds the instruction or the output a second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reference import PROMPT_DICT_VICUNA
from reflectkit.scoring.plan import PARTS, Tokenize, build_plans
from reflectkit.scoring.wrappers import make_wrapper

ROWS = [
    ("Name a color.", "", "Blue."),
    ("Echo", "Echo Echo", "Echo"),
    ("Summarize the text.", "The quick brown fox jumps over the lazy dog. " * 6, "A fox jumps over a dog."),
    ("Say it twice", "", "ASSISTANT: twice ASSISTANT: twice"),
]


def reference_sequences(tok: Any, row: tuple[str, str, str], L: int) -> dict[str, tuple[list[int], int]]:
    """(ids, first label position) of each pass, computed the way data_analysis.py computes them."""
    ins, inp, out = row
    prompt = (PROMPT_DICT_VICUNA["prompt_input"] if inp else PROMPT_DICT_VICUNA["prompt_no_input"]).format_map(
        {"instruction": ins, "input": inp})
    rev = PROMPT_DICT_VICUNA["prompt_no_input"].format_map({"instruction": (
        "Below is the response to an instruction, please guess the corresponding instruction for the given response.\n"
        + out + "\nGenerate the instruction for the above response.")})
    enc = lambda t, m: tok.encode(t, truncation=True, max_length=m)  # noqa: E731
    ins_len, rev_len = len(enc(prompt, L)), len(enc(rev, L))
    whole, whole_rev = prompt + out, rev + ins + inp
    return {
        "ins_alone": (enc(ins + inp, L - rev_len + 1), 0),
        "out_alone": (enc(out, L - ins_len + 1), 0),
        "ins_condition": (enc(whole_rev, L), len(tok.encode(whole_rev[: whole_rev.rfind(ins)]))),
        "out_condition": (enc(whole, L), len(tok.encode(whole[: whole.rfind(out)]))),
    }


@pytest.fixture(scope="module")
def bos_tokenizer(student_dir: Path) -> Any:
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(student_dir))
    bos = tok.convert_ids_to_tokens(0)
    tok._tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, 0)])
    assert tok.encode("hi")[0] == 0, "the tokenizer should now add a BOS token"
    return tok


@pytest.mark.parametrize("max_length", [2048, 60, 30])
def test_sequences_match_the_reference_with_a_bos_tokenizer(bos_tokenizer: Any, max_length: int) -> None:
    tokenize = Tokenize(bos_tokenizer)
    assert not tokenize.slice_ok  # the encode(truncation=True) branch
    plans = build_plans(ROWS, make_wrapper("vicuna"), tokenize, max_length)
    truncated = 0
    for row, plan in zip(ROWS, plans):
        ref = reference_sequences(bos_tokenizer, row, max_length)
        for part in PARTS:
            seq = plan.seqs[part]
            assert (seq.ids, seq.start) == ref[part], (row, part)
            truncated += seq.truncated
    assert (truncated > 0) == (max_length < 2048)


def test_sequences_match_the_reference_with_the_default_tokenizer(student_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(student_dir))
    tokenize = Tokenize(tok)
    assert tokenize.slice_ok
    for L in (2048, 40):
        for row, plan in zip(ROWS, build_plans(ROWS, make_wrapper("vicuna"), tokenize, L)):
            ref = reference_sequences(tok, row, L)
            assert {p: (plan.seqs[p].ids, plan.seqs[p].start) for p in PARTS} == ref
