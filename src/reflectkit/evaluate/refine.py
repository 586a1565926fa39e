"""Self-Refine at inference time (Madaan et al., 2023): draft -> critique -> revise, up to N rounds.

Stops when the critique says ``NO CHANGES NEEDED`` or when a revision no longer changes the answer. Every round
(critique and revision) is kept under ``reflectkit.refine.rounds``; ``response`` is the final answer, so the output
is scored by ``reflectkit eval gsm8k`` / ``eval ifeval`` like any answers file.

:class:`RefineStep` reads its eval set and drafts exactly like :class:`~reflectkit.evaluate.generate.GenerateStep`;
``reflectkit refine`` is its generated command.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult, RunContext, option
from reflectkit.evaluate.generate import GenerateOptions, GenerateStep, _fill
from reflectkit.llm.base import SamplingParams, stable_identity
from reflectkit.prompts import PromptSet, load_prompt_set

STOP_PHRASE = "NO CHANGES NEEDED"


def _norm(s: str) -> str:
    return " ".join(s.split())


class RefineOptions(GenerateOptions):
    rounds: int = option(2, "Max critique -> revise rounds.", ge=0)
    critique_max_tokens: int = option(512, "Max tokens of each critique.", ge=1)


class RefineStep(GenerateStep):
    """Self-Refine at inference time: draft -> critique -> revise (every round kept in the record)."""

    name = "refine"
    Options = RefineOptions  # type: ignore[assignment]
    code = ("evaluate/refine.py", "evaluate/generate.py", "prompts/evaluate")
    #: attached by hand as ``reflectkit refine`` (reflectkit.evaluate.cli)
    cli_command = False

    options: RefineOptions  # type: ignore[assignment]

    @cached_property
    def refine_prompts(self) -> PromptSet:
        return load_prompt_set("evaluate", "refine")

    def config(self) -> dict[str, Any]:
        return {**self.options.fingerprint_dict(), "prompt_set_sha256": self.refine_prompts.sha256,
                "gsm8k_prompt_sha256": self.prompt_set.sha256}

    def estimate(self, records: list[Record]) -> dict[str, int]:
        est = super().estimate(records)
        o = self.options
        calls = len(records) * (1 + 2 * o.rounds)
        return {**est, "model_calls": calls,
                "max_completion_tokens": len(records) * (o.max_tokens * (1 + o.rounds) + o.critique_max_tokens * o.rounds)}

    async def _chat(self, model: Any, user: str, max_tokens: int) -> tuple[str, int, int]:
        o = self.options
        msgs = ([{"role": "system", "content": o.system}] if o.system else []) + [{"role": "user", "content": user}]
        res = await model.chat(msgs, SamplingParams(temperature=o.temperature, top_p=o.top_p, max_tokens=max_tokens),
                               prompt_version=self.refine_prompts.version)
        return res.text, res.prompt_tokens, res.completion_tokens

    async def process(self, rec: Record, ctx: RunContext) -> RowResult:
        model = ctx.model("model")
        draft = await model.chat(self._messages(rec), self.sampling(bool(rec.extra.get("_gsm8k"))),
                                 prompt_version=self.prompt_set.version)
        answer = draft.text
        pt, ct = draft.prompt_tokens, draft.completion_tokens
        rounds: list[dict[str, Any]] = []
        stop = "max_rounds"
        question = self._question(rec)
        prompts = self.refine_prompts
        for n in range(1, self.options.rounds + 1):
            feedback, p, c = await self._chat(model, _fill(prompts["critique"], question=question, answer=answer),
                                              self.options.critique_max_tokens)
            pt, ct = pt + p, ct + c
            if STOP_PHRASE.lower() in feedback.lower():
                rounds.append({"round": n, "feedback": feedback, "revision": None})
                stop = "critique_says_no_change"
                break
            revision, p, c = await self._chat(
                model, _fill(prompts["revise"], question=question, answer=answer, feedback=feedback),
                self.options.max_tokens)
            pt, ct = pt + p, ct + c
            rounds.append({"round": n, "feedback": feedback, "revision": revision})
            if _norm(revision) == _norm(answer):
                stop = "revision_unchanged"
                break
            answer = revision
        rk = {"model": stable_identity(model.identity), "draft": draft.text, "rounds": rounds, "n_rounds": len(rounds),
              "stop_reason": stop, "tokens": {"prompt": pt, "completion": ct}}
        return RowResult("refined" if answer != draft.text else "unchanged", None, rk=rk, output=answer,
                         prompt_tokens=pt, completion_tokens=ct)
