"""``reflectkit verify endpoint`` / ``verify fingerprint``: ask the probes, compare tier by tier, report.

Verdicts: any tier ``inconsistent`` makes the endpoint inconsistent (exit 3); the tokenizer tier and one of the
log-prob / text tiers ``consistent`` make it consistent (exit 0); anything else is inconclusive (exit 4). The
metadata tier is recorded and never counts as proof either way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from reflectkit.llm.base import FatalModelError, RequestFailed
from reflectkit.llm.secrets import redact
from reflectkit.verify import logprob_tier, text_tier, tokenizer
from reflectkit.verify.fingerprint import Fingerprint, Plan, ProbeAnswer, host_of
from reflectkit.verify.probes import PROBE_VERSION
from reflectkit.verify.reference import Reference
from reflectkit.verify.result import Ask, Cost, TierResult

EXIT = {"consistent": 0, "inconsistent": 3, "inconclusive": 4}
DEFAULT_BUDGET = 100


def plan_for_budget(budget: int, seed: int = 0) -> Plan:
    """Split ``budget`` endpoint calls: the tokenizer tier (4 calls per unit, up to 6 units) and the log-prob tier
    (2 repeats of up to 6 probes) first, since they are cheap and decisive; the text tier gets the rest."""
    units = max(1, min(6, budget // 8))
    rest = budget - 4 * units
    lp = max(0, min(6, rest // 4))
    rest -= 2 * lp
    return Plan(seed=seed, tokenizer_units=units, logprob_probes=lp, text_samples=rest if rest >= 4 else 0)


async def endpoint_metadata(base_url: str, api_key: str | None) -> dict[str, Any]:
    """``/v1/models`` and llama.cpp's ``/props`` where present. Free text a server can set to anything."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    out: dict[str, Any] = {}
    root = base_url.rstrip("/")
    server_root = root[:-3] if root.endswith("/v1") else root
    async with httpx.AsyncClient(timeout=20, headers=headers) as client:
        for name, url in (("models", f"{root}/models"), ("props", f"{server_root}/props")):
            try:
                r = await client.get(url)
                if r.status_code == 200:
                    body = r.json()
                    if name == "models":
                        out["served_models"] = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)]
                    else:  # keep it small: the fields that say which model/build is loaded
                        out["props"] = {k: body[k] for k in ("model_path", "build_info", "total_slots",
                                                             "chat_template") if k in body}
                else:
                    out[f"{name}_status"] = r.status_code
            except (httpx.HTTPError, ValueError) as exc:
                out[f"{name}_error"] = redact(type(exc).__name__)
    return out


async def collect(ask: Ask, plan: Plan, side: str, costs: dict[str, Cost], *,
                  counter: Any = None) -> list[ProbeAnswer]:
    """Every probe of ``plan`` (tokenizer, log-probs, text) asked of one side; costs by tier into ``costs``."""
    for t in ("tokenizer", "logprobs", "text"):
        costs.setdefault(t, Cost())
    answers = await tokenizer.collect(ask, plan, costs["tokenizer"], counter=counter)
    if plan.logprob_probes:
        try:
            answers += await logprob_tier.collect(ask, plan, costs["logprobs"])
        except RequestFailed:  # an endpoint that refuses log-prob requests: the tier is inconclusive
            pass
    if plan.text_samples:
        try:
            answers += await text_tier.collect(ask, plan, side, costs["text"])
        except RequestFailed:  # e.g. refuses temperature 1 or seeds
            pass
    return answers


def _metadata_tier(meta: dict[str, Any], answers: list[ProbeAnswer]) -> TierResult:
    models = sorted({a.model for a in answers if a.model})
    fps = sorted({a.system_fingerprint for a in answers if a.system_fingerprint})
    meta = {**meta, "response_models": models, "system_fingerprints": fps}
    return TierResult("metadata", "inconclusive",
                      f"recorded, never proof: /v1/models {meta.get('served_models')}, responses say {models}"
                      f"{', system_fingerprint ' + ','.join(fps) if fps else ''}", meta)


def overall(tiers: list[TierResult]) -> str:
    v = {t.tier: t.verdict for t in tiers if t.tier != "metadata"}
    if "inconsistent" in v.values():
        return "inconsistent"
    if v.get("tokenizer") == "consistent" and "consistent" in (v.get("logprobs"), v.get("text")):
        return "consistent"
    return "inconclusive"


async def verify_endpoint(client: Any, reference: Reference, *, budget: int = DEFAULT_BUDGET, seed: int = 0,
                          api_key: str | None = None, floor: float = 0.01) -> dict[str, Any]:
    """Compare the endpoint behind ``client`` (an OpenAICompatModel) with ``reference``; the full JSON report."""
    t0 = time.monotonic()
    meta = await endpoint_metadata(str(client.base_url), api_key)
    costs: dict[str, Cost] = {}
    ref_costs: dict[str, Cost] = {}
    try:
        if reference.fingerprint is not None:  # ask exactly the recorded probes; the text seeds of the other side
            plan = reference.fingerprint.plan
            ref_answers = reference.fingerprint.answers
            answers = await collect(client.chat, plan, "b", costs)
        else:
            plan = plan_for_budget(budget, seed)
            answers = await collect(client.chat, plan, "a", costs)
            ref_answers = await collect(reference.ask, plan, "b", ref_costs, counter=reference.counter)
    except (FatalModelError, RequestFailed) as exc:
        raise FatalModelError(f"verify endpoint: the endpoint failed the tokenizer probes: {exc}") from None
    tiers = [
        _metadata_tier(meta, answers),
        tokenizer.compare([a for a in answers if a.tier == "tokenizer"],
                          [a for a in ref_answers if a.tier == "tokenizer"], costs["tokenizer"]),
    ]
    if plan.logprob_probes:
        tiers.append(logprob_tier.compare([a for a in answers if a.tier == "logprobs"],
                                          [a for a in ref_answers if a.tier == "logprobs"], costs["logprobs"],
                                          floor=floor))
    if plan.text_samples:
        tiers.append(text_tier.compare([a for a in answers if a.tier == "text"],
                                       [a for a in ref_answers if a.tier == "text"], costs["text"], seed=seed))
    verdict = overall(tiers)
    return {
        "format": "reflectkit-verify-report",
        "probe_version": PROBE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "endpoint": {"host": host_of(client.base_url), "model": client.model},
        "claims": reference.describe,
        "plan": plan.model_dump(),
        "verdict": verdict,
        "exit_code": EXIT[verdict],
        "tiers": [t.to_dict() for t in tiers],
        "total": {"calls": sum(c.calls for c in costs.values()),
                  "tokens": sum(c.prompt_tokens + c.completion_tokens for c in costs.values()),
                  "seconds": round(time.monotonic() - t0, 3)},
        "endpoint_answers": [a.model_dump() for a in answers],
        "reference_answers": [a.model_dump() for a in ref_answers],
    }


async def fingerprint_of(ask: Ask, plan: Plan, source: dict[str, Any], *, counter: Any = None,
                         metadata: dict[str, Any] | None = None) -> Fingerprint:
    costs: dict[str, Cost] = {}
    answers = await collect(ask, plan, "a", costs, counter=counter)
    return Fingerprint(source=source, metadata=metadata or {}, plan=plan, answers=answers)


def format_report(report: dict[str, Any]) -> str:
    lines = [f"endpoint {report['endpoint']['host']} model {report['endpoint']['model']!r} claiming "
             f"{report['claims'].get('claims')}"]
    for t in report["tiers"]:
        verdict = "recorded" if t["tier"] == "metadata" else t["verdict"]
        lines.append(f"  {t['tier']:<10} {verdict:<13} {t['summary']}  [{t['calls']} calls, {t['tokens']} tokens, "
                     f"{t['seconds']:.1f}s]")
    lines.append(f"verdict: {report['verdict']} (exit {report['exit_code']})")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
