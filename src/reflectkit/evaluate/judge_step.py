"""The pairwise judge as an engine Step (both orders per pair; cached, resumable), and its inputs/outputs.

Judgment rows (JSONL): ``id``, ``question``, ``answer_1`` (model A / output_1), ``answer_2``, ``review`` (order 1:
answer_1 shown first), ``review_reverse`` (answers swapped), ``scores``, ``scores_reverse`` and, under
``reflectkit.judge``, ``verdict``/``verdict_reverse`` (position preferred in that order: "1", "2", "tie" or null),
the call count and, for the reflective judge, every analysis and comparison.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from reflectkit.data.io import Dataset, write_dataset
from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult, estimate_tokens
from reflectkit.errors import UserError
from reflectkit.evaluate.answersfile import read_jsonl, response_of, row_id
from reflectkit.evaluate.judge import JudgeConfig, OrderJudge, make_judge
from reflectkit.evaluate.judge_parse import Outcome, parse_score, scores_outcome
from reflectkit.llm.cache import CachedChatModel

HOISTED = ("review", "review_reverse", "scores", "scores_reverse")


class JudgeStep:
    name = "judge"

    def __init__(self, model: CachedChatModel, cfg: JudgeConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.judge: OrderJudge = make_judge(model, cfg)
        self.prompt_set = self.judge.prompt_set

    def models(self) -> dict[str, CachedChatModel]:
        return {"judge": self.model}

    def config(self) -> dict[str, Any]:
        cfg = {"method": self.cfg.method, "max_tokens": self.cfg.max_tokens, "prompt_set_sha256": self.prompt_set.sha256}
        if self.cfg.method == "reflective":
            cfg.update(k=self.cfg.k, sample_temperature=self.cfg.sample_temperature)
        return cfg

    def estimate(self, records: list[Record]) -> dict[str, int]:
        per_order = 1 if self.cfg.method == "plain" else 2 * self.cfg.k - 1
        pt = sum(estimate_tokens(r.raw["question"] + r.raw["answer_1"] + r.raw["answer_2"]) + 250 for r in records)
        return {"pairs": len(records), "max_judge_calls": 2 * per_order * len(records),
                "prompt_tokens_at_least": 2 * per_order * pt}

    async def process(self, rec: Record) -> RowResult:
        q, a1, a2 = rec.raw["question"], rec.raw["answer_1"], rec.raw["answer_2"]
        fwd, rev = await asyncio.gather(self.judge.judge(q, a1, a2), self.judge.judge(q, a2, a1))
        rk: dict[str, Any] = {
            "method": self.cfg.method, "verdict": fwd["outcome"], "verdict_reverse": rev["outcome"],
            "calls": fwd["calls"] + rev["calls"],
        }
        for key, res in (("", fwd), ("_reverse", rev)):
            rk["review" + key] = res.get("review")
            rk["scores" + key] = res.get("scores")
            if self.cfg.method == "reflective":
                rk["details" + key] = {k: res[k] for k in ("analyses", "anchor", "comparisons", "votes")}
        unparsed = [name for name, r in (("order 1", fwd), ("order 2", rev)) if r["outcome"] is None]
        return RowResult("judged" if not unparsed else "unparsed",
                         f"unparsed judgment in {' and '.join(unparsed)}" if unparsed else None, rk=rk)


def _dataset(path: Path, raws: list[dict[str, Any]]) -> Dataset:
    records = [Record(id=str(r["id"]), index=i, instruction=r["question"], output=r["answer_1"], raw=r)
               for i, r in enumerate(raws)]
    payload = json.dumps(raws, sort_keys=True, ensure_ascii=False, default=str)
    return Dataset(path, "jsonl", "alpaca", records, [], hashlib.sha256(payload.encode()).hexdigest(),
                   {"instruction": "question", "output": "answer_1"}, len(records))


def _question(row: dict[str, Any]) -> str:
    q = row.get("prompt", row.get("question", row.get("instruction")))
    if not isinstance(q, str):
        return ""
    return f"{q}\n\n{row['input']}" if isinstance(row.get("input"), str) and row["input"] else q


def pairwise_dataset(answers_a: Path, answers_b: Path, *, response_field: str | None = None,
                     limit: int | None = None) -> Dataset:
    """Join two answer files on ``id``; both must answer the same questions."""
    rows_a, rows_b = read_jsonl(answers_a), read_jsonl(answers_b)
    by_b = {}
    for r in rows_b:
        by_b[row_id(r, answers_b)] = r
    ids_a = [row_id(r, answers_a) for r in rows_a]
    missing_b = [i for i in ids_a if i not in by_b]
    missing_a = sorted(set(by_b) - set(ids_a))
    if missing_b or missing_a:
        where, first = (answers_b, missing_b[0]) if missing_b else (answers_a, missing_a[0])
        raise UserError(f"{where}: no answer for id {first!r} ({len(missing_b) + len(missing_a)} ids are not in both "
                        "files; judge answers to the same questions)")
    raws = []
    for r, rid in zip(rows_a, ids_a):
        q = _question(r) or _question(by_b[rid])
        if not q:
            raise UserError(f"{answers_a}:{r.get('_line', '?')}: no question text (expected 'prompt' or 'question')")
        raws.append({"id": rid, "question": q, "answer_1": response_of(r, answers_a, response_field),
                     "answer_2": response_of(by_b[rid], answers_b, response_field)})
        if limit and len(raws) >= limit:
            break
    return _dataset(answers_a, raws)


BENCHES = ("llmbar", "judgebench")
LLMBAR_SUBSETS = ("Natural", "Adversarial_Neighbor", "Adversarial_GPTInst", "Adversarial_GPTOut", "Adversarial_Manual")
JUDGEBENCH_FILES = ("judgebench_gpt4o", "judgebench_claude35")


def bench_dataset(name: str, *, data: str | Path | None = None, limit: int | None = None,
                  subsets: list[str] | None = None) -> Dataset:
    """LLMBar (5 subsets, 419 pairs) or JudgeBench (350 + 270 pairs) from ``shared/data/judge``; ``limit`` is per
    subset. ``label`` is the position ("1"/"2") of the better answer in order 1."""
    from reflectkit.evalsets import data_dir

    if name not in BENCHES:
        raise UserError(f"unknown judge benchmark {name!r}; available: {', '.join(BENCHES)}")
    root = data_dir(data) / "judge" / name
    all_subsets = LLMBAR_SUBSETS if name == "llmbar" else JUDGEBENCH_FILES
    chosen = subsets or list(all_subsets)
    for s in chosen:
        if s not in all_subsets:
            raise UserError(f"--subset {s!r}: {name} has {', '.join(all_subsets)}")
    raws: list[dict[str, Any]] = []
    for s in chosen:
        path = root / (f"{s}.json" if name == "llmbar" else f"{s}.jsonl")
        if not path.exists():
            raise UserError(f"{path}: judge benchmark file not found (check --data-dir)")
        items = json.loads(path.read_text(encoding="utf-8")) if name == "llmbar" else read_jsonl(path, what="benchmark")
        for i, it in enumerate(items):
            if limit and i >= limit:
                break
            try:
                if name == "llmbar":
                    raw = {"id": f"{s}-{i}", "question": it["input"], "answer_1": it["output_1"],
                           "answer_2": it["output_2"], "label": str(it["label"]), "subset": s}
                else:
                    raw = {"id": f"{s}-{it['pair_id']}", "question": it["question"], "answer_1": it["response_A"],
                           "answer_2": it["response_B"], "label": {"A>B": "1", "B>A": "2"}[it["label"]], "subset": s,
                           "source": it.get("source")}
            except KeyError as exc:
                raise UserError(f"{path}:{i + 1}: unexpected benchmark row (missing or bad {exc})") from None
            raws.append(raw)
    return _dataset(root, raws)


def hoist_reviews(path: Path) -> None:
    """Put review/review_reverse/scores/scores_reverse at the top level of every judgment row (the format
    ``judge summarize`` reads and upstream Cherry_LLM review files use)."""
    rows = read_jsonl(path, what="judgments")
    out = []
    for r in rows:
        r.pop("_line", None)
        stage = (r.get("reflectkit") or {}).get("judge") or {}
        new = {k: v for k, v in r.items() if k != "reflectkit"}
        for k in HOISTED:
            new[k] = stage.get(k)
        new["reflectkit"] = r.get("reflectkit")
        out.append(new)
    write_dataset(out, path)


def row_outcomes(row: dict[str, Any], path: Path | str = "<judgments>") -> tuple[Outcome, Outcome, str]:
    """(order-1 outcome, order-2 outcome, source) of a judgment row.

    Rows with ``review``/``review_reverse`` text are re-parsed with the verbatim score-line rule (so published
    judgments can be re-checked); reflective-judge rows use their recorded verdicts; failed rows are unparsed."""
    stage = (row.get("reflectkit") or {}).get("judge") if isinstance(row.get("reflectkit"), dict) else None
    if isinstance(row.get("review"), str) or isinstance(row.get("review_reverse"), str):
        outs = []
        for key in ("review", "review_reverse"):
            v = row.get(key)
            if v is not None and not isinstance(v, str):
                raise UserError(f"{path}:{row.get('_line', '?')}: {key!r} must be the judge's text (a string)")
            outs.append(scores_outcome(parse_score(v)) if isinstance(v, str) else None)
        return outs[0], outs[1], "review"
    if isinstance(stage, dict) and "verdict" in stage:
        return stage.get("verdict"), stage.get("verdict_reverse"), "verdict"
    if isinstance(stage, dict) and stage.get("status") == "failed":
        return None, None, "failed"
    raise UserError(f"{path}:{row.get('_line', '?')}: not a judgment row (needs 'review' and 'review_reverse', "
                    "or a reflectkit.judge verdict)")
