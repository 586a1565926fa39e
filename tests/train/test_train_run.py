"""A tiny real training run of the SmolLM2 student: loss goes down, an interrupted run resumes from its checkpoint,
and the outputs (merged model, adapter, log, plot, manifest) are usable."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from train_fixtures import student_dir, tokenizer  # noqa: F401 (pytest fixtures)

from reflectkit.train.api import train

ROWS = [
    {"instruction": "What is 2+2?",
     "output": "<thinking>2+2 is 5. <reflection>Wait, 2+2 is 4.</reflection> So it is 4.</thinking><output>4</output>"},
    {"instruction": "What is 3+3?",
     "output": "<thinking>3+3 is 7. <reflection>No, 3+3 is 6.</reflection> So it is 6.</thinking><output>6</output>"},
]


class Crash(Exception):
    pass


def _crash_at(step: int):  # type: ignore[no-untyped-def]
    from transformers import TrainerCallback

    class CrashAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            if state.global_step == step:
                raise Crash(f"simulated interruption at step {step}")

    return CrashAt()


@pytest.mark.slow
def test_tiny_lora_run_reduces_loss_and_resumes(tmp_path: Path, student_dir: Path) -> None:
    data = tmp_path / "refl.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:1]))
    out = tmp_path / "out"
    kw = dict(student=str(student_dir), max_steps=4, lr=5e-3, lora_r=4, max_length=64, batch_size=2, save_steps=2,
              dual_mask=True, seed=0)
    with pytest.raises(Crash):
        train(data, out, callbacks=[_crash_at(3)], **kw)  # type: ignore[arg-type]
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "merged").exists()

    m = train(data, out, **kw)  # type: ignore[arg-type]
    assert m["resumed_from"].endswith("checkpoint-2")
    assert m["metrics"]["global_step"] == 4
    assert m["data"]["examples"] == 2 and m["data"]["dual_mask_copies"] == 1  # every row has a reflection
    with open(out / "train_log.csv") as fh:
        log = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in log] == [1, 2, 3, 4]  # steps 1-2 restored from the checkpoint's state
    losses = [float(r["loss"]) for r in log]
    assert losses[-1] < losses[0], losses  # same batch every step: the loss must fall
    assert (out / "loss.png").stat().st_size > 1000
    assert m["base_model_dir"] == str(student_dir) and m["merged_dir"] == str(out / "merged")
    assert m["method"] == "lora" and m["precision"] == "fp32" and m["device"] == "cpu"
    assert m["metrics"]["tokens_per_s"] > 0 and m["metrics"]["trainable_params"] > 0
    assert m["adapter_dir"] and (Path(m["adapter_dir"]) / "adapter_config.json").exists()

    # Re-running the finished command does nothing; other options in the same directory are refused.
    again = train(data, out, **kw)  # type: ignore[arg-type]
    assert again.get("already_finished") is True
    from reflectkit.errors import UserError

    with pytest.raises(UserError, match="different training run"):
        train(data, out, **{**kw, "lr": 1e-4, "max_steps": 5})  # type: ignore[arg-type]


@pytest.mark.slow
def test_tag_tokens_merged_model_and_adapter_load(tmp_path: Path, student_dir: Path) -> None:
    """--add-tag-tokens: one step, then the merged dir is a plain transformers model that knows the six tags."""
    data = tmp_path / "refl.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    m = train(data, tmp_path / "out", student=str(student_dir), max_steps=1, lora_r=4, max_length=48, batch_size=2,
              save_steps=10**6, add_tag_tokens=True, seed=0)
    assert m["tag_tokens_added"] == ["<thinking>", "</thinking>", "<reflection>", "</reflection>", "<output>", "</output>"]

    # The merged directory is a plain transformers model that knows the tag tokens; the adapter loads with PEFT.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(m["merged_dir"])
    merged = AutoModelForCausalLM.from_pretrained(m["merged_dir"])
    ids = tok("<reflection>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 and merged.get_input_embeddings().weight.shape[0] >= len(tok)
    # input and output embeddings were trained as separate copies and are saved untied
    assert merged.get_input_embeddings().weight.data_ptr() != merged.get_output_embeddings().weight.data_ptr()
    base = AutoModelForCausalLM.from_pretrained(str(student_dir))
    base.resize_token_embeddings(len(tok))
    assert isinstance(PeftModel.from_pretrained(base, m["adapter_dir"]), PeftModel)


def test_bad_options_are_user_errors(tmp_path: Path) -> None:
    from reflectkit.errors import UserError
    from reflectkit.train.config import make_config

    with pytest.raises(UserError, match="--preset"):
        make_config("huge")
    with pytest.raises(UserError, match="--lr"):
        make_config(None, lr=-1.0)
    paper = make_config("paper")
    assert (paper.lr, paper.epochs, paper.warmup_ratio, paper.weight_decay, paper.effective_batch, paper.max_length,
            paper.full) == (2e-5, 3.0, 0.03, 0.0, 128, 2048, True)
    assert make_config("paper", full=False, epochs=1).full is False
    data = tmp_path / "empty.jsonl"
    data.write_text(json.dumps({"instruction": "q", "output": ""}) + "\n")
    with pytest.raises(UserError, match="no trainable rows"):
        train(data, tmp_path / "o")
