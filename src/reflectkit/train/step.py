"""The ``train`` step: supervised fine-tuning of the student on a dataset (TRL ``SFTTrainer``; LoRA by default).

A task step: it writes a model directory, not rows. ``-o OUT`` is that directory (its layout is described in
:mod:`reflectkit.train.trainer`); it is registered as the run's file ``model``, which is what a pipeline's later
stages (``generate`` with ``model: <train stage>``) use. Re-running the same command resumes from the last
checkpoint in ``OUT/checkpoints``; ``--restart`` discards them; a finished identical run is not trained again.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any


from reflectkit.data.record import Record
from reflectkit.engine.step import ModelRole, RunContext, StepOptions, TaskStep, choice_validator, option
from reflectkit.errors import UserError
from reflectkit.train.config import PRESETS, TrainConfig, make_config

if TYPE_CHECKING:  # pragma: no cover
    from reflectkit.data.io import Dataset

#: Trainer callbacks (``transformers.TrainerCallback``) for runs started in this context: live objects are not
#: options, so :func:`reflectkit.train.api.train` hands its ``callbacks=`` over through this variable.
TRAINER_CALLBACKS: ContextVar[list[Any] | None] = ContextVar("reflectkit_trainer_callbacks", default=None)


class TrainOptions(StepOptions):
    """Options of ``train``. Unset hyper-parameters (None) follow the preset (see :mod:`reflectkit.train.config`)."""

    preset: str | None = option(None, "cpu-small (default) or paper (lr 2e-5, 3 epochs, warmup 0.03, wd 0, batch 128, "
                                "max length 2048, full).")
    full: bool | None = option(None, "Full fine-tuning instead of LoRA (default: as the preset).", flag="--full/--lora")
    epochs: float | None = option(None, "Epochs (default: preset).", gt=0)
    max_steps: int | None = option(None, "Stop after N optimizer steps (overrides --epochs).", ge=1)
    lr: float | None = option(None, "Learning rate (default: preset).", gt=0)
    lora_r: int | None = option(None, "LoRA rank (alpha = 2r).", ge=1)
    max_length: int | None = option(None, "Max tokens per example (longer ones are truncated).", ge=16)
    batch_size: int | None = option(None, "Per-device batch size.", ge=1)
    grad_accum: int | None = option(None, "Gradient accumulation steps.", ge=1)
    add_tag_tokens: bool = option(False, "Add the six Reflection tags as special tokens and resize embeddings "
                                  "(Glaive recipe).")
    dual_mask: bool = option(False, "Duplicate examples with a <reflection>; the copy has loss only after the first "
                             "<reflection> (Glaive recipe).")
    system_prompt: str | None = option(None, "System prompt for every example ('reflection' = the Reflection 70B "
                                       "prompt).")
    gradient_checkpointing: bool = option(False, "Trade compute for memory.", fingerprint=False)
    save_steps: int | None = option(None, "Checkpoint every N steps.", ge=1, fingerprint=False)
    seed: int | None = option(None, "Random seed (default 42).")
    shape: str | None = option(None, "Record shape: alpaca, messages or sharegpt (auto-detected).")
    device: str | None = option(None, "cpu or cuda (default: cuda when available).", fingerprint=False)

    _known_preset = choice_validator("preset", PRESETS, "--preset", optional=True)


class TrainStep(TaskStep[TrainOptions]):
    """Fine-tune a student on DATA (TRL SFTTrainer; LoRA by default; loss on assistant tokens only)."""

    name = "train"
    files = {"model": "the output directory", "train_manifest": "the trainer's manifest.json",
             "merged": "the merged model (LoRA)", "adapter": "the LoRA adapter"}
    manifest_sections = ("train", "model_dir")
    Options = TrainOptions
    model_roles = {"student": ModelRole("student", "'embedded' (SmolLM2-135M-Instruct), a local HF model dir or a "
                                        ".gguf file.")}
    code = ("train", "student.py", "synth/inputs.py", "synth/reflection_format.py", "prompts/synth")
    produces_data = False
    require_output = False
    #: in a pipeline it writes its model to <stage dir>/model; an empty input is an error (no model can come of it),
    #: not a skipped stage
    consumes_previous = False
    stage_output = "model"
    input_help = "Training data: JSONL, JSON array, Parquet or CSV (GSM8K question/answer rows work as is)."
    # the record shape is --shape (an option), as before; --restart discards the checkpoints in OUT
    cli_plumbing = ("run_dir", "limit", "dry_run", "restart", "map", "skip_bad_rows", "quiet")

    @cached_property
    def system_prompt(self) -> str | None:
        sp = self.options.system_prompt
        if sp == "reflection":  # the Reflection 70B training system prompt (prompts/synth/paper)
            from reflectkit.prompts import load_prompt_set

            return load_prompt_set("synth", "paper")["reflection.system"]
        return sp

    def train_config(self) -> TrainConfig:
        o = self.options
        return make_config(o.preset, full=o.full, epochs=o.epochs, max_steps=o.max_steps, lr=o.lr, lora_r=o.lora_r,
                           max_length=o.max_length, per_device_batch_size=o.batch_size, grad_accum=o.grad_accum,
                           add_tag_tokens=o.add_tag_tokens, dual_mask=o.dual_mask, system_prompt=self.system_prompt,
                           gradient_checkpointing=o.gradient_checkpointing, save_steps=o.save_steps, seed=o.seed)

    # ----------------------------------------------------------------- Step contract
    def validate(self) -> None:
        self.train_config()  # the preset's values with the overrides, checked as a whole

    def config(self) -> dict[str, Any]:
        cfg = self.options.fingerprint_dict()
        if self.options.system_prompt == "reflection":
            cfg["system_prompt_text"] = self.system_prompt
        return cfg

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> "Dataset":
        from reflectkit.train.data import read_training_data

        if input is None:
            raise UserError(f"{self.name} needs a training data file")
        return read_training_data(input, mapping=mapping, shape=self.options.shape or format,
                                  skip_bad_rows=skip_bad_rows, limit=limit)

    def estimate(self, records: list[Record]) -> dict[str, Any]:
        cfg = self.train_config()
        trainable = sum(1 for r in records if r.output.strip()
                        and not (isinstance(r.meta.get("synth"), dict) and r.meta["synth"].get("status")
                                 in ("failed", "malformed")))
        return {"rows": len(records), "trainable_rows": trainable, "method": "full" if cfg.full else f"lora r={cfg.lora_r}",
                "preset": cfg.preset, "epochs": cfg.epochs, "max_steps": cfg.max_steps, "effective_batch": cfg.effective_batch}

    def run_task(self, ctx: RunContext) -> dict[str, int]:
        from reflectkit.student import resolve_student
        from reflectkit.train.data import conversations_from_dataset
        from reflectkit.train.trainer import run_training

        if ctx.output is None:
            raise UserError("train needs -o OUTPUT_DIR")
        cfg = self.train_config()
        loaded = conversations_from_dataset(ctx.dataset, system_prompt=cfg.system_prompt)
        spec = ctx.model("student")
        info = resolve_student(spec.student_ref(), cache_dir=ctx.cache_dir)
        out = Path(ctx.output)
        m = run_training(loaded, out, cfg, base_dir=info.hf_dir, base_identity=info.identity,
                         resume=not ctx.restart, callbacks=TRAINER_CALLBACKS.get(),
                         device=self.options.device, progress=ctx.progress)
        keep_training_manifest(ctx, m, out)
        data, met = m.get("data", {}), m.get("metrics", {})
        return {"conversations": int(data.get("conversations") or 0), "examples": int(data.get("examples") or 0),
                "dual_mask_copies": int(data.get("dual_mask_copies") or 0), "steps": int(met.get("global_step") or 0)}

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        return training_manifest_section(ctx, "train", ("method", "device", "precision", "merged_dir", "adapter_dir",
                                                        "resumed_from", "metrics", "already_finished"))

    def details(self, ctx: RunContext) -> dict[str, Any]:
        """The training manifest (``OUT/manifest.json``): ``summary.metrics``, ``summary.merged_dir``, ..."""
        return dict(ctx.state.get("manifest") or {})

    def summary_lines(self, summary: Any) -> list[str]:
        m = summary.details
        if not m:
            return []
        out = Path(summary.output) if summary.output else None
        met = m["metrics"]
        lines = []
        if m.get("already_finished"):
            lines.append(f"train: {out} already holds this finished run (use --restart to train again)")
        lines.append(f"train: {m['data']['examples']} examples ({m['data']['dual_mask_copies']} dual-mask copies), "
                     f"{met['global_step']} steps, {m['method']}, {m['device']}/{m['precision']}")
        lines.append(f"  loss {met['first_loss']} -> {met['last_loss']}; {met['tokens_per_s']} tokens/s; "
                     f"peak memory {met['peak_memory_mb']} MB")
        lines.append(f"  merged model: {m['merged_dir']}")
        if m.get("adapter_dir"):
            lines.append(f"  adapter:      {m['adapter_dir']}")
        lines.append(f"  log: {m['train_log']}  plot: {m['loss_png']}")
        if out is not None:
            lines.append(f"  training manifest: {out / 'manifest.json'}")
        return lines


__all__ = ["TrainOptions", "TrainStep", "TRAINER_CALLBACKS"]


def keep_training_manifest(ctx: RunContext, m: dict[str, Any], out: Path) -> None:
    """Both training steps (``train``, ``judge train``) keep the trainer's manifest for the run's manifest and
    declare the same output files."""
    ctx.state["manifest"] = m
    ctx.add_file("model", out)
    ctx.add_file("train_manifest", out / "manifest.json")
    for name, key in (("merged", "merged_dir"), ("adapter", "adapter_dir")):
        if m.get(key):
            ctx.add_file(name, Path(m[key]))


def training_manifest_section(ctx: RunContext, section: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The run manifest's section for a training step: the named keys of the trainer's manifest."""
    m = ctx.state.get("manifest")
    if not m:
        return {}
    return {section: {k: m.get(k) for k in keys if k in m}, "model_dir": str(ctx.output)}
