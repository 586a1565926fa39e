"""The text-only tier: sampled completions compared by a two-sample test (works on any endpoint).

Method: Model Equality Testing (Gao, Liang, Guestrin, "Model Equality Testing: Which Model Is This API Serving?",
ICLR 2025, arXiv:2410.20247): samples are (prompt, completion) pairs drawn from the endpoint and from the
reference at temperature 1; the statistic is the unbiased MMD² with a Hamming string kernel,
``k((p, c), (p', c')) = 1[p = p'] · (1/L) · Σ_{l ≤ L} 1[c_l = c'_l]`` over the first L characters of the completions
(padded), and the p-value comes from a permutation test. The permutations exchange labels only within each prompt's
samples (stratified): the kernel is zero across prompts, so an unstratified permutation would change how many
same-prompt pairs each group has and bias the null distribution. Characters rather than tokens keep the kernel independent
of either tokenizer. The detection power reachable at a smaller budget is estimated by re-running the test on
random subsamples of the collected samples (``power_curve``).
"""

from __future__ import annotations

import numpy as np

from reflectkit.llm.base import SamplingParams
from reflectkit.verify.fingerprint import Plan, ProbeAnswer
from reflectkit.verify.probes import TEXT_PROMPTS, user
from reflectkit.verify.result import Ask, Cost, TierResult, ask_all

L_CHARS = 48
ALPHA = 0.01
PERMUTATIONS = 400
#: seeds of the two sides never overlap, so the two samples are independent (a requirement of the test)
SIDE_OFFSET = {"a": 0, "b": 500_000}


def sample_plan(plan: Plan, side: str) -> list[tuple[str, int]]:
    """(prompt, seed) of each text sample: prompts round-robin, seeds from the plan's seed and the side."""
    base = plan.seed * 1_000_000 + SIDE_OFFSET[side]
    return [(TEXT_PROMPTS[i % len(TEXT_PROMPTS)], base + i) for i in range(plan.text_samples)]


async def collect(ask: Ask, plan: Plan, side: str, cost: Cost | None = None) -> list[ProbeAnswer]:
    reqs = sample_plan(plan, side)
    ps = [SamplingParams(temperature=plan.text_temperature, top_p=1.0, max_tokens=plan.text_max_tokens, seed=s)
          for _q, s in reqs]
    results = await ask_all(ask, [(user(q), p) for (q, _s), p in zip(reqs, ps)], cost=cost)
    return [ProbeAnswer.of("text", q, user(q), p.to_dict(), r, seed=s) for (q, s), p, r in zip(reqs, ps, results)]


def _encode(samples: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    prompts = sorted({p for p, _ in samples})
    pid = np.array([prompts.index(p) for p, _ in samples])
    chars = np.full((len(samples), L_CHARS), -1, dtype=np.int64)
    for i, (_p, c) in enumerate(samples):
        codes = [ord(ch) for ch in c[:L_CHARS]]
        chars[i, : len(codes)] = codes
    return pid, chars


def kernel_matrix(samples: list[tuple[str, str]]) -> np.ndarray:
    """The Hamming kernel between every pair of (prompt, completion) samples (padding matches padding)."""
    pid, chars = _encode(samples)
    same_prompt = pid[:, None] == pid[None, :]
    matches = (chars[:, None, :] == chars[None, :, :]).mean(axis=2)
    return np.where(same_prompt, matches, 0.0)


def mmd2(k: np.ndarray, is_x: np.ndarray) -> float:
    """Unbiased MMD² of the two groups marked by the boolean ``is_x`` over kernel matrix ``k``."""
    x, y = np.flatnonzero(is_x), np.flatnonzero(~is_x)
    n, m = len(x), len(y)
    kxx, kyy, kxy = k[np.ix_(x, x)], k[np.ix_(y, y)], k[np.ix_(x, y)]
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def prompt_groups(samples: list[tuple[str, str]]) -> np.ndarray:
    return _encode(samples)[0]


def _permute_within(is_x: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = is_x.copy()
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = rng.permutation(is_x[idx])
    return out


def permutation_test(k: np.ndarray, is_x: np.ndarray, rng: np.random.Generator,
                     permutations: int = PERMUTATIONS, groups: np.ndarray | None = None) -> tuple[float, float]:
    """(statistic, p-value) with p = (1 + #{permuted >= observed}) / (1 + permutations); labels are exchanged
    within each group of ``groups`` (the prompt of each sample) when given."""
    groups = np.zeros(len(is_x), dtype=np.int64) if groups is None else groups
    obs = mmd2(k, is_x)
    hits = sum(mmd2(k, _permute_within(is_x, groups, rng)) >= obs for _ in range(permutations))
    return obs, (1 + hits) / (1 + permutations)


def power_curve(k: np.ndarray, is_x: np.ndarray, budgets: list[int], rng: np.random.Generator,
                reps: int = 40, alpha: float = ALPHA, permutations: int = 100,
                groups: np.ndarray | None = None) -> dict[int, float]:
    """Estimated rejection rate when only ``b`` samples per side are drawn (subsampling the collected ones)."""
    x, y = np.flatnonzero(is_x), np.flatnonzero(~is_x)
    out: dict[int, float] = {}
    for b in budgets:
        if b < 4 or b > min(len(x), len(y)):
            continue
        rejections = 0
        for _ in range(reps):
            idx = np.concatenate([rng.choice(x, b, replace=False), rng.choice(y, b, replace=False)])
            sub = k[np.ix_(idx, idx)]
            _s, p = permutation_test(sub, np.arange(2 * b) < b, rng, permutations,
                                     None if groups is None else groups[idx])
            rejections += p < alpha
        out[b] = rejections / reps
    return out


def compare(endpoint: list[ProbeAnswer], reference: list[ProbeAnswer], cost: Cost | None = None, *,
            seed: int = 0, alpha: float = ALPHA) -> TierResult:
    cost = cost or Cost()
    if not endpoint:
        return TierResult("text", "inconclusive", "the endpoint refused the sampled text probes", cost=cost)
    if len(endpoint) < 4 or len(reference) < 4:
        return TierResult("text", "inconclusive", f"too few samples ({len(endpoint)} vs {len(reference)}; "
                          "raise --budget)", cost=cost)
    samples = [(a.probe, a.text) for a in endpoint] + [(a.probe, a.text) for a in reference]
    is_x = np.arange(len(samples)) < len(endpoint)
    k = kernel_matrix(samples)
    groups = prompt_groups(samples)
    rng = np.random.default_rng(seed)
    stat, p = permutation_test(k, is_x, rng, groups=groups)
    n = min(len(endpoint), len(reference))
    budgets = sorted({b for b in (5, 10, 20, 40, 80, n) if b <= n})
    power = power_curve(k, is_x, budgets, rng, groups=groups)
    evidence = {"mmd2": round(stat, 6), "p_value": round(p, 5), "alpha": alpha, "samples_endpoint": len(endpoint),
                "samples_reference": len(reference), "chars": L_CHARS, "permutations": PERMUTATIONS,
                "power_by_samples": {str(b): v for b, v in power.items()}}
    power_txt = ", ".join(f"{b}: {v:.2f}" for b, v in power.items())
    if p < alpha:
        return TierResult("text", "inconsistent", f"MMD² {stat:.4f}, p = {p:.4f} < {alpha} over {n} samples per "
                          f"side (estimated power by samples {power_txt})", evidence, cost)
    # not rejecting is only evidence of equality as far as the test could have seen a difference
    return TierResult("text", "consistent", f"MMD² {stat:.4f}, p = {p:.3f} >= {alpha} over {n} samples per side "
                      f"(rejection rate at smaller budgets {power_txt})", evidence, cost)
