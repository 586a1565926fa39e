"""The fast scorer: score many (instruction, input, output) triples with one student, batched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from reflectkit.scoring.coherence import coherences
from reflectkit.scoring.losses import mean_losses
from reflectkit.scoring.metrics import score_dict
from reflectkit.scoring.plan import PARTS, Sequence_, Tokenize, build_plans
from reflectkit.scoring.wrappers import make_wrapper

Triple = tuple[str, str, str]


class Scorer:
    """Scores triples; ``score(triples)`` returns one score dict per triple, ``None`` where the output is empty."""

    def __init__(self, model: Any, tokenizer: Any, *, prompt: str = "vicuna", max_length: int = 2048,
                 token_budget: int = 4096, cache_dir: Path | None = None, coherence: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.wrapper = make_wrapper(prompt, tokenizer)
        self.tokenize = Tokenize(tokenizer)
        self.max_length = max_length
        self.token_budget = max(token_budget, max_length)
        self.cache_dir = cache_dir
        self.coherence = coherence
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad or 0)
        self.work: dict[str, int] = {}  # cumulative body tokens / padding / LM-head positions (for benchmarks)

    def coherences(self, triples: Sequence[Triple]) -> list[float | None]:
        return coherences(triples, enabled=self.coherence, cache_dir=self.cache_dir)

    def score(self, triples: Sequence[Triple]) -> list[dict[str, Any] | None]:
        keep = [k for k, t in enumerate(triples) if t[2].strip()]
        todo = [triples[k] for k in keep]
        plans = build_plans(todo, self.wrapper, self.tokenize, self.max_length)
        seqs: list[Sequence_] = [p.seqs[part] for p in plans for part in PARTS]
        losses = mean_losses(self.model, seqs, token_budget=self.token_budget, pad_id=self.pad_id, work=self.work)
        cohs = self.coherences(todo)
        out: list[dict[str, Any] | None] = [None] * len(triples)
        for j, k in enumerate(keep):
            per = {part: losses[4 * j + n] for n, part in enumerate(PARTS)}
            out[k] = score_dict(plans[j], per, cohs[j], triples[k][2])
        return out
