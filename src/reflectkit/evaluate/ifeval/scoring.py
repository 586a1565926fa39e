"""IFEval scoring: strict and loose, prompt- and instruction-level (upstream ``evaluation_lib.py``).

Upstream: google-research/google-research, ``instruction_following_eval/evaluation_lib.py``:

* :func:`instruction_following_strict` / :func:`instruction_following_loose` are upstream's
  ``test_instruction_following_strict`` / ``test_instruction_following_loose`` (renamed so that pytest does not
  collect them): an instruction is followed when ``response.strip()`` is non-empty and ``check_following`` is
  true; in loose mode, when that holds for any of the 8 :func:`loose_variants` of the response.
* the accuracies are those of ``print_report``: prompt-level = share of prompts whose instructions are all
  followed, instruction-level = followed instructions / all instructions, and per instruction id (tier 1) and per
  category (tier 0, the part before ``:``).

Beyond upstream: rows are matched to the input data by ``key`` (or ``id``) or by prompt text (exact, then
whitespace-normalised), unmatched or duplicated rows are errors, and Reflection-format answers are scored on their
``<output>`` part only (``output_only=True``, the default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectkit.answers import output_section
from reflectkit.data.io import existing_file
from reflectkit.errors import UserError
from reflectkit.evaluate.ifeval.instructions import INSTRUCTION_DICT, Instruction, InstructionArgsError, build_instruction


@dataclass
class InputExample:
    """One IFEval prompt (upstream ``InputExample``) with its source line."""

    key: int
    instruction_id_list: list[str]
    prompt: str
    kwargs: list[dict[str, Any]]
    line: int = 0


@dataclass
class OutputExample:
    """The verdicts for one prompt (upstream ``OutputExample``)."""

    instruction_id_list: list[str]
    prompt: str
    response: str
    follow_all_instructions: bool
    follow_instruction_list: list[bool]


def default_input_data() -> Path:
    """The built-in IFEval input file (``reflectkit.evalsets.builtin_path("ifeval")``)."""
    from reflectkit.evalsets import builtin_path

    return builtin_path("ifeval")


def read_prompt_list(path: str | Path) -> list[InputExample]:
    """The IFEval input JSONL (``key``, ``prompt``, ``instruction_id_list``, ``kwargs``; upstream
    ``read_prompt_list``). Every instruction is built once here, so bad arguments fail before any scoring."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: IFEval input data not found")
    out: list[InputExample] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{p}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(ex, dict) or not {"key", "prompt", "instruction_id_list", "kwargs"} <= set(ex):
                raise UserError(f"{p}:{lineno}: expected an object with key, prompt, instruction_id_list, kwargs")
            ids, kwargs = ex["instruction_id_list"], ex["kwargs"]
            if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
                raise UserError(f"{p}:{lineno}: instruction_id_list and kwargs must be lists of the same length")
            if not isinstance(ex["prompt"], str):
                raise UserError(f"{p}:{lineno}: prompt must be a string")
            try:
                key = int(ex["key"])
            except (TypeError, ValueError):
                raise UserError(f"{p}:{lineno}: key must be an integer, got {ex['key']!r}") from None
            item = InputExample(key=key, instruction_id_list=list(ids), prompt=ex["prompt"],
                                kwargs=[dict(k or {}) for k in kwargs], line=lineno)
            try:
                build_instructions(item)
            except InstructionArgsError as exc:
                raise UserError(f"{p}:{lineno}: {exc}") from None
            out.append(item)
    if not out:
        raise UserError(f"{p}: no IFEval prompts in the file")
    return out


def build_instructions(inp: InputExample) -> list[Instruction]:
    """The checkers of one prompt, as upstream builds them: ``build_description(**kwargs[i])`` for each id (no
    registered instruction takes a ``prompt`` argument, so upstream's second ``build_description(prompt=...)`` call
    never applies)."""
    return [build_instruction(iid, kw) for iid, kw in zip(inp.instruction_id_list, inp.kwargs)]


def loose_variants(response: str) -> list[str]:
    """The 8 responses tried in loose mode, in upstream order (``test_instruction_following_loose``): the response,
    with ``*`` removed, without its first line, last line, both, and each of those three with ``*`` removed."""
    r = response.split("\n")
    response_remove_first = "\n".join(r[1:]).strip()
    response_remove_last = "\n".join(r[:-1]).strip()
    response_remove_both = "\n".join(r[1:-1]).strip()
    revised_response = response.replace("*", "")
    revised_response_remove_first = response_remove_first.replace("*", "")
    revised_response_remove_last = response_remove_last.replace("*", "")
    revised_response_remove_both = response_remove_both.replace("*", "")
    return [
        response,
        revised_response,
        response_remove_first,
        response_remove_last,
        response_remove_both,
        revised_response_remove_first,
        revised_response_remove_last,
        revised_response_remove_both,
    ]


def instruction_following_strict(inp: InputExample, response: str) -> OutputExample:
    """Upstream ``test_instruction_following_strict`` for one prompt and its response."""
    is_following_list = [bool(response.strip() and ins.check_following(response)) for ins in build_instructions(inp)]
    return OutputExample(inp.instruction_id_list, inp.prompt, response, all(is_following_list), is_following_list)


def instruction_following_loose(inp: InputExample, response: str) -> OutputExample:
    """Upstream ``test_instruction_following_loose``: followed when any loose variant follows it."""
    all_responses = loose_variants(response)
    is_following_list: list[bool] = []
    for ins in build_instructions(inp):
        is_following = False
        for r in all_responses:
            if r.strip() and ins.check_following(r):
                is_following = True
                break
        is_following_list.append(is_following)
    return OutputExample(inp.instruction_id_list, inp.prompt, response, all(is_following_list), is_following_list)


# --------------------------------------------------------------------------------------------------- responses


def _where(row: dict[str, Any], index: int) -> str:
    if isinstance(row.get("_source"), str):
        return str(row["_source"])
    if row.get("_line") is not None:
        return f"line {row['_line']}"
    return f"row {index + 1}"


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _as_key(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _short(text: str, n: int = 100) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def load_responses(path: str | Path) -> list[dict[str, Any]]:
    """Response rows from a JSONL file (or a JSON array of objects).

    Accepts the upstream IFEval response format (``prompt``, ``response``) and ``reflectkit generate`` output
    (``id``/``key``, ``prompt``, ``response``). Every row keeps its fields and gains ``_source`` (``"path:line"``)
    and ``_line`` for error messages. A bad line, a row without ``response`` (a string or ``null``), or a row with
    neither ``key``/``id`` nor ``prompt`` is a :class:`UserError` naming the file and line.
    """
    p = existing_file(path, what="responses file", expected="a JSONL responses file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{p}: file is not valid UTF-8") from None
    items: list[tuple[int, Any]] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        items = [(i + 1, obj) for i, obj in enumerate(data)]
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise UserError(f"{p}:{lineno}: malformed JSON ({exc.msg}, column {exc.colno})") from None
    rows: list[dict[str, Any]] = []
    for lineno, obj in items:
        where = f"{p}:{lineno}"
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if "response" not in obj:
            raise UserError(f"{where}: no 'response' field (expected prompt/key/id and response)")
        if obj["response"] is not None and not isinstance(obj["response"], str):
            raise UserError(f"{where}: 'response' must be a string, got {type(obj['response']).__name__}")
        has_key = _as_key(obj.get("key")) is not None or _as_key(obj.get("id")) is not None
        if not has_key and not isinstance(obj.get("prompt"), str):
            raise UserError(f"{where}: row has neither an IFEval 'key'/'id' nor a 'prompt' to match it by")
        row = dict(obj)
        row["_source"] = where
        row["_line"] = lineno
        rows.append(row)
    if not rows:
        raise UserError(f"{p}: file contains no responses")
    return rows


class _Matcher:
    def __init__(self, examples: list[InputExample], source: Path) -> None:
        self.source = source
        self.by_key = {ex.key: ex for ex in examples}
        self.by_prompt = {ex.prompt: ex for ex in examples}
        self.by_norm: dict[str, InputExample] = {}
        for ex in examples:
            self.by_norm.setdefault(_normalise(ex.prompt), ex)

    def by_text(self, prompt: str) -> InputExample | None:
        return self.by_prompt.get(prompt) or self.by_norm.get(_normalise(prompt))

    def match(self, row: dict[str, Any], where: str) -> InputExample | None:
        """The input example of a row, None when nothing matches; UserError when key and prompt disagree."""
        prompt = row.get("prompt") if isinstance(row.get("prompt"), str) else None
        for field in ("key", "id"):
            key = _as_key(row.get(field))
            if key is None:
                continue
            ex = self.by_key.get(key)
            if ex is None:
                if field == "key" and prompt is None:
                    raise UserError(f"{where}: key {key} is not an IFEval key in {self.source}")
                continue
            if prompt is not None and self.by_text(prompt) is not ex:
                raise UserError(f"{where}: {field} {key} names IFEval prompt {_short(ex.prompt, 60)!r}, "
                                f"but the row's prompt is {_short(prompt, 60)!r}")
            return ex
        return self.by_text(prompt) if prompt is not None else None


def _rate(num: int, den: int) -> float:
    return num / den if den else 0.0


def evaluate_responses(rows: list[dict[str, Any]], input_data: Path | None = None, *,
                       output_only: bool = True) -> dict[str, Any]:
    """Score response rows against the IFEval prompts, strict and loose.

    ``rows``: dicts with ``response`` and ``key`` (or ``id``) and/or ``prompt`` (e.g. from :func:`load_responses`).
    Each is matched to an IFEval prompt by key, else by exact prompt text, else by whitespace-normalised text; a
    row matching nothing, or two rows for the same prompt, is a :class:`UserError`. Only the prompts present in
    ``rows`` are scored. ``input_data`` defaults to the built-in ``ifeval`` set. With ``output_only`` (default),
    a Reflection-format response is scored on its last ``<output>`` section
    (:func:`reflectkit.answers.output_section`); a response without ``<output>`` is scored as it is.

    Returns ``prompt_level_strict``, ``prompt_level_loose``, ``instruction_level_strict``,
    ``instruction_level_loose``, ``n_prompts``, ``n_instructions``, ``per_prompt`` (``key``, ``prompt``,
    ``instruction_id_list``, ``follow_all_strict``, ``follow_all_loose``, ``follow_instruction_list_strict``,
    ``follow_instruction_list_loose``, in row order), ``per_instruction_type`` (instruction id -> ``strict``,
    ``loose``, ``n``) and ``per_instruction_category`` (the part before ``:`` -> the same).
    """
    source = Path(input_data) if input_data is not None else default_input_data()
    examples = read_prompt_list(source)
    matcher = _Matcher(examples, source)
    if not rows:
        raise UserError("no IFEval responses to score")

    matched: list[tuple[InputExample, str]] = []
    seen: dict[int, str] = {}
    unmatched: list[tuple[str, str]] = []
    for i, row in enumerate(rows):
        where = _where(row, i)
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected an object with a response")
        if "response" not in row:
            raise UserError(f"{where}: no 'response' field")
        response = row["response"]
        if response is None:
            response = ""
        if not isinstance(response, str):
            raise UserError(f"{where}: 'response' must be a string, got {type(response).__name__}")
        ex = matcher.match(row, where)
        if ex is None:
            label = row.get("prompt") if isinstance(row.get("prompt"), str) else f"key/id {row.get('key', row.get('id'))!r}"
            unmatched.append((where, str(label)))
            continue
        if ex.key in seen:
            raise UserError(f"{where}: a second response for IFEval key {ex.key} (the first is at {seen[ex.key]})")
        seen[ex.key] = where
        matched.append((ex, output_section(response) if output_only else response))
    if unmatched:
        where, label = unmatched[0]
        raise UserError(f"{len(unmatched)} of {len(rows)} response row(s) match no IFEval prompt in {source}; "
                        f"first at {where}: {_short(label)!r}")

    per_prompt: list[dict[str, Any]] = []
    type_counts: dict[str, list[int]] = {}
    cat_counts: dict[str, list[int]] = {}
    p_strict = p_loose = i_strict = i_loose = n_instr = 0
    for ex, response in matched:
        strict = instruction_following_strict(ex, response)
        loose = instruction_following_loose(ex, response)
        per_prompt.append({
            "key": ex.key,
            "prompt": ex.prompt,
            "instruction_id_list": list(ex.instruction_id_list),
            "follow_all_strict": strict.follow_all_instructions,
            "follow_all_loose": loose.follow_all_instructions,
            "follow_instruction_list_strict": strict.follow_instruction_list,
            "follow_instruction_list_loose": loose.follow_instruction_list,
        })
        p_strict += strict.follow_all_instructions
        p_loose += loose.follow_all_instructions
        i_strict += sum(strict.follow_instruction_list)
        i_loose += sum(loose.follow_instruction_list)
        n_instr += len(ex.instruction_id_list)
        for iid, s, lo in zip(ex.instruction_id_list, strict.follow_instruction_list, loose.follow_instruction_list):
            for counts, name in ((type_counts, iid), (cat_counts, iid.split(":")[0])):
                c = counts.setdefault(name, [0, 0, 0])
                c[0] += s
                c[1] += lo
                c[2] += 1

    def table(counts: dict[str, list[int]]) -> dict[str, dict[str, float | int]]:
        return {k: {"strict": _rate(s, n), "loose": _rate(lo, n), "n": n} for k, (s, lo, n) in sorted(counts.items())}

    n = len(per_prompt)
    return {
        "prompt_level_strict": _rate(p_strict, n),
        "prompt_level_loose": _rate(p_loose, n),
        "instruction_level_strict": _rate(i_strict, n_instr),
        "instruction_level_loose": _rate(i_loose, n_instr),
        "n_prompts": n,
        "n_instructions": n_instr,
        "per_prompt": per_prompt,
        "per_instruction_type": table(type_counts),
        "per_instruction_category": table(cat_counts),
    }


__all__ = [
    "INSTRUCTION_DICT",
    "InputExample",
    "OutputExample",
    "evaluate_responses",
    "load_responses",
    "loose_variants",
    "read_prompt_list",
    "instruction_following_loose",
    "instruction_following_strict",
]
