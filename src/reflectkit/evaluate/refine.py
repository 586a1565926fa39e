"""Self-Refine at inference time (Madaan et al., 2023): draft -> critique -> revise, up to N rounds.

Stops when the critique says ``NO CHANGES NEEDED`` or when a revision no longer changes the answer. Every round
(critique and revision) is kept under ``reflectkit.refine.rounds``; ``response`` is the final answer, so the output
is scored by ``reflectkit eval gsm8k`` / ``eval ifeval`` like any answers file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult
from reflectkit.evalsets import EvalItem
from reflectkit.evaluate.generate import GenerateConfig, PromptBuilder, _fill
from reflectkit.llm.base import SamplingParams
from reflectkit.llm.cache import CachedChatModel
from reflectkit.prompts import load_prompt_set

STOP_PHRASE = "NO CHANGES NEEDED"


def _norm(s: str) -> str:
    return " ".join(s.split())


@dataclass
class RefineConfig:
    rounds: int = 2
    critique_max_tokens: int = 512


class RefineStep:
    name = "refine"

    def __init__(self, model: CachedChatModel, gen: GenerateConfig, cfg: RefineConfig, items: list[EvalItem],
                 data: str | Path | None = None) -> None:
        from reflectkit.errors import UserError

        if cfg.rounds < 0:
            raise UserError(f"--rounds must be >= 0, got {cfg.rounds}")
        self.model = model
        self.gen = gen
        self.cfg = cfg
        self.builder = PromptBuilder(gen, data)
        self.prompt_set = load_prompt_set("evaluate", "refine")
        self.items = {it.id: it for it in items}

    def models(self) -> dict[str, CachedChatModel]:
        return {"model": self.model}

    def config(self) -> dict[str, Any]:
        return {"generate": asdict(self.gen), "refine": asdict(self.cfg), "prompt_set_sha256": self.prompt_set.sha256,
                "gsm8k_prompt_sha256": self.builder.prompts.sha256}

    async def _chat(self, user: str, max_tokens: int) -> tuple[str, int, int]:
        msgs = ([{"role": "system", "content": self.gen.system}] if self.gen.system else []) + [{"role": "user", "content": user}]
        res = await self.model.chat(msgs, SamplingParams(temperature=self.gen.temperature, top_p=self.gen.top_p,
                                                         max_tokens=max_tokens), prompt_version=self.prompt_set.version)
        return res.text, res.prompt_tokens, res.completion_tokens

    async def process(self, rec: Record) -> RowResult:
        item = self.items[rec.id]
        draft = await self.model.chat(self.builder.messages(item), self.builder.sampling(), prompt_version=self.builder.version)
        answer = draft.text
        pt, ct = draft.prompt_tokens, draft.completion_tokens
        rounds: list[dict[str, Any]] = []
        stop = "max_rounds"
        question = item.prompt_text
        for n in range(1, self.cfg.rounds + 1):
            feedback, p, c = await self._chat(_fill(self.prompt_set["critique"], question=question, answer=answer),
                                              self.cfg.critique_max_tokens)
            pt, ct = pt + p, ct + c
            if STOP_PHRASE.lower() in feedback.lower():
                rounds.append({"round": n, "feedback": feedback, "revision": None})
                stop = "critique_says_no_change"
                break
            revision, p, c = await self._chat(
                _fill(self.prompt_set["revise"], question=question, answer=answer, feedback=feedback), self.gen.max_tokens)
            pt, ct = pt + p, ct + c
            rounds.append({"round": n, "feedback": feedback, "revision": revision})
            if _norm(revision) == _norm(answer):
                stop = "revision_unchanged"
                break
            answer = revision
        rk = {"model": self.model.identity, "draft": draft.text, "rounds": rounds, "n_rounds": len(rounds),
              "stop_reason": stop, "tokens": {"prompt": pt, "completion": ct}}
        return RowResult("refined" if answer != draft.text else "unchanged", None, rk=rk, output=answer,
                         prompt_tokens=pt, completion_tokens=ct)
