"""Load the benchmarks to decontaminate against: built-in sets by name (:mod:`reflectkit.evalsets`) or user files.

Each benchmark item contributes its *question* text (question + input) and, where the benchmark has one, its
*answer* (GSM8K's reference solution, Self-Instruct's reference output, or a mapped ``answer`` field).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from reflectkit.errors import UserError
from reflectkit.evalsets import BUILTIN, PAIRWISE_SETS, EvalItem, builtin_path, load_evalset

#: ``--against all`` expands to these (the sets the Reflection-Tuning papers report on).
ALL_BENCHMARKS = ("gsm8k", "ifeval", *PAIRWISE_SETS)


@dataclass(frozen=True)
class BenchItem:
    benchmark: str
    index: int  # position within its benchmark
    id: str
    question: str  # question text, with the item's input appended
    answer: str  # "" when the benchmark has no answer


@dataclass
class Benchmark:
    name: str
    source: str  # file path
    sha256: str
    items: list[BenchItem]
    skipped_empty: int = 0

    @property
    def fields(self) -> list[str]:
        return ["question", "answer"] if any(i.answer for i in self.items) else ["question"]


def expand_names(against: list[str]) -> list[str]:
    """Split comma-separated values, expand ``all``, drop duplicates (order kept)."""
    out: list[str] = []
    for value in against:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            for name in ALL_BENCHMARKS if part == "all" else (part,):
                if name not in out:
                    out.append(name)
    if not out:
        raise UserError("--against: give at least one benchmark (a name such as gsm8k, or a file)")
    return out


def _file_sha(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise UserError(f"{path}: cannot read benchmark file ({exc.strerror})") from None


def _item_text(it: EvalItem) -> str:
    return f"{it.question}\n{it.input}" if it.input else it.question


def load_benchmark(name_or_path: str, *, data_dir: str | Path | None = None,
                   mapping: dict[str, str] | None = None) -> Benchmark:
    """Load one benchmark. Raises :class:`UserError` for unknown names, missing/empty files and missing fields."""
    name = str(name_or_path)
    if name in BUILTIN:
        path = builtin_path(name, data_dir)
        label = name
    else:
        path = Path(name)
        label = path.stem
        check_name(name)
    if path.exists() and path.is_file() and not path.read_bytes().strip():
        raise UserError(f"{path}: benchmark file is empty")
    raw_items = load_evalset(name, data=data_dir, mapping=mapping if name not in BUILTIN else None)
    if not raw_items:
        raise UserError(f"{path}: benchmark file has no items")
    items: list[BenchItem] = []
    skipped = 0
    for i, it in enumerate(raw_items):
        q = _item_text(it)
        if not q.strip():
            skipped += 1
            continue
        ans = it.answer if isinstance(it.answer, str) else ""
        items.append(BenchItem(label, i, str(it.id), q, ans))
    if not items:
        raise UserError(f"{path}: every benchmark item has an empty question (check --bench-map)")
    return Benchmark(label, str(path), _file_sha(path), items, skipped)


def load_benchmarks(against: list[str], *, data_dir: str | Path | None = None,
                    mapping: dict[str, str] | None = None) -> list[Benchmark]:
    benches = [load_benchmark(n, data_dir=data_dir, mapping=mapping) for n in expand_names(against)]
    seen: set[str] = set()
    for b in benches:
        if b.name in seen:
            raise UserError(f"two benchmarks are both called {b.name!r}; rename one of the files")
        seen.add(b.name)
    return benches


#: The benchmark fields ``--bench-map`` can rename.
BENCH_FIELDS = ("question", "input", "answer", "id")


def parse_bench_map(spec: str | None) -> dict[str, str]:
    """``--bench-map question=prompt,answer=solution`` (fields: question, input, answer, id)."""
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, col = (s.strip() for s in part.partition("="))
        if not sep or not col:
            raise UserError(f"--bench-map: expected FIELD=COLUMN pairs separated by commas, got {part!r}")
        if key not in BENCH_FIELDS:
            raise UserError(f"--bench-map: unknown field {key!r}; mappable fields are {', '.join(BENCH_FIELDS)}")
        out[key] = col
    return out


def format_bench_map(mapping: dict[str, str] | None) -> str | None:
    """The inverse of :func:`parse_bench_map` (a Python/YAML mapping -> the ``--bench-map`` string)."""
    if not mapping:
        return None
    return ",".join(f"{k}={v}" for k, v in mapping.items())


def looks_like_path(name: str) -> bool:
    """A benchmark given as a file (resolved against a pipeline file's directory) rather than a built-in name."""
    return "/" in name or name.endswith((".json", ".jsonl", ".csv", ".parquet"))


def check_name(name: str) -> None:
    """The part of :func:`load_benchmark`'s checks that needs no file: an unknown built-in name."""
    if name not in BUILTIN and not Path(name).exists() and "/" not in name and "." not in name:
        raise UserError(f"unknown benchmark {name!r}; available: {', '.join(BUILTIN)}, all (or give a file path)")
