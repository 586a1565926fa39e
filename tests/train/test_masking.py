"""Assistant-only loss masking with the student's chat template, and the dual-mask copies (Glaive recipe)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from train_fixtures import student_dir, tokenizer  # noqa: F401 (pytest fixtures)

from reflectkit.train.data import IGNORE, Conversation, build_features, load_conversations, tokenize_conversation

REFL = "<thinking>2+2=5 <reflection>No, 2+2=4.</reflection> So 4.</thinking><output>4</output>"
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": REFL}]


def _loss_text(tok, feat) -> str:  # type: ignore[no-untyped-def]
    return tok.decode([i for i, lab in zip(feat["input_ids"], feat["labels"]) if lab != IGNORE])


def test_assistant_only_loss(tokenizer) -> None:  # type: ignore[no-untyped-def]
    f = tokenize_conversation(tokenizer, MSGS, max_length=256)
    assert f is not None
    assert _loss_text(tokenizer, f) == REFL + "<|im_end|>"  # answer and end-of-turn, nothing else
    full = tokenizer.decode(f["input_ids"])
    assert "Be brief." in full and "What is 2+2?" in full  # prompt is in the input, just not in the loss
    first_loss = next(j for j, lab in enumerate(f["labels"]) if lab != IGNORE)
    assert tokenizer.decode(f["input_ids"][:first_loss]).endswith("<|im_start|>assistant\n")


def test_truncation_keeps_lengths_aligned(tokenizer) -> None:  # type: ignore[no-untyped-def]
    f = tokenize_conversation(tokenizer, MSGS, max_length=30)
    assert f is not None and len(f["input_ids"]) == len(f["labels"]) == 30


def test_dual_mask_duplicates_reflection_examples_only(tokenizer) -> None:  # type: ignore[no-untyped-def]
    plain = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<thinking>a</thinking><output>b</output>"}]
    feats, stats = build_features(tokenizer, [Conversation(MSGS), Conversation(plain)], max_length=256, dual_mask=True)
    assert stats["examples"] == 3 and stats["dual_mask_copies"] == 1
    normal, copy_, other = feats
    assert normal["input_ids"] == copy_["input_ids"]  # same tokens, different loss region
    assert _loss_text(tokenizer, copy_) == "No, 2+2=4.</reflection> So 4.</thinking><output>4</output><|im_end|>"
    assert _loss_text(tokenizer, other).startswith("<thinking>a</thinking>")
    feats_off, stats_off = build_features(tokenizer, [Conversation(MSGS), Conversation(plain)], max_length=256)
    assert stats_off["dual_mask_copies"] == 0 and len(feats_off) == 2


def test_dual_mask_with_tag_tokens_and_trl_collator(tokenizer) -> None:  # type: ignore[no-untyped-def]
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from reflectkit.synth.reflection_format import TAG_TOKENS

    tok = copy.deepcopy(tokenizer)
    tok.add_tokens(list(TAG_TOKENS), special_tokens=True)
    feats, _ = build_features(tok, [Conversation(MSGS)], max_length=256, dual_mask=True)
    refl_id = tok.convert_tokens_to_ids("<reflection>")
    normal, dual = feats
    pos = normal["input_ids"].index(refl_id)  # the tag is one token now
    assert normal["labels"][pos] == refl_id
    assert dual["labels"][pos] == IGNORE and all(lab == IGNORE for lab in dual["labels"][:pos + 1])
    assert dual["labels"][pos + 1] == dual["input_ids"][pos + 1]
    # TRL's collator pads and keeps the prebuilt labels (padding is never in the loss).
    short = {"input_ids": normal["input_ids"][:10], "labels": normal["labels"][:10]}
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)([dual, short])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert batch["labels"][0].tolist() == dual["labels"]
    assert (batch["labels"][1, 10:] == IGNORE).all()


def test_load_conversations_gsm8k_and_synth_rows(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    rows = [
        {"question": "q1", "answer": "a1\n#### 1"},
        {"question": "q2", "answer": "a2", "reflectkit": {"synth": {"status": "malformed"}}},
        {"question": "q3", "answer": ""},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = load_conversations(p, system_prompt="SYS")
    assert [c.messages for c in d.conversations] == [[
        {"role": "system", "content": "SYS"}, {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1\n#### 1"}]]
    assert d.skipped == {"synth_malformed": 1, "empty_output": 1}
