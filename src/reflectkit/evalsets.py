"""Built-in evaluation / benchmark sets, addressable by name.

Files are read from the shared data directory: ``--data-dir``, else ``$REFLECTKIT_DATA_DIR``, else the first of
``./shared/data``, ``../shared/data`` (relative to the working directory) and ``<repo>/../shared/data`` that exists.
Each item becomes an :class:`EvalItem` with a stable id, the question text, an optional input and an optional
reference answer. Any user file works too, with a field mapping (see :func:`load_evalset`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reflectkit.errors import UserError

ENV_DATA_DIR = "REFLECTKIT_DATA_DIR"


@dataclass
class EvalItem:
    id: str
    question: str
    input: str = ""
    answer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        return f"{self.question}\n\n{self.input}" if self.input else self.question


def _gsm8k(i: int, r: dict[str, Any]) -> EvalItem:
    return EvalItem(f"gsm8k-{i}", r["question"], answer=r["answer"])


def _ifeval(i: int, r: dict[str, Any]) -> EvalItem:
    return EvalItem(str(r["key"]), r["prompt"], extra={"instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]})


def _vicuna(i: int, r: dict[str, Any]) -> EvalItem:
    return EvalItem(f"vicuna-{r['question_id']}", r["text"], extra={"category": r.get("category")})


def _koala(i: int, r: dict[str, Any]) -> EvalItem:
    return EvalItem(str(r["id"]), r["prompt"])


def _wizardlm(i: int, r: dict[str, Any]) -> EvalItem:
    return EvalItem(f"wizardlm-{r['idx']}", r["Instruction"], extra={"skill": r.get("Skill"), "difficulty": r.get("Difficulty")})


def _sinstruct(i: int, r: dict[str, Any]) -> EvalItem:
    inst = r.get("instances") or [{}]
    return EvalItem(str(r["id"]), r["instruction"], input=inst[0].get("input", "") or "", answer=inst[0].get("output"))


def _lima(i: int, r: dict[str, Any]) -> EvalItem:
    conv = r["conversations"]
    text = conv if isinstance(conv, str) else conv[0]
    return EvalItem(f"lima-{i}", text)


#: name -> (path relative to the data dir, row converter, description)
BUILTIN: dict[str, tuple[str, Callable[[int, dict[str, Any]], EvalItem], str]] = {
    "gsm8k": ("benchmarks/gsm8k_test.jsonl", _gsm8k, "GSM8K test (1,319 math word problems with answers)"),
    "gsm8k_train": ("instructions/gsm8k_train.jsonl", _gsm8k, "GSM8K train (7,473; few-shot exemplars, hard negatives)"),
    "ifeval": ("benchmarks/ifeval_input_data.jsonl", _ifeval, "IFEval prompts (541)"),
    "vicuna": ("benchmarks/pairwise_eval_sets/vicuna_test_set.jsonl", _vicuna, "Vicuna eval set (80)"),
    "koala": ("benchmarks/pairwise_eval_sets/koala_test_set.jsonl", _koala, "Koala eval set (180)"),
    "wizardlm": ("benchmarks/pairwise_eval_sets/wizardlm_test_set.jsonl", _wizardlm, "WizardLM eval set (218)"),
    "sinstruct": ("benchmarks/pairwise_eval_sets/sinstruct_test_set.jsonl", _sinstruct, "Self-Instruct user-oriented eval set (252)"),
    "lima": ("benchmarks/pairwise_eval_sets/lima_test_set.jsonl", _lima, "LIMA eval set (300)"),
}
PAIRWISE_SETS = ("vicuna", "koala", "wizardlm", "sinstruct", "lima")


def data_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_dir():
            raise UserError(f"--data-dir {p}: not a directory")
        return p
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise UserError(f"{ENV_DATA_DIR}={p}: not a directory")
        return p
    repo = Path(__file__).resolve().parents[2]
    for cand in (Path.cwd() / "shared" / "data", Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    raise UserError(f"cannot find the shared data directory; pass --data-dir or set {ENV_DATA_DIR}")


def is_builtin(name: str) -> bool:
    return name in BUILTIN


def available() -> str:
    return ", ".join(f"{k}" for k in BUILTIN)


def builtin_path(name: str, data: str | Path | None = None) -> Path:
    if name not in BUILTIN:
        raise UserError(f"unknown benchmark {name!r}; available: {available()} (or give a file path)")
    return data_dir(data) / BUILTIN[name][0]


def load_evalset(name_or_path: str | Path, *, data: str | Path | None = None, mapping: dict[str, str] | None = None,
                 limit: int | None = None) -> list[EvalItem]:
    """Load a built-in set by name, or a user JSONL/JSON file with ``mapping`` (question=..., answer=..., id=...)."""
    name = str(name_or_path)
    if name in BUILTIN:
        rel, conv, _ = BUILTIN[name]
        path = data_dir(data) / rel
        if not path.exists():
            raise UserError(f"benchmark {name!r}: file {path} not found (check --data-dir)")
        items = []
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if line.strip():
                    try:
                        items.append(conv(i, json.loads(line)))
                    except (KeyError, json.JSONDecodeError, TypeError) as exc:
                        raise UserError(f"{path}:{i + 1}: unexpected benchmark row ({exc})") from None
                if limit and len(items) >= limit:
                    break
        return items
    path = Path(name)
    if not path.exists():
        if os.sep not in name and "." not in name:
            raise UserError(f"unknown benchmark {name!r}; available: {available()} (or give a file path)")
        raise UserError(f"{path}: benchmark file not found")
    from reflectkit.data.io import read_dataset

    m = dict(mapping or {})
    qcol = m.pop("question", None)
    if qcol:
        m["instruction"] = qcol
    ds = read_dataset(path, mapping=m, require_output=False)
    items = []
    for r in ds.records:
        ans = r.extra.get("answer") if "answer" in m else (r.output or None)
        rid = str(r.raw.get(m.get("id", "id"), r.id))
        items.append(EvalItem(rid, r.instruction, r.input, ans, {k: v for k, v in r.extra.items() if k != "answer"}))
        if limit and len(items) >= limit:
            break
    return items
