"""Python API for training: the function ``reflectkit train`` calls, derived from :class:`TrainStep`.

>>> from reflectkit.train.api import train
>>> m = train("refl.jsonl", "out/refl", max_steps=20, add_tag_tokens=True)  # doctest: +SKIP
>>> m["merged_dir"]  # doctest: +SKIP

``train(data, output_dir, **options)`` returns the training manifest (``OUT/manifest.json``, a dict) as it always
did; :data:`train_step` (``api_function(TrainStep)``, or ``reflectkit.engine.api.run("train", ...)``) returns the
engine's :class:`~reflectkit.engine.run.RunSummary`, whose ``details`` are that manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflectkit.engine.api import api_function
from reflectkit.train.step import TRAINER_CALLBACKS, TrainStep

train_step = api_function(TrainStep)


def train(data: str | Path, output_dir: str | Path, *, resume: bool = True, callbacks: list[Any] | None = None,
          **kwargs: Any) -> dict[str, Any]:
    """Fine-tune ``student`` on ``data`` (SFT, assistant-only loss) and write ``output_dir``; returns the manifest.

    Keywords: the options of :class:`~reflectkit.train.step.TrainOptions` (``preset``, ``full``, ``epochs``,
    ``max_steps``, ``lr``, ``lora_r``, ``max_length``, ``batch_size``, ``grad_accum``, ``add_tag_tokens``,
    ``dual_mask``, ``system_prompt``, ``gradient_checkpointing``, ``save_steps``, ``seed``, ``shape``, ``device``),
    ``student`` (a model spec: 'embedded', an HF directory or a .gguf) and the engine's plumbing (``limit``,
    ``mapping``, ``run_dir``, ``cache_dir``, ``progress``, ...).

    ``full=None`` follows the preset (``cpu-small``: LoRA; ``paper``: full fine-tuning). Re-running the same call
    resumes from the last checkpoint in ``output_dir/checkpoints`` (``resume=False`` starts over). ``callbacks``:
    ``transformers.TrainerCallback`` objects handed to the trainer.
    """
    token = TRAINER_CALLBACKS.set(list(callbacks) if callbacks else None)
    try:
        summary = train_step(data, output_dir, restart=not resume, **kwargs)
    finally:
        TRAINER_CALLBACKS.reset(token)
    if isinstance(summary, dict):  # dry_run=True: the estimate
        return summary
    return dict(summary.details)


__all__ = ["train", "train_step"]
