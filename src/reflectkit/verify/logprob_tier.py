"""The log-prob tier: the first position's top-k log-probs of short fixed probes, compared with the reference's.

Statistic: for each probe, the mean absolute difference of the log-probs of the tokens both sides list among the
first position's top k (plus a fixed penalty when they disagree on the most likely token); the tier's statistic is
the mean over probes. Calibration: every probe is asked ``logprob_repeats`` times of each side, so the noise of the
endpoint against itself and of the reference against itself is measured in the same check; the endpoint is
inconsistent when the statistic exceeds ``floor + z * noise``. ``floor`` is the numerical tolerance between two
honest computations of the same weights (default 0.01 nats: llama.cpp on CPU repeats itself exactly; GPU
servers and other kernels differ by more, then raise ``floor``). A requantization of the same weights moves the
first-token log-probs by several hundredths of a nat, which is what this tier is for.
"""

from __future__ import annotations

import statistics
from typing import Any

from reflectkit.llm.base import SamplingParams, TokenLogprob
from reflectkit.verify.fingerprint import Plan, ProbeAnswer
from reflectkit.verify.probes import LOGPROB_PROMPTS, pick, user
from reflectkit.verify.result import Ask, Cost, TierResult, ask_all

TOP1_PENALTY = 1.0  # nats added when the most likely first token differs


def params(plan: Plan) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=1, logprobs=plan.top_logprobs)


def prompts(plan: Plan) -> list[str]:
    return pick(LOGPROB_PROMPTS, plan.logprob_probes, plan.seed)


async def collect(ask: Ask, plan: Plan, cost: Cost | None = None) -> list[ProbeAnswer]:
    p = params(plan)
    reqs = [(q, r) for q in prompts(plan) for r in range(plan.logprob_repeats)]
    results = await ask_all(ask, [(user(q), p) for q, _ in reqs], cost=cost)
    return [ProbeAnswer.of("logprobs", q, user(q), p.to_dict(), res) for (q, _), res in zip(reqs, results)]


def first_position(tokens: list[TokenLogprob] | None) -> dict[str, float] | None:
    """The first generated position's top log-probs (the chosen token included), or None without log-probs."""
    if not tokens:
        return None
    t = tokens[0]
    return {**t.top, t.token: t.logprob}


def distance(a: dict[str, float], b: dict[str, float]) -> float:
    """Mean |Δ logprob| over the tokens both list; + TOP1_PENALTY when the argmax differs."""
    shared = [t for t in a if t in b]
    d = sum(abs(a[t] - b[t]) for t in shared) / len(shared) if shared else TOP1_PENALTY
    if max(a, key=a.__getitem__) != max(b, key=b.__getitem__):
        d += TOP1_PENALTY
    return d


def _by_probe(answers: list[ProbeAnswer]) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for a in answers:
        fp = first_position(a.token_logprobs())
        if fp is not None:
            out.setdefault(a.probe, []).append(fp)
    return out


def _noise(by: dict[str, list[dict[str, float]]]) -> float:
    ds = [distance(reps[0], r) for reps in by.values() for r in reps[1:]]
    return max(ds) if ds else 0.0


def compare(endpoint: list[ProbeAnswer], reference: list[ProbeAnswer], cost: Cost | None = None, *,
            floor: float = 0.01, z: float = 4.0) -> TierResult:
    cost = cost or Cost()
    be, br = _by_probe(endpoint), _by_probe(reference)
    if not endpoint:
        return TierResult("logprobs", "inconclusive", "the endpoint refused the log-prob probes", cost=cost)
    if not be:
        return TierResult("logprobs", "inconclusive", "the endpoint returns no log-probs", cost=cost)
    if not br:
        return TierResult("logprobs", "inconclusive", "the reference has no log-probs for these probes", cost=cost)
    shared = [q for q in be if q in br]
    if not shared:
        return TierResult("logprobs", "inconclusive", "no probe in common with the reference", cost=cost)
    per_probe = {q: statistics.fmean(distance(e, br[q][0]) for e in be[q]) for q in shared}
    stat = statistics.fmean(per_probe.values())
    noise = max(_noise(be), _noise(br))
    threshold = floor + z * noise
    evidence: dict[str, Any] = {"statistic": round(stat, 5), "threshold": round(threshold, 5), "floor": floor, "z": z,
                                "noise_endpoint": round(_noise(be), 5), "noise_reference": round(_noise(br), 5),
                                "per_probe": {q: round(v, 5) for q, v in per_probe.items()}}
    verdict = "inconsistent" if stat > threshold else "consistent"
    rel = ">" if stat > threshold else "<="
    return TierResult("logprobs", verdict, f"mean first-token |Δ logprob| {stat:.4f} nats {rel} threshold "
                      f"{threshold:.4f} over {len(shared)} probes (noise {noise:.4f})", evidence, cost)
