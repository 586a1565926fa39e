"""Turn (instruction, input, output) into the four token sequences of the published recipe.

This reproduces tianyi-lab/Reflection_Tuning ``selection_code/data_analysis.py`` (``main`` with
``get_perplexity_and_embedding_whole_text`` / ``..._part_text``) exactly, including its truncation:

1. instruction+input alone: ``encode(instruction + input, max_length = L - len(reverse prompt) + 1)``, loss on
   every token;
2. output alone: ``encode(output, max_length = L - len(prompt) + 1)``, loss on every token;
3. instruction+input given the reverse query: ``encode(reverse_prompt + instruction + input, max_length = L)``,
   loss from ``len(encode(text[:text.rfind(instruction)]))``;
4. output given the instruction: ``encode(prompt + output, max_length = L)``, loss from
   ``len(encode(text[:text.rfind(output)]))``.

``len(prompt)`` and ``len(reverse prompt)`` are token counts truncated at ``L``. Note the reference joins
instruction and input with no separator in (1) and (3); we do the same. As in ``model(ids, labels=ids)``, the loss
is the mean cross-entropy of tokens ``t`` with ``max(start, 1) <= t < len`` predicted from the tokens before them.
Tokenization is batched, but each sequence is exactly what ``tokenizer.encode(text, truncation=True,
max_length=m)`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from reflectkit.scoring.wrappers import Wrapper

#: Names of the four losses, in the reference's order (``temp_data_i['loss']``).
PARTS = ("ins_alone", "out_alone", "ins_condition", "out_condition")
#: Wrapped passes share a text prefix (system prompt, and for the reverse pass the reverse query's first line).
GROUPS = {"ins_alone": "", "out_alone": "", "ins_condition": "reverse", "out_condition": "forward"}


@dataclass
class Sequence_:
    ids: list[int]
    start: int  # first label position (labels[:start] = -100)
    truncated: bool
    group: str = ""  # sequences of one group start with the same wrapper text: their common prefix is shared
    full_len: int = 0  # tokens before truncation (an endpoint scoring the whole text must return as many)
    text: str = ""  # the text it was tokenized from (sent to an endpoint that takes no token ids)

    @property
    def n_targets(self) -> int:
        return max(0, len(self.ids) - max(self.start, 1))


@dataclass
class Plan:
    """The four sequences of one sample, plus the lengths reported in the statistics table."""

    seqs: dict[str, Sequence_]
    ins_len: int  # student tokens of instruction(+"\n"+input), no special tokens
    res_len: int  # student tokens of the response, no special tokens
    truncated: list[str] = field(default_factory=list)


class Tokenize:
    """Batched ``tokenizer.encode`` that reproduces ``truncation=True, max_length=m`` exactly."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        probe = "Hello world. 12"
        plain = tokenizer.encode(probe, add_special_tokens=False)
        # Slicing equals HF right-truncation only when the tokenizer adds no special tokens.
        self.slice_ok = tokenizer.encode(probe) == plain and tokenizer.truncation_side == "right"

    def many(self, texts: Sequence[str], *, special: bool = True) -> list[list[int]]:
        if not texts:
            return []
        return [list(x) for x in self.tok(list(texts), add_special_tokens=special)["input_ids"]]

    def truncated(self, text: str, ids: list[int], max_length: int) -> list[int]:
        if self.slice_ok:
            return ids[:max_length]
        return list(self.tok.encode(text, truncation=True, max_length=max_length))


def build_plans(triples: Sequence[tuple[str, str, str]], wrapper: Wrapper, tokenize: Tokenize, max_length: int) -> list[Plan]:
    """Plans for non-empty-output triples (callers skip empty outputs first, as the reference does)."""
    L = max_length
    prompts = [wrapper.wrap(i, x) for i, x, _ in triples]
    rev_prompts = [wrapper.reverse(o) for _, _, o in triples]
    ins_texts = [i + x for i, x, _ in triples]
    outs = [o for _, _, o in triples]
    whole = [p + o for p, o in zip(prompts, outs)]
    whole_rev = [r + i + x for r, (i, x, _) in zip(rev_prompts, triples)]
    pre4 = [w[: w.rfind(o)] for w, o in zip(whole, outs)]
    pre3 = [w[: w.rfind(i)] for w, (i, _, _) in zip(whole_rev, triples)]

    enc = tokenize.many
    prompt_ids, rev_ids, ins_ids, out_ids, whole_ids, whole_rev_ids, pre4_ids, pre3_ids = (
        enc(prompts), enc(rev_prompts), enc(ins_texts), enc(outs), enc(whole), enc(whole_rev), enc(pre4), enc(pre3))
    len_ins = enc([f"{i}\n{x}" if x else i for i, x, _ in triples], special=False)
    len_out = enc(outs, special=False)

    plans: list[Plan] = []
    for k in range(len(triples)):
        ins_len = len(tokenize.truncated(prompts[k], prompt_ids[k], L))
        rev_len = len(tokenize.truncated(rev_prompts[k], rev_ids[k], L))
        full = {
            "ins_alone": (ins_texts[k], ins_ids[k], L - rev_len + 1, 0),
            "out_alone": (outs[k], out_ids[k], L - ins_len + 1, 0),
            "ins_condition": (whole_rev[k], whole_rev_ids[k], L, len(pre3_ids[k])),
            "out_condition": (whole[k], whole_ids[k], L, len(pre4_ids[k])),
        }
        seqs: dict[str, Sequence_] = {}
        for part, (text, ids, m, start) in full.items():
            cut = tokenize.truncated(text, ids, m)
            seqs[part] = Sequence_(cut, start, len(cut) < len(ids), GROUPS[part], len(ids), text)
        plans.append(Plan(seqs, len(len_ins[k]), len(len_out[k]), [p for p in PARTS if seqs[p].truncated]))
    return plans
