"""The tokenizer tier: read the served tokenizer from ``usage.prompt_tokens`` differences.

Each unit is sent as the whole user message with 0, 1, 2, 3 repeats (``max_tokens=1``). Whatever the chat template
adds is the same for every repeat count, so ``prompt_tokens(k) - prompt_tokens(0)`` is what the served tokenizer
makes of the unit repeated k times. Two tokenizers of different families disagree on some of the units (emoji,
accents, CJK, digits); the same tokenizer agrees exactly. Deterministic, and it works on every OpenAI-compatible
endpoint that reports usage.
"""

from __future__ import annotations

from typing import Any

from reflectkit.llm.base import Message, SamplingParams
from reflectkit.verify.fingerprint import Plan, ProbeAnswer
from reflectkit.verify.probes import TOKENIZER_REPEATS, TOKENIZER_UNITS, user
from reflectkit.verify.result import Ask, Cost, TierResult, ask_all

PARAMS = SamplingParams(temperature=0.0, max_tokens=1)


def units(plan: Plan) -> list[str]:
    return list(TOKENIZER_UNITS[: plan.tokenizer_units])


def requests(plan: Plan) -> list[tuple[str, int, list[Message]]]:
    return [(u, k, user(u * k)) for u in units(plan) for k in TOKENIZER_REPEATS]


async def collect(ask: Ask, plan: Plan, cost: Cost | None = None, *,
                  counter: Any = None) -> list[ProbeAnswer]:
    """Ask the tokenizer probes (or count them locally with ``counter(messages) -> int`` when one is given)."""
    reqs = requests(plan)
    if counter is not None:
        return [ProbeAnswer(tier="tokenizer", probe=u, repeats=k, messages=m, params=PARAMS.to_dict(),
                            prompt_tokens=int(counter(m))) for u, k, m in reqs]
    results = await ask_all(ask, [(m, PARAMS) for _u, _k, m in reqs], cost=cost)
    return [ProbeAnswer.of("tokenizer", u, m, PARAMS.to_dict(), r, repeats=k) for (u, k, m), r in zip(reqs, results)]


def signature(answers: list[ProbeAnswer]) -> dict[str, list[int]]:
    """unit -> [prompt_tokens(k) - prompt_tokens(0) for k = 1, 2, 3]: the template's overhead cancels."""
    by: dict[str, dict[int, int]] = {}
    for a in answers:
        if a.tier == "tokenizer" and a.repeats is not None:
            by.setdefault(a.probe, {})[a.repeats] = a.prompt_tokens
    return {u: [c[k] - c[0] for k in sorted(c) if k > 0] for u, c in by.items() if 0 in c}


def compare(endpoint: list[ProbeAnswer], reference: list[ProbeAnswer], cost: Cost | None = None) -> TierResult:
    cost = cost or Cost()
    if not endpoint:
        return TierResult("tokenizer", "inconclusive", "no tokenizer probes were asked", cost=cost)
    if all(a.prompt_tokens == 0 for a in endpoint):
        return TierResult("tokenizer", "inconclusive", "the endpoint reports no usage.prompt_tokens", cost=cost)
    se, sr = signature(endpoint), signature(reference)
    shared = [u for u in se if u in sr]
    if not shared:
        return TierResult("tokenizer", "inconclusive", "no probe unit in common with the reference", cost=cost)
    mismatches = {u: {"endpoint": se[u], "reference": sr[u]} for u in shared if se[u] != sr[u]}
    evidence = {"signature_endpoint": se, "signature_reference": sr, "mismatches": mismatches}
    if mismatches:
        first = next(iter(mismatches))
        return TierResult("tokenizer", "inconsistent",
                          f"{len(mismatches)} of {len(shared)} units tokenize differently (e.g. {first!r}: endpoint "
                          f"{se[first]} tokens vs claimed {sr[first]})", evidence, cost)
    return TierResult("tokenizer", "consistent", f"all {len(shared)} units tokenize as the claimed model's",
                      evidence, cost)
