"""The MMD (Hamming kernel) two-sample test of the text tier on samples with known answers."""

from __future__ import annotations

import random

import numpy as np

from reflectkit.verify.fingerprint import ProbeAnswer
from reflectkit.verify.text_tier import compare, kernel_matrix, mmd2, permutation_test, prompt_groups


def _answers(texts: list[tuple[str, str]]) -> list[ProbeAnswer]:
    return [ProbeAnswer(tier="text", probe=p, messages=[{"role": "user", "content": p}], params={}, text=t)
            for p, t in texts]


def _draw(rng: random.Random, n: int, words: list[str]) -> list[tuple[str, str]]:
    """Completions that start like a model's do: one of two openings built from ``words``, then a random tail."""
    openings = [" ".join(words[:2]), " ".join(words[1:3])]
    return [(f"p{i % 4}", rng.choice(openings) + " " + " ".join(rng.choice(words) for _ in range(3)))
            for i in range(n)]


def test_kernel_counts_matching_characters_only_within_a_prompt() -> None:
    k = kernel_matrix([("p", "abcd"), ("p", "abzz"), ("q", "abcd")])
    assert k[0, 0] == 1.0
    assert 0 < k[0, 1] < 1  # 2 of the first L characters match, the padding matches too
    assert k[0, 2] == 0.0  # other prompt: never compared


def test_same_distribution_is_not_rejected_and_a_different_one_is() -> None:
    rng = random.Random(0)
    words = ["the", "sea", "is", "blue", "wide", "deep"]
    same = compare(_answers(_draw(rng, 40, words)), _answers(_draw(rng, 40, words)), seed=0)
    assert same.verdict == "consistent" and same.evidence["p_value"] > 0.01
    other = compare(_answers(_draw(rng, 40, words)), _answers(_draw(rng, 40, ["a", "cat", "sat", "on", "mat"])),
                    seed=0)
    assert other.verdict == "inconsistent" and other.evidence["p_value"] < 0.01
    assert other.evidence["power_by_samples"]["40"] == 1.0


def test_permutation_p_value_is_calibrated_under_the_null() -> None:
    """Under the null the rejection rate at alpha 0.05 stays near 0.05 (here: at most 0.15 over 40 draws)."""
    rng = random.Random(1)
    words = ["x", "y", "z", "w"]
    nrng = np.random.default_rng(0)
    rejections = 0
    for _ in range(40):
        samples = _draw(rng, 24, words)  # prompts p0..p3 alternate, so each group has 3 of each
        k = kernel_matrix(samples)
        _s, p = permutation_test(k, np.arange(24) < 12, nrng, permutations=99, groups=prompt_groups(samples))
        rejections += p < 0.05
    assert rejections / 40 <= 0.15


def test_too_few_samples_is_inconclusive() -> None:
    assert compare(_answers([("p", "a")] * 2), _answers([("p", "a")] * 2)).verdict == "inconclusive"


def test_mmd2_of_identical_groups_is_not_positive() -> None:
    k = kernel_matrix([("p", "aaa")] * 6)
    assert mmd2(k, np.arange(6) < 3) <= 1e-12
