"""The IFEval instruction checkers, ported from upstream ``instruction_following_eval/instructions.py``.

Upstream: google-research/google-research, ``instruction_following_eval/instructions.py`` (class names kept).
Each ``check_following`` is the upstream method body, statement for statement. The constructor takes the keyword
arguments of upstream ``build_description`` and applies the same normalisation (``.strip()``, ``.lower()``,
``sorted``, ``set``). Where upstream would draw a *random* value (an argument missing or out of range, which
never happens with the published input data), the checker raises :class:`InstructionArgsError` instead, so a
score never depends on chance.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any, ClassVar, Sequence

from reflectkit.evaluate.ifeval import text as instructions_util
from reflectkit.evaluate.ifeval.text import LanguageUndetectable

# The relational operation for comparison (upstream ``_COMPARISON_RELATION``).
_COMPARISON_RELATION = ("less than", "at least")

# The options of constrained response (upstream ``_CONSTRAINED_RESPONSE_OPTIONS``).
_CONSTRAINED_RESPONSE_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


class InstructionArgsError(ValueError):
    """Instruction arguments that upstream would reject, or replace with a random draw."""


def _relation(name: str, value: Any, instruction_id: str) -> str:
    if value is None:
        raise InstructionArgsError(f"{instruction_id}: missing {name!r} (upstream would pick one at random)")
    if value not in _COMPARISON_RELATION:
        raise InstructionArgsError(
            f"{instruction_id}: the supported relation for comparison must be in {_COMPARISON_RELATION}, "
            f"but {value} is given.")
    return str(value)


def _count(name: str, value: Any, instruction_id: str, *, minimum: int = 0) -> int:
    if value is None or not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InstructionArgsError(
            f"{instruction_id}: {name!r} must be an integer >= {minimum}, got {value!r} "
            "(upstream would pick one at random)")
    return value


def _text(name: str, value: Any, instruction_id: str, *, allow_empty: bool = True) -> str:
    """A string argument; upstream draws a random one for ``None`` (or, with ``allow_empty=False``, for ``""``)."""
    if not isinstance(value, str) or (not value and not allow_empty):
        raise InstructionArgsError(f"{instruction_id}: {name!r} must be a non-empty string, got {value!r} "
                                   "(upstream would pick one at random or fail)")
    return value


class Instruction:
    """An instruction checker (upstream ``Instruction``): built once from its kwargs, then applied to texts."""

    #: Keyword arguments of upstream ``build_description``.
    ARGS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, instruction_id: str, **kwargs: Any) -> None:
        self.id = instruction_id
        unknown = sorted(set(kwargs) - set(self.ARGS))
        if unknown:
            raise InstructionArgsError(
                f"{instruction_id}: unexpected argument(s) {', '.join(unknown)}; expected {list(self.ARGS) or 'none'}")
        self.build(**kwargs)

    def build(self, *args: Any, **kwargs: Any) -> None:
        """Store the arguments (upstream ``build_description`` without the description text)."""

    def check_following(self, value: str) -> bool:
        raise NotImplementedError


class ResponseLanguageChecker(Instruction):
    """``language:response_language``: ``langdetect.detect(value) == language``; undetectable counts as followed."""

    ARGS = ("language",)

    def build(self, *, language: str | None = None) -> None:
        self._language = _text("language", language, self.id)

    def check_following(self, value: str) -> bool:
        assert isinstance(value, str)
        try:
            return instructions_util.detect_language(value) == self._language
        except LanguageUndetectable:
            # Count as instruction is followed.
            return True


class NumberOfSentences(Instruction):
    """``length_constraints:number_sentences``: Punkt sentence count ``<`` / ``>=`` ``num_sentences``."""

    ARGS = ("num_sentences", "relation")

    def build(self, *, num_sentences: int | None = None, relation: str | None = None) -> None:
        self._num_sentences_threshold = _count("num_sentences", num_sentences, self.id)
        self._comparison_relation = _relation("relation", relation, self.id)

    def check_following(self, value: str) -> bool:
        num_sentences = instructions_util.count_sentences(value)
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return num_sentences < self._num_sentences_threshold
        return num_sentences >= self._num_sentences_threshold


class PlaceholderChecker(Instruction):
    """``detectable_content:number_placeholders``: at least N matches of ``\\[.*?\\]``."""

    ARGS = ("num_placeholders",)

    def build(self, *, num_placeholders: int | None = None) -> None:
        self._num_placeholders = _count("num_placeholders", num_placeholders, self.id)

    def check_following(self, value: str) -> bool:
        placeholders = re.findall(r"\[.*?\]", value)
        num_placeholders = len(placeholders)
        return num_placeholders >= self._num_placeholders


class BulletListChecker(Instruction):
    """``detectable_format:number_bullet_lists``: exactly N lines starting with ``*`` (not ``**``) or ``-``."""

    ARGS = ("num_bullets",)

    def build(self, *, num_bullets: int | None = None) -> None:
        self._num_bullets = _count("num_bullets", num_bullets, self.id)

    def check_following(self, value: str) -> bool:
        bullet_lists = re.findall(r"^\s*\*[^\*].*$", value, flags=re.MULTILINE)
        bullet_lists_2 = re.findall(r"^\s*-.*$", value, flags=re.MULTILINE)
        num_bullet_lists = len(bullet_lists) + len(bullet_lists_2)
        return num_bullet_lists == self._num_bullets


class ConstrainedResponseChecker(Instruction):
    """``detectable_format:constrained_response``: contains "My answer is yes." / "no." / "maybe."."""

    def build(self) -> None:
        self._constrained_responses = _CONSTRAINED_RESPONSE_OPTIONS

    def check_following(self, value: str) -> bool:
        value = value.strip()
        for constrained_response in self._constrained_responses:
            if constrained_response in value:
                return True
        return False


class HighlightSectionChecker(Instruction):
    """``detectable_format:number_highlighted_sections``: at least N non-empty ``*...*`` plus ``**...**`` spans."""

    ARGS = ("num_highlights",)

    def build(self, *, num_highlights: int | None = None) -> None:
        self._num_highlights = _count("num_highlights", num_highlights, self.id)

    def check_following(self, value: str) -> bool:
        num_highlights = 0
        highlights = re.findall(r"\*[^\n\*]*\*", value)
        double_highlights = re.findall(r"\*\*[^\n\*]*\*\*", value)
        for highlight in highlights:
            if highlight.strip("*").strip():
                num_highlights += 1
        for highlight in double_highlights:
            if highlight.removeprefix("**").removesuffix("**").strip():
                num_highlights += 1
        return num_highlights >= self._num_highlights


class SectionChecker(Instruction):
    """``detectable_format:multiple_sections``: at least N sections split by ``\\s?<spliter>\\s?\\d+\\s?``."""

    ARGS = ("section_spliter", "num_sections")

    def build(self, *, section_spliter: str | None = None, num_sections: int | None = None) -> None:
        spliter = section_spliter.strip() if isinstance(section_spliter, str) else section_spliter
        self._section_spliter = _text("section_spliter", spliter, self.id)
        self._num_sections = _count("num_sections", num_sections, self.id)

    def check_following(self, value: str) -> bool:
        section_splitter_patten = r"\s?" + self._section_spliter + r"\s?\d+\s?"
        sections = re.split(section_splitter_patten, value)
        num_sections = len(sections) - 1
        return num_sections >= self._num_sections


class ParagraphChecker(Instruction):
    """``length_constraints:number_paragraphs``: exactly N paragraphs separated by ``***``."""

    ARGS = ("num_paragraphs",)

    def build(self, *, num_paragraphs: int | None = None) -> None:
        self._num_paragraphs = _count("num_paragraphs", num_paragraphs, self.id)

    def check_following(self, value: str) -> bool:
        paragraphs = re.split(r"\s?\*\*\*\s?", value)
        num_paragraphs = len(paragraphs)
        for index, paragraph in enumerate(paragraphs):
            if not paragraph.strip():
                if index == 0 or index == len(paragraphs) - 1:
                    num_paragraphs -= 1
                else:
                    return False
        return num_paragraphs == self._num_paragraphs


class PostscriptChecker(Instruction):
    """``detectable_content:postscript``: a line (case-insensitive) starting with the postscript marker."""

    ARGS = ("postscript_marker",)

    def build(self, *, postscript_marker: str | None = None) -> None:
        marker = postscript_marker.strip() if isinstance(postscript_marker, str) else postscript_marker
        self._postscript_marker = _text("postscript_marker", marker, self.id)

    def check_following(self, value: str) -> bool:
        value = value.lower()
        if self._postscript_marker == "P.P.S":
            postscript_pattern = r"\s*p\.\s?p\.\s?s.*$"
        elif self._postscript_marker == "P.S.":
            postscript_pattern = r"\s*p\.\s?s\..*$"
        else:
            postscript_pattern = r"\s*" + self._postscript_marker.lower() + r".*$"
        postscript = re.findall(postscript_pattern, value, flags=re.MULTILINE)
        return True if postscript else False


class KeywordChecker(Instruction):
    """``keywords:existence``: every keyword found by ``re.search(keyword, value, re.IGNORECASE)``."""

    ARGS = ("keywords",)

    def build(self, *, keywords: Sequence[str] | None = None) -> None:
        if not keywords:
            raise InstructionArgsError(f"{self.id}: missing 'keywords' (upstream would pick them at random)")
        self._keywords = sorted(keywords)

    def check_following(self, value: str) -> bool:
        for keyword in self._keywords:
            if not re.search(keyword, value, flags=re.IGNORECASE):
                return False
        return True


class KeywordFrequencyChecker(Instruction):
    """``keywords:frequency``: ``len(re.findall(keyword, value, re.IGNORECASE))`` ``<`` / ``>=`` frequency."""

    ARGS = ("keyword", "frequency", "relation")

    def build(self, *, keyword: str | None = None, frequency: int | None = None,
              relation: str | None = None) -> None:
        self._keyword = _text("keyword", keyword, self.id, allow_empty=False).strip()
        self._frequency = _count("frequency", frequency, self.id)
        self._comparison_relation = _relation("relation", relation, self.id)

    def check_following(self, value: str) -> bool:
        actual_occurrences = len(re.findall(self._keyword, value, flags=re.IGNORECASE))
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return actual_occurrences < self._frequency
        return actual_occurrences >= self._frequency


class NumberOfWords(Instruction):
    """``length_constraints:number_words``: ``\\w+`` token count ``<`` / ``>=`` ``num_words``."""

    ARGS = ("num_words", "relation")

    def build(self, *, num_words: int | None = None, relation: str | None = None) -> None:
        self._num_words = _count("num_words", num_words, self.id)
        self._comparison_relation = _relation("relation", relation, self.id)

    def check_following(self, value: str) -> bool:
        num_words = instructions_util.count_words(value)
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return num_words < self._num_words
        return num_words >= self._num_words


class JsonFormat(Instruction):
    """``detectable_format:json_format``: parses as JSON after stripping one ```json / ``` fence."""

    def check_following(self, value: str) -> bool:
        value = (
            value.strip()
            .removeprefix("```json")
            .removeprefix("```Json")
            .removeprefix("```JSON")
            .removeprefix("```")
            .removesuffix("```")
            .strip()
        )
        try:
            json.loads(value)
        except ValueError:
            return False
        return True


class ParagraphFirstWordCheck(Instruction):
    """``length_constraints:nth_paragraph_first_word``: N ``\\n\\n`` paragraphs, paragraph n starts with a word."""

    ARGS = ("num_paragraphs", "nth_paragraph", "first_word")

    def build(self, *, num_paragraphs: int | None = None, nth_paragraph: int | None = None,
              first_word: str | None = None) -> None:
        self._num_paragraphs = _count("num_paragraphs", num_paragraphs, self.id)
        nth = _count("nth_paragraph", nth_paragraph, self.id, minimum=1)
        if nth > self._num_paragraphs:
            raise InstructionArgsError(f"{self.id}: nth_paragraph {nth} > num_paragraphs {self._num_paragraphs} "
                                       "(upstream would pick one at random)")
        self._nth_paragraph = nth
        self._first_word = _text("first_word", first_word, self.id).lower()

    def check_following(self, value: str) -> bool:
        paragraphs = re.split(r"\n\n", value)
        num_paragraphs = len(paragraphs)

        for paragraph in paragraphs:
            if not paragraph.strip():
                num_paragraphs -= 1

        # check that index doesn't go out of bounds
        if self._nth_paragraph <= num_paragraphs:
            paragraph = paragraphs[self._nth_paragraph - 1].strip()
            if not paragraph:
                return False
        else:
            return False

        first_word = ""
        punctuation = {".", ",", "?", "!", "'", '"'}

        # get first word and remove punctuation
        word = paragraph.split()[0].strip()
        word = word.lstrip("'")
        word = word.lstrip('"')

        for letter in word:
            if letter in punctuation:
                break
            first_word += letter.lower()

        return num_paragraphs == self._num_paragraphs and first_word == self._first_word


class ForbiddenWords(Instruction):
    """``keywords:forbidden_words``: no ``\\b<word>\\b`` match (case-insensitive) for any forbidden word."""

    ARGS = ("forbidden_words",)

    def build(self, *, forbidden_words: Sequence[str] | None = None) -> None:
        if not forbidden_words:
            raise InstructionArgsError(f"{self.id}: missing 'forbidden_words' (upstream would pick them at random)")
        self._forbidden_words = sorted(set(forbidden_words))

    def check_following(self, value: str) -> bool:
        for word in self._forbidden_words:
            if re.search(r"\b" + word + r"\b", value, flags=re.IGNORECASE):
                return False
        return True


class TwoResponsesChecker(Instruction):
    """``combination:two_responses``: exactly two different non-empty parts separated by ``******``."""

    def check_following(self, value: str) -> bool:
        valid_responses = list()
        responses = value.split("******")
        for index, response in enumerate(responses):
            if not response.strip():
                if index != 0 and index != len(responses) - 1:
                    return False
            else:
                valid_responses.append(response)
        return len(valid_responses) == 2 and valid_responses[0].strip() != valid_responses[1].strip()


class RepeatPromptThenAnswer(Instruction):
    """``combination:repeat_prompt``: the response starts (case-insensitively) with ``prompt_to_repeat``."""

    ARGS = ("prompt_to_repeat",)

    def build(self, *, prompt_to_repeat: str | None = None) -> None:
        if not prompt_to_repeat:
            raise InstructionArgsError(f"{self.id}: prompt_to_repeat must be set.")
        self._prompt_to_repeat = prompt_to_repeat

    def check_following(self, value: str) -> bool:
        if value.strip().lower().startswith(self._prompt_to_repeat.strip().lower()):
            return True
        return False


class EndChecker(Instruction):
    """``startend:end_checker``: ``value.strip().strip('"').lower()`` ends with the lower-cased end phrase."""

    ARGS = ("end_phrase",)

    def build(self, *, end_phrase: str | None = None) -> None:
        phrase = end_phrase.strip() if isinstance(end_phrase, str) else end_phrase
        self._end_phrase = _text("end_phrase", phrase, self.id)

    def check_following(self, value: str) -> bool:
        value = value.strip().strip('"').lower()
        end_phrase = self._end_phrase.strip().lower()
        return value.endswith(end_phrase)


class TitleChecker(Instruction):
    """``detectable_format:title``: a non-empty ``<<title>>`` on one line."""

    def check_following(self, value: str) -> bool:
        pattern = r"<<[^\n]+>>"
        re_pattern = re.compile(pattern)
        titles = re.findall(re_pattern, value)
        for title in titles:
            if title.lstrip("<").rstrip(">").strip():
                return True
        return False


class LetterFrequencyChecker(Instruction):
    """``keywords:letter_frequency``: count of the (lower-cased) letter in ``value.lower()`` ``<`` / ``>=``."""

    ARGS = ("letter", "let_frequency", "let_relation")

    def build(self, *, letter: str | None = None, let_frequency: int | None = None,
              let_relation: str | None = None) -> None:
        if not letter or len(letter) > 1:
            raise InstructionArgsError(f"{self.id}: 'letter' must be one character, got {letter!r} "
                                       "(upstream would pick one at random)")
        self._letter = letter.strip().lower()
        self._frequency = _count("let_frequency", let_frequency, self.id)
        self._comparison_relation = _relation("let_relation", let_relation, self.id)

    def check_following(self, value: str) -> bool:
        value = value.lower()
        letters = collections.Counter(value)
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return letters[self._letter] < self._frequency
        return letters[self._letter] >= self._frequency


class CapitalLettersEnglishChecker(Instruction):
    """``change_case:english_capital``: ``value.isupper()`` and langdetect says ``en`` (undetectable: followed)."""

    def check_following(self, value: str) -> bool:
        assert isinstance(value, str)
        try:
            return value.isupper() and instructions_util.detect_language(value) == "en"
        except LanguageUndetectable:
            # Count as instruction is followed.
            return True


class LowercaseLettersEnglishChecker(Instruction):
    """``change_case:english_lowercase``: ``value.islower()`` and langdetect says ``en`` (undetectable: followed)."""

    def check_following(self, value: str) -> bool:
        assert isinstance(value, str)
        try:
            return value.islower() and instructions_util.detect_language(value) == "en"
        except LanguageUndetectable:
            # Count as instruction is followed.
            return True


class CommaChecker(Instruction):
    """``punctuation:no_comma``: no ``,`` anywhere."""

    def check_following(self, value: str) -> bool:
        return not re.search(r"\,", value)


class CapitalWordFrequencyChecker(Instruction):
    """``change_case:capital_word_frequency``: ``nltk.word_tokenize`` tokens with ``isupper()`` ``<`` / ``>=``."""

    ARGS = ("capital_frequency", "capital_relation")

    def build(self, *, capital_frequency: int | None = None, capital_relation: str | None = None) -> None:
        if capital_frequency is None:
            raise InstructionArgsError(f"{self.id}: missing 'capital_frequency' (upstream would pick one at random)")
        self._frequency = capital_frequency
        self._comparison_relation = _relation("capital_relation", capital_relation, self.id)

    def check_following(self, value: str) -> bool:
        # Hyphenated words will count as one word
        words = instructions_util.word_tokenize(value)
        capital_words = len([word for word in words if word.isupper()])
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return capital_words < self._frequency
        return capital_words >= self._frequency


class QuotationChecker(Instruction):
    """``startend:quotation``: the stripped response is longer than 1 and starts and ends with ``"``."""

    def check_following(self, value: str) -> bool:
        value = value.strip()
        return len(value) > 1 and value[0] == '"' and value[-1] == '"'


_KEYWORD = "keywords:"
_LANGUAGE = "language:"
_LENGTH = "length_constraints:"
_CONTENT = "detectable_content:"
_FORMAT = "detectable_format:"
_COMBINATION = "combination:"
_STARTEND = "startend:"
_CHANGE_CASES = "change_case:"
_PUNCTUATION = "punctuation:"

#: Instruction id -> checker class: the 25 registered instructions of upstream
#: ``instructions_registry.INSTRUCTION_DICT`` (the commented-out ones upstream are left out here too).
INSTRUCTION_DICT: dict[str, type[Instruction]] = {
    _KEYWORD + "existence": KeywordChecker,
    _KEYWORD + "frequency": KeywordFrequencyChecker,
    _KEYWORD + "forbidden_words": ForbiddenWords,
    _KEYWORD + "letter_frequency": LetterFrequencyChecker,
    _LANGUAGE + "response_language": ResponseLanguageChecker,
    _LENGTH + "number_sentences": NumberOfSentences,
    _LENGTH + "number_paragraphs": ParagraphChecker,
    _LENGTH + "number_words": NumberOfWords,
    _LENGTH + "nth_paragraph_first_word": ParagraphFirstWordCheck,
    _CONTENT + "number_placeholders": PlaceholderChecker,
    _CONTENT + "postscript": PostscriptChecker,
    _FORMAT + "number_bullet_lists": BulletListChecker,
    _FORMAT + "constrained_response": ConstrainedResponseChecker,
    _FORMAT + "number_highlighted_sections": HighlightSectionChecker,
    _FORMAT + "multiple_sections": SectionChecker,
    _FORMAT + "json_format": JsonFormat,
    _FORMAT + "title": TitleChecker,
    _COMBINATION + "two_responses": TwoResponsesChecker,
    _COMBINATION + "repeat_prompt": RepeatPromptThenAnswer,
    _STARTEND + "end_checker": EndChecker,
    _CHANGE_CASES + "capital_word_frequency": CapitalWordFrequencyChecker,
    _CHANGE_CASES + "english_capital": CapitalLettersEnglishChecker,
    _CHANGE_CASES + "english_lowercase": LowercaseLettersEnglishChecker,
    _PUNCTUATION + "no_comma": CommaChecker,
    _STARTEND + "quotation": QuotationChecker,
}


def build_instruction(instruction_id: str, kwargs: dict[str, Any] | None) -> Instruction:
    """The checker for ``instruction_id`` built from its ``kwargs`` (as upstream ``build_description(**kwargs)``).

    Keys whose value is ``None`` are dropped first: the Hugging Face copy of the input data lists every possible
    argument with ``null`` for the unused ones, which upstream's ``build_description`` treats as absent.
    """
    cls = INSTRUCTION_DICT.get(instruction_id)
    if cls is None:
        raise InstructionArgsError(f"unknown instruction id {instruction_id!r}; known: {', '.join(INSTRUCTION_DICT)}")
    args = {k: v for k, v in (kwargs or {}).items() if v is not None}
    return cls(instruction_id, **args)
