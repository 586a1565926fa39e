"""What a training run leaves behind: the loss log (CSV + PNG) and the saved models."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

LOG_FIELDS = ("step", "epoch", "loss", "learning_rate", "grad_norm")


def log_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training-loss entries of a Trainer's ``state.log_history`` (one per logging step)."""
    rows = []
    for e in log_history:
        if "loss" in e and "step" in e:
            rows.append({k: e.get(k) for k in LOG_FIELDS})
    return rows


def write_log_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(LOG_FIELDS))
        w.writeheader()
        for r in rows:
            w.writerow(r)


def write_loss_png(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker="." if len(rows) < 50 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _untie_if_trained_apart(model: Any) -> None:
    """LoRA with ``modules_to_save`` trains separate copies of tied input/output embeddings: save both."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if out is None or inp.weight is out.weight:
        return
    for cfg in (model.config, getattr(model.config, "text_config", None)):
        if cfg is not None and getattr(cfg, "tie_word_embeddings", False):
            cfg.tie_word_embeddings = False


def save_models(model: Any, tokenizer: Any, out: Path, *, lora: bool, merge: bool) -> dict[str, str | None]:
    """Save ``adapter/`` (LoRA) and ``merged/`` (a plain transformers model dir incl. tokenizer)."""
    adapter_dir = out / "adapter"
    merged_dir = out / "merged"
    for d in (adapter_dir, merged_dir):
        if d.exists():
            shutil.rmtree(d)
    result: dict[str, str | None] = {"adapter_dir": None, "merged_dir": None}
    if lora:
        model.save_pretrained(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
        result["adapter_dir"] = str(adapter_dir)
        if not merge:
            return result
        model = model.merge_and_unload()
        _untie_if_trained_apart(model)
    model.save_pretrained(str(merged_dir))
    tokenizer.save_pretrained(str(merged_dir))
    result["merged_dir"] = str(merged_dir)
    return result
