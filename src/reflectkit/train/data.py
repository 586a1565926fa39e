"""Training data: dataset file -> chat conversations -> token ids with assistant-only labels.

Loss masking works with any chat template, including ones without ``{% generation %}`` markers (SmolLM2's):
the conversation is rendered with the student's own template, the character spans of the assistant messages are
located by rendering each prefix (``add_generation_prompt=True``), and a token gets a label only when it starts
inside an assistant span. The end-of-turn text the template puts right after the assistant content
(``<|im_end|>`` for ChatML) is part of the span, so the model learns to stop.

Dual mask (Glaive recipe for Reflection 70B): every example whose answer contains ``<reflection>`` is used twice,
once with the normal assistant mask and once with loss only on the tokens after the first ``<reflection>`` tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflectkit.data.io import read_dataset
from reflectkit.errors import UserError
from reflectkit.synth.inputs import auto_mapping

if TYPE_CHECKING:  # pragma: no cover
    from reflectkit.data.io import Dataset

IGNORE = -100
REFLECTION_OPEN = "<reflection>"
#: Rows with these ``reflectkit.synth.status`` values have no synthesized answer and are never trained on.
SKIP_STATUSES = ("failed", "malformed")


@dataclass
class Conversation:
    messages: list[dict[str, str]]
    id: str = ""


@dataclass
class LoadedData:
    conversations: list[Conversation]
    path: Path
    sha256: str
    skipped: dict[str, int] = field(default_factory=dict)


def read_training_data(path: str | Path, *, mapping: dict[str, str] | None = None, shape: str | None = None,
                       skip_bad_rows: bool = False, limit: int | None = None) -> "Dataset":
    """Read DATA (any reflectkit-readable file; GSM8K ``question``/``answer`` rows map without ``--map``)."""
    m = auto_mapping(path, mapping, output_from_answer=True)
    return read_dataset(path, format=shape, mapping=m, skip_bad_rows=skip_bad_rows, require_output=False).limit(limit)


def conversations_from_dataset(ds: "Dataset", *, system_prompt: str | None = None) -> LoadedData:
    """Single-turn conversations from the rows of ``ds``.

    A row's own system message is used; ``system_prompt`` replaces it when given. Rows without an answer, and
    rows that synthesis recorded as failed/malformed, are skipped and counted.
    """
    convs: list[Conversation] = []
    skipped: dict[str, int] = {}
    for rec in ds.records:
        status = (rec.meta.get("synth") or {}).get("status") if isinstance(rec.meta.get("synth"), dict) else None
        if status in SKIP_STATUSES:
            skipped[f"synth_{status}"] = skipped.get(f"synth_{status}", 0) + 1
            continue
        if not rec.output.strip():
            skipped["empty_output"] = skipped.get("empty_output", 0) + 1
            continue
        system = system_prompt if system_prompt is not None else rec.system
        user = f"{rec.instruction}\n\n{rec.input}" if rec.input else rec.instruction
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}, {"role": "assistant", "content": rec.output}]
        convs.append(Conversation(msgs, rec.id))
    if not convs:
        raise UserError(f"{ds.path}: no trainable rows (every row lacks an answer or was rejected by synthesis: {skipped})")
    return LoadedData(convs, Path(ds.path), ds.sha256, skipped)


def load_conversations(path: str | Path, *, mapping: dict[str, str] | None = None, shape: str | None = None,
                       system_prompt: str | None = None, limit: int | None = None) -> LoadedData:
    """Read DATA into single-turn conversations (:func:`read_training_data`, then :func:`conversations_from_dataset`)."""
    ds = read_training_data(path, mapping=mapping, shape=shape, limit=limit)
    return conversations_from_dataset(ds, system_prompt=system_prompt)


def _render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int, int]]]:
    """Render the conversation; return (text, [(span start, content start, span end)]) for each assistant turn.

    The span runs from the start of the assistant content to the start of the next message (so it includes the
    template's end-of-turn marker); trailing whitespace after the end-of-turn marker is excluded.
    """
    full = _render(tokenizer, messages)
    spans: list[tuple[int, int, int]] = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1])
        if not full.startswith(before) or not full.startswith(upto.rstrip()):
            raise UserError("the student's chat template does not render conversations prefix-consistently; "
                            "assistant-only loss cannot be located (use a model with a standard chat template)")
        start = len(before)
        content_at = full.find(msg["content"], start) if msg["content"] else start
        end = len(upto.rstrip())
        spans.append((start, content_at if content_at >= 0 else start, end))
    return full, spans


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]], *, max_length: int,
                          loss_after: str | None = None) -> dict[str, list[int]] | None:
    """Token ids and labels (``-100`` outside the loss region) for one conversation, truncated to ``max_length``.

    ``loss_after``: restrict the loss to tokens after the first occurrence of this string in an assistant message
    (the dual-mask copy); returns None when no assistant message contains it.
    """
    text, spans = assistant_spans(tokenizer, messages)
    regions: list[tuple[int, int]] = []
    for start, content_at, end in spans:
        if loss_after is None:
            regions.append((start, end))
            continue
        at = text.find(loss_after, content_at, end)
        if at >= 0:
            regions.append((at + len(loss_after), end))
            break
    if not regions:
        return None
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    for j, (s, e) in enumerate(enc["offset_mapping"]):
        if e <= s:
            continue
        if any(a <= s < b for a, b in regions):
            labels[j] = ids[j]
    ids, labels = ids[:max_length], labels[:max_length]
    if all(x == IGNORE for x in labels):
        return {"input_ids": ids, "labels": labels, "truncated_away": [1]}
    return {"input_ids": ids, "labels": labels}


def build_features(tokenizer: Any, conversations: list[Conversation], *, max_length: int,
                   dual_mask: bool = False) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Tokenize every conversation (and, with ``dual_mask``, add the reflection-only copies).

    Returns (features, stats). Examples whose loss region was cut off entirely by ``max_length`` are dropped and
    counted (``no_loss_tokens_after_truncation``).
    """
    feats: list[dict[str, list[int]]] = []
    stats = {"examples": 0, "dual_mask_copies": 0, "no_loss_tokens_after_truncation": 0, "truncated": 0,
             "loss_tokens": 0, "tokens": 0}
    for conv in conversations:
        variants = [None] + ([REFLECTION_OPEN] if dual_mask else [])
        for loss_after in variants:
            f = tokenize_conversation(tokenizer, conv.messages, max_length=max_length, loss_after=loss_after)
            if f is None:
                continue
            if f.pop("truncated_away", None):
                stats["no_loss_tokens_after_truncation"] += 1
                continue
            full_len = len(tokenizer(_render(tokenizer, conv.messages), add_special_tokens=False)["input_ids"])
            stats["truncated"] += int(full_len > max_length) if loss_after is None else 0
            stats["examples"] += 1
            stats["dual_mask_copies"] += int(loss_after is not None)
            stats["tokens"] += len(f["input_ids"])
            stats["loss_tokens"] += sum(1 for x in f["labels"] if x != IGNORE)
            feats.append(f)
    return feats, stats
