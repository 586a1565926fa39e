"""Python API for training: the same function the CLI calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflectkit.train.config import make_config


def train(
    data: str | Path,
    output_dir: str | Path,
    *,
    student: str = "embedded",
    full: bool | None = None,
    preset: str | None = None,
    epochs: float | None = None,
    max_steps: int | None = None,
    lr: float | None = None,
    lora_r: int | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    grad_accum: int | None = None,
    add_tag_tokens: bool = False,
    dual_mask: bool = False,
    system_prompt: str | None = None,
    gradient_checkpointing: bool = False,
    save_steps: int | None = None,
    seed: int | None = None,
    resume: bool = True,
    limit: int | None = None,
    mapping: dict[str, str] | None = None,
    shape: str | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    callbacks: list[Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fine-tune ``student`` on ``data`` (SFT, assistant-only loss) and write ``output_dir``; returns the manifest.

    ``full=None`` follows the preset (``cpu-small``: LoRA; ``paper``: full fine-tuning). Re-running the same call
    resumes from the last checkpoint in ``output_dir/checkpoints`` (``resume=False`` starts over).

    >>> from reflectkit.train.api import train
    >>> m = train("refl.jsonl", "out/refl", max_steps=20, add_tag_tokens=True)  # doctest: +SKIP
    >>> m["merged_dir"]  # doctest: +SKIP
    """
    from reflectkit.student import resolve_student
    from reflectkit.train.data import load_conversations
    from reflectkit.train.trainer import run_training

    if system_prompt == "reflection":  # the Reflection 70B training system prompt (prompts/synth/paper)
        from reflectkit.prompts import load_prompt_set

        system_prompt = load_prompt_set("synth", "paper")["reflection.system"]
    cfg = make_config(preset, full=full, epochs=epochs, max_steps=max_steps, lr=lr, lora_r=lora_r, max_length=max_length,
                      per_device_batch_size=batch_size, grad_accum=grad_accum, add_tag_tokens=add_tag_tokens,
                      dual_mask=dual_mask, system_prompt=system_prompt, gradient_checkpointing=gradient_checkpointing,
                      save_steps=save_steps, seed=seed)
    loaded = load_conversations(data, mapping=mapping, shape=shape, system_prompt=system_prompt, limit=limit)
    info = resolve_student(student, cache_dir=Path(cache_dir) if cache_dir else None)
    return run_training(loaded, Path(output_dir), cfg, base_dir=info.hf_dir, base_identity=info.identity, resume=resume,
                        callbacks=callbacks, device=device, progress=progress)
