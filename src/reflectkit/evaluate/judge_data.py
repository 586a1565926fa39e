"""``reflectkit judge build-data``: ReflectRM's unified training mix, from labelled pairs and the base model.

ReflectRM (Qin et al., arXiv 2604.07506, 2026), data construction: for every labelled pair sample N analyses from
the base model; items where all N verdicts are right are *easy* and dropped; the others are response-preference
(RP) data; for every item with mixed outcomes one analysis-preference (AP, "self-reflection") pair is made: a
correct-verdict analysis and an incorrect one, in random order, the correct one labelled better. RP and AP are
mixed 4:1 (``--ratio``).

Every sample goes through the engine (response cache, ledger, resume): one row per labelled pair, whose
``reflectkit.judge_data`` records the order shown, every analysis with its verdict and correctness, the category
(easy / mixed / hard) and the examples it gave. The mix is a side file, ``<output>.mix.jsonl`` (one training example
per line: ``kind`` response|analysis, ``prompt`` messages, ``answer`` "1"/"2" or "A"/"B", ``source_id``), with its
accounting in ``<output>.mix.json`` (which examples the ratio left out, by id: nothing is dropped silently).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from functools import cached_property
from pathlib import Path
from typing import Any

from reflectkit.data.io import Dataset, dumps_jsonl
from reflectkit.data.record import Record
from reflectkit.engine.step import ModelRole, ResultReader, RowResult, RowStep, RunContext, StepOptions, \
    estimate_tokens, option
from reflectkit.errors import UserError
from reflectkit.evaluate.judge import fill
from reflectkit.evaluate.judge_parse import parse_verdict
from reflectkit.llm.base import SamplingParams
from reflectkit.prompts import PromptSet, load_prompt_set


class JudgeDataOptions(StepOptions):
    n: int = option(8, "Analyses sampled per pair from the base model (ReflectRM: 8).", ge=2)
    temperature: float = option(1.0, "Temperature of the analyses (ReflectRM: 1.0).", ge=0)
    max_tokens: int = option(1024, "max_tokens of each analysis.", ge=1)
    ratio: float = option(4.0, "Response-preference : analysis-preference examples in the mix (ReflectRM: 4:1).",
                          gt=0)
    seed: int = option(0, "Seed of the order each pair is shown in, of the AP pairs' order and of the mix.")
    prompt_set: str = option("reflectrm", "Judge prompt set (analysis.* and compare.* prompts).")
    subset: list[str] | None = option(None, "Named benchmark: only these subsets/files (repeatable).")
    data: Path | None = option(None, "Shared data directory (default: auto-detected).", flag="--data-dir",
                               fingerprint=False)


def _coin(seed: int, *parts: Any) -> int:
    return hashlib.sha256("\0".join(str(p) for p in (seed, *parts)).encode()).digest()[0] % 2


def mix_examples(rp: list[dict[str, Any]], ap: list[dict[str, Any]], ratio: float,
                 seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The largest mix with exactly ``ratio`` RP examples per AP example (seeded subsample of the surplus), in a
    seeded shuffled order. Without AP examples (no mixed item) or too few RP for one AP, every RP example is kept
    and the accounting says the ratio could not be met.

    >>> rp = [{"id": f"r{i}"} for i in range(10)]; ap = [{"id": f"a{i}"} for i in range(5)]
    >>> mix, acc = mix_examples(rp, ap, 4.0, 0)
    >>> acc["response"], acc["analysis"], len(acc["left_out"])
    (8, 2, 5)
    """
    rng = random.Random(seed)
    n_ap = min(len(ap), math.floor(len(rp) / ratio))
    if n_ap == 0:
        keep_rp, keep_ap = list(rp), []
        note = ("no analysis-preference pairs (no item had mixed outcomes)" if not ap else
                f"too few response-preference examples ({len(rp)}) for one analysis-preference pair at {ratio:g}:1; "
                "every response-preference example kept, no analysis-preference pair")
    else:
        n_rp = min(len(rp), round(ratio * n_ap))
        keep_rp = sorted(rng.sample(rp, n_rp), key=rp.index)
        keep_ap = sorted(rng.sample(ap, n_ap), key=ap.index)
        note = None
    kept = {id(x) for x in keep_rp + keep_ap}
    left_out = [{"id": x["id"], "kind": x.get("kind"),
                 "reason": f"over the {ratio:g}:1 ratio"} for x in rp + ap if id(x) not in kept]
    mix = keep_rp + keep_ap
    rng.shuffle(mix)
    acc = {"ratio": ratio, "response": len(keep_rp), "analysis": len(keep_ap), "response_candidates": len(rp),
           "analysis_candidates": len(ap), "left_out": left_out, "note": note}
    return mix, acc


class JudgeDataStep(RowStep[JudgeDataOptions]):
    """Build ReflectRM's training mix: N analyses per labelled pair; easy pairs dropped; RP + AP data mixed 4:1."""

    name = "judge-data"
    Options = JudgeDataOptions
    model_roles = {"judge": ModelRole("chat", "The base model whose analyses are sampled", prefix="--")}
    output_key = "judge_data"
    files = {"mix": "the training mix (<output>.mix.jsonl)", "mix_summary": "its accounting (<output>.mix.json)"}
    manifest_sections = ("judge_data",)
    code = ("evaluate/judge_data.py", "evaluate/judge.py", "evaluate/judge_parse.py", "prompts/judge")
    require_output = False
    produces_data = False
    #: attached by hand as ``reflectkit judge build-data`` (reflectkit.evaluate.cli)
    cli_command = False
    cli_plumbing = ("run_dir", "limit", "dry_run", "restart", "map", "quiet")
    input_help = "llmbar, judgebench, or a labelled pairwise file (LLMBar / JudgeBench shape, or question, " \
                 "answer_1, answer_2, label)."
    stage_output = "pairs.jsonl"

    @cached_property
    def prompt_set(self) -> PromptSet:
        return load_prompt_set("judge", self.options.prompt_set)

    def validate(self) -> None:
        self.spec("judge").check("--")
        self.prompt_set["analysis.user"], self.prompt_set["compare.user"]  # a UserError when missing

    def config(self) -> dict[str, Any]:
        cfg = self.options.fingerprint_dict()
        cfg["prompt_set_sha256"] = self.prompt_set.sha256
        return cfg

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> Dataset:
        from reflectkit.evaluate.judge_step import BENCHES, bench_or_file

        if input is None:
            raise UserError(f"judge build-data needs a benchmark ({', '.join(BENCHES)}) or a labelled pairwise file")
        return bench_or_file(input, data=self.options.data, limit=limit, subsets=self.options.subset,
                             mapping=mapping)

    def estimate(self, records: list[Record]) -> dict[str, Any]:
        n = self.options.n
        pt = sum(estimate_tokens(r.raw["question"] + r.raw["answer_1"] + r.raw["answer_2"]) + 250 for r in records)
        return {"rows": len(records), "pairs": len(records), "oracle_calls": n * len(records),
                "prompt_tokens_at_least": n * pt, "max_completion_tokens": n * len(records) * self.options.max_tokens}

    def messages(self, key: str, **values: str) -> list[dict[str, str]]:
        ps = self.prompt_set
        return [{"role": "system", "content": ps[f"{key}.system"]},
                {"role": "user", "content": fill(ps[f"{key}.user"], **values)}]

    async def process(self, rec: Record, ctx: RunContext) -> RowResult:
        o, raw = self.options, rec.raw
        swapped = bool(_coin(o.seed, "order", rec.id))  # the pair is shown in one seeded random order
        first, second = (raw["answer_2"], raw["answer_1"]) if swapped else (raw["answer_1"], raw["answer_2"])
        label = {"1": "2", "2": "1"}[raw["label"]] if swapped else raw["label"]
        msgs = self.messages("analysis", question=raw["question"], answer_1=first, answer_2=second)
        model = ctx.model("judge")
        results = await asyncio.gather(*[
            model.chat(msgs, SamplingParams(temperature=o.temperature, top_p=1.0, max_tokens=o.max_tokens, seed=i),
                       prompt_version=self.prompt_set.version) for i in range(o.n)])
        analyses = []
        for i, res in enumerate(results):
            verdict, _ = parse_verdict(res.text)
            analyses.append({"sample": i, "verdict": verdict, "correct": verdict == label, "text": res.text})
        n_ok = sum(a["correct"] for a in analyses)
        category = "easy" if n_ok == o.n else "hard" if n_ok == 0 else "mixed"
        examples: list[dict[str, Any]] = []
        if category != "easy":
            examples.append({"id": f"{rec.id}/rp", "kind": "response", "source_id": rec.id, "prompt": msgs,
                             "answer": label})
        if category == "mixed":
            good = [a for a in analyses if a["correct"]]
            bad = [a for a in analyses if not a["correct"]]
            rng = random.Random(f"{o.seed}\0ap\0{rec.id}")
            g, b = rng.choice(good), rng.choice(bad)
            good_is_a = rng.random() < 0.5
            a_text, b_text = (g["text"], b["text"]) if good_is_a else (b["text"], g["text"])
            examples.append({"id": f"{rec.id}/ap", "kind": "analysis", "source_id": rec.id,
                             "prompt": self.messages("compare", question=raw["question"], answer_1=first,
                                                     answer_2=second, analysis_a=a_text, analysis_b=b_text),
                             "answer": "A" if good_is_a else "B", "samples": [g["sample"], b["sample"]]})
        ctx.count(f"{category}_pairs")
        reason = f"all {o.n} analyses right: dropped from the training mix" if category == "easy" else None
        return RowResult(category, reason, rk={"shown_swapped": swapped, "label_shown": label, "n_correct": n_ok,
                                               "analyses": analyses, "examples": examples},
                         prompt_tokens=sum(r.prompt_tokens for r in results),
                         completion_tokens=sum(r.completion_tokens for r in results))

    def finish(self, ctx: RunContext, results: ResultReader) -> None:
        rp: list[dict[str, Any]] = []
        ap: list[dict[str, Any]] = []
        cats: dict[str, int] = {}
        for _rec, rr in results:
            cats[rr.status] = cats.get(rr.status, 0) + 1
            for ex in rr.rk.get("examples", []):
                (rp if ex["kind"] == "response" else ap).append(ex)
        mix, acc = mix_examples(rp, ap, self.options.ratio, self.options.seed)
        acc["pairs_by_category"] = dict(sorted(cats.items()))
        base = Path(ctx.output) if ctx.output is not None else ctx.run_dir / "pairs.jsonl"
        stem = base.name[: -len(base.suffix)] if base.suffix else base.name
        mix_path = base.with_name(f"{stem}.mix.jsonl").absolute()
        ctx.write_file("mix", mix_path, dumps_jsonl(mix))
        acc["mix"] = str(mix_path)
        ctx.write_file("mix_summary", base.with_name(f"{stem}.mix.json").absolute(),
                       json.dumps(acc, indent=2) + "\n")
        ctx.state["mix"] = acc

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        acc = ctx.state.get("mix")
        return {"judge_data": {k: v for k, v in acc.items() if k != "left_out"} | {"left_out": len(acc["left_out"])}} \
            if acc else {}

    def details(self, ctx: RunContext) -> dict[str, Any]:
        return dict(ctx.state.get("mix") or {})

    def summary_lines(self, summary: Any) -> list[str]:
        a = summary.details
        if not a:
            return []
        lines = [f"judge build-data: pairs by category {a['pairs_by_category']}; mix {a['response']} response-"
                 f"preference + {a['analysis']} analysis-preference examples ({a['ratio']:g}:1), "
                 f"{len(a['left_out'])} left out by the ratio", f"  mix: {a['mix']}"]
        if a.get("note"):
            lines.append(f"  note: {a['note']}")
        return lines


__all__ = ["JudgeDataOptions", "JudgeDataStep", "mix_examples", "build_data"]


def build_data(input: Any, output: str | Path | None = None, **kwargs: Any) -> Any:
    """Python API of ``reflectkit judge build-data`` (the step's options, ``models={"judge": spec}``, plumbing)."""
    from reflectkit.engine.api import run

    return run(JudgeDataStep, input, output, **kwargs)
