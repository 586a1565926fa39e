"""Supervised fine-tuning of the student with TRL's ``SFTTrainer`` and PEFT (LoRA by default, full optionally).

Output directory layout (``reflectkit generate --model OUT`` relies on it)::

    OUT/merged/          transformers model dir incl. tokenizer (LoRA merged into the base weights)
    OUT/adapter/         PEFT adapter + tokenizer (LoRA only)
    OUT/checkpoints/     Trainer checkpoints (resume: re-run the same command)
    OUT/train_log.csv    step, epoch, loss, learning_rate, grad_norm
    OUT/loss.png         the loss curve
    OUT/manifest.json    config, data, student, metrics, "base_model_dir", "merged_dir"
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from reflectkit.errors import UserError
from reflectkit.synth.reflection_format import TAG_TOKENS
from reflectkit.train.config import TrainConfig
from reflectkit.train.data import LoadedData, build_features
from reflectkit.train.outputs import log_rows, save_models, write_log_csv, write_loss_png

#: Options that shape the trained weights; a run directory only resumes when they are unchanged
#: (epochs/max_steps may change, so an interrupted run can also be extended).
_FP_KEYS = ("full", "lr", "per_device_batch_size", "grad_accum", "max_length", "warmup_ratio", "weight_decay",
            "lr_scheduler", "lora_r", "lora_alpha", "lora_dropout", "add_tag_tokens", "dual_mask", "system_prompt", "seed")


class _CountingCollator:
    """Wraps the trainer's collator to count the (non-padding) tokens it feeds the model."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tokens = 0

    def __call__(self, examples: list[dict[str, Any]]) -> Any:
        self.tokens += sum(len(e["input_ids"]) for e in examples)
        return self.inner(examples)


def fingerprint(cfg: TrainConfig, data: LoadedData, base_identity: dict[str, Any]) -> str:
    payload = {"config": {k: getattr(cfg, k) for k in _FP_KEYS}, "data_sha256": data.sha256,
               "n": len(data.conversations), "student": base_identity}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _check_run_dir(out: Path, fp: str, resume: bool) -> Path | None:
    """Return the checkpoint to resume from (or None); refuse to mix different runs in one directory."""
    state = out / "train_state.json"
    ckpt_dir = out / "checkpoints"
    ckpts = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) if ckpt_dir.exists() else []
    if not resume:
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        ckpts = []
    elif ckpts and state.exists():
        have = json.loads(state.read_text()).get("fingerprint")
        if have != fp:
            raise UserError(f"-o {out}: holds checkpoints of a different training run (other data, student or options); "
                            "use another -o, or --restart to discard them")
    out.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"fingerprint": fp}) + "\n")
    return ckpts[-1] if ckpts else None


def _finished_manifest(out: Path, fp: str, cfg: TrainConfig) -> dict[str, Any] | None:
    """The manifest of an identical, finished run in OUT (re-running a finished command does nothing)."""
    p = out / "manifest.json"
    if not p.exists():
        return None
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    c = m.get("config", {})
    same = m.get("fingerprint") == fp and c.get("epochs") == cfg.epochs and c.get("max_steps") == cfg.max_steps
    if same and m.get("status") == "finished" and m.get("merged_dir") and Path(m["merged_dir"]).exists():
        return {**m, "already_finished": True}
    return None


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024 if sys.platform != "darwin" else kb / 2**20, 1)


def _setup_model(base_dir: Path, cfg: TrainConfig, device: str) -> tuple[Any, Any, list[int]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        raise UserError(f"--student {base_dir}: the tokenizer has no chat template; assistant-only loss needs one")
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    new_ids: list[int] = []
    if cfg.add_tag_tokens:
        missing = [t for t in TAG_TOKENS if t not in tok.get_vocab()]
        tok.add_tokens(list(TAG_TOKENS), special_tokens=True)  # never split, never normalised
        new_ids = [tok.convert_tokens_to_ids(t) for t in missing]
        model.resize_token_embeddings(len(tok))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if not cfg.full:
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r, lora_dropout=cfg.lora_dropout,
            target_modules="all-linear", task_type="CAUSAL_LM",
            # New tag tokens need trainable input and output embeddings. PEFT's lighter ``trainable_token_indices``
            # wraps a tied lm_head in a module without ``.bias``, which TRL's fused LM-head loss needs, so the
            # embedding matrices are trained as a whole (saved in the adapter; untied in the merged model).
            modules_to_save=["embed_tokens", "lm_head"] if new_ids else None,
        )
        model = get_peft_model(model, lcfg)
    return model, tok, new_ids


def run_training(data: LoadedData, out: Path, cfg: TrainConfig, *, base_dir: Path, base_identity: dict[str, Any],
                 resume: bool = True, callbacks: list[Any] | None = None, device: str | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Train and write OUT/; returns the manifest."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from reflectkit.engine.manifest import code_info, command_line, write_json_atomic

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    fp = fingerprint(cfg, data, base_identity)
    done = _finished_manifest(out, fp, cfg) if resume else None
    if done is not None:
        return done
    resume_from = _check_run_dir(out, fp, resume)
    torch.manual_seed(cfg.seed)
    model, tok, new_ids = _setup_model(base_dir, cfg, dev)
    feats, feat_stats = build_features(tok, data.conversations, max_length=cfg.max_length, dual_mask=cfg.dual_mask)
    if not feats:
        raise UserError(f"{data.path}: no example has assistant tokens within --max-length {cfg.max_length}")
    bf16 = dev == "cuda" and torch.cuda.is_bf16_supported()
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps (transformers >= 5)
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_length,
        bf16=bf16,
        fp16=False,
        use_cpu=dev == "cpu",
        gradient_checkpointing=False,  # enabled on the model above when asked for
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=dev == "cuda",
        disable_tqdm=not progress,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(feats), processing_class=tok,
                         callbacks=callbacks or None)
    counter = _CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    wall = time.monotonic() - t0
    rows = log_rows(trainer.state.log_history)
    write_log_csv(rows, out / "train_log.csv")
    write_loss_png(rows, out / "loss.png", f"{'full' if cfg.full else f'LoRA r={cfg.lora_r}'} SFT of {base_dir.name} on {data.path.name}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    saved = save_models(trainer.model, tok, out, lora=not cfg.full, merge=cfg.merge)
    metrics = {
        "global_step": trainer.state.global_step,
        "epoch": trainer.state.epoch,
        "train_loss": result.training_loss,
        "first_loss": rows[0]["loss"] if rows else None,
        "last_loss": rows[-1]["loss"] if rows else None,
        "wall_time_s": round(wall, 2),
        "tokens_this_invocation": counter.tokens,
        "tokens_per_s": round(counter.tokens / wall, 1) if wall > 0 else None,
        "peak_memory_mb": _peak_memory_mb(dev),
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if dev == "cuda" else "process max RSS",
        "trainable_params": trainable,
        "total_params": total,
    }
    manifest = {
        "step": "train",
        "status": "finished",
        "code": code_info(),
        "command": command_line(),
        "config": cfg.to_dict(),
        "fingerprint": fp,
        "data": {"path": str(data.path), "sha256": data.sha256, "conversations": len(data.conversations),
                 "skipped": data.skipped, **feat_stats},
        "student": base_identity,
        "base_model_dir": str(base_dir),
        "merged_dir": saved["merged_dir"],
        "adapter_dir": saved["adapter_dir"],
        "checkpoints_dir": str(out / "checkpoints"),
        "method": "full" if cfg.full else "lora",
        "tag_tokens_added": [t for t in TAG_TOKENS] if cfg.add_tag_tokens else [],
        "new_token_ids": new_ids,
        "system_prompt": cfg.system_prompt,
        "device": dev,
        "precision": "bf16" if bf16 else "fp32",
        "resumed_from": str(resume_from) if resume_from else None,
        "metrics": metrics,
        "train_log": str(out / "train_log.csv"),
        "loss_png": str(out / "loss.png"),
        "versions": _versions(),
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def _versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "transformers", "trl", "peft"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # pragma: no cover
            pass
    return out


#: shared with ``reflectkit judge train`` (GRPO), which keeps its run directory the same way
check_run_dir = _check_run_dir
versions = _versions
