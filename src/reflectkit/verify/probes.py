"""The fixed probe set shared by every tier, the canaries and the fingerprints.

The probes are data: changing them changes every fingerprint, so they carry a version (``PROBE_VERSION``) that is
written into each fingerprint and report. A seed picks which probes of a pool a check uses, so that repeated checks
(and the false-positive measurement) do not always ask the same questions.
"""

from __future__ import annotations

import random
from typing import Sequence

from reflectkit.llm.base import Message

PROBE_VERSION = "rk-probes-1"

#: Units for the tokenizer tier: each is sent with 0, 1, 2, 3 repeats; the differences of ``usage.prompt_tokens``
#: between repeat counts are the served tokenizer's token counts of the unit (the chat template cancels out).
#: Chosen to split differently across tokenizer families: emoji, accents, digits, CJK, code, long words.
TOKENIZER_UNITS: tuple[str, ...] = (
    " hello", "😀", "ünï", "1234", "Reflection", " 東京", "<|x|>", "\t}\n", " antidisestablishment", "ÿ§",
)
TOKENIZER_REPEATS: tuple[int, ...] = (0, 1, 2, 3)

#: One-shot prompts whose first token is uncertain: the first position's log-probs say a lot about the weights.
LOGPROB_PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "Answer with one word: what colour is the sky?",
    "Write the first word of a poem about the sea.",
    "Name a fruit.",
    "Continue: Once upon a time",
    "Say something about cats.",
    "What is 17 times 3?",
    "Give me a random number between 1 and 100.",
    "Pick a colour.",
    "The opposite of hot is",
    "Describe the weather today in one word.",
    "Name an animal that lives in the ocean.",
    "Complete the sentence: I like to",
    "Which planet is closest to the sun?",
    "Suggest a name for a dog.",
    "What do bees make?",
    "Translate 'thank you' into French.",
    "Write a greeting.",
    "What is the boiling point of water?",
    "Name a programming language.",
    "Tell me a verb.",
    "What season comes after winter?",
    "Start a story with one word.",
    "Who wrote Hamlet?",
)

#: Open prompts for the text-only tier (sampled completions at temperature 1).
TEXT_PROMPTS: tuple[str, ...] = (
    "Write one sentence about the moon.",
    "Describe a tree.",
    "Tell me a fact about water.",
    "What is your favourite food and why?",
    "Give advice to a student.",
    "Explain what a computer is.",
    "Write a short line of a song.",
    "Say hello to a friend.",
)

#: Canaries: greedy, a few tokens, open enough that a slightly different model answers differently.
CANARY_PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "Write the first words of a poem about the sea.",
    "Continue: Once upon a time",
    "Give me a random number between 1 and 100.",
)


def user(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def pick(pool: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` probes of ``pool`` chosen by ``seed`` (all of it, in order, when n >= len(pool))."""
    if n >= len(pool):
        return list(pool)
    return random.Random(seed).sample(list(pool), n)
