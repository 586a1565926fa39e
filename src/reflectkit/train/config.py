"""Training configuration: defaults for a small CPU, the paper preset, and explicit overrides.

Presets:

* ``cpu-small`` (default): LoRA r=8, lr 2e-4, 1 epoch, batch 4 x 1, max length 512, warmup 0.03, no weight decay.
  Sized for the 135M default student on a laptop CPU.
* ``paper``: the Reflection-Tuning paper's SFT hyper-parameters (Li et al., 2023, "Reflection-Tuning: Data Recycling
  Improves LLM Instruction Tuning", training details: lr 2e-5, 3 epochs, warmup ratio 0.03, no weight decay,
  batch size 128, max length 2048). The batch of 128 is reached by gradient accumulation over
  ``per_device_batch_size`` (4 x 32 by default). The paper fine-tuned all weights, so ``--preset paper`` implies
  ``--full`` unless LoRA is asked for explicitly (``full=False``).

Explicit arguments (``epochs``, ``lr``, ...) override the preset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from reflectkit.errors import UserError

PRESETS: dict[str, dict[str, Any]] = {
    "cpu-small": {
        "full": False, "lr": 2e-4, "epochs": 1.0, "per_device_batch_size": 4, "grad_accum": 1, "max_length": 512,
        "warmup_ratio": 0.03, "weight_decay": 0.0, "lora_r": 8,
    },
    "paper": {
        "full": True, "lr": 2e-5, "epochs": 3.0, "per_device_batch_size": 4, "grad_accum": 32, "max_length": 2048,
        "warmup_ratio": 0.03, "weight_decay": 0.0, "lora_r": 8,
    },
}
DEFAULT_PRESET = "cpu-small"


@dataclass
class TrainConfig:
    preset: str = DEFAULT_PRESET
    full: bool = False
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1
    per_device_batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    lora_r: int = 8
    lora_alpha: int | None = None  # default 2 * r
    lora_dropout: float = 0.05
    add_tag_tokens: bool = False
    dual_mask: bool = False
    system_prompt: str | None = None
    gradient_checkpointing: bool = False
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    seed: int = 42
    merge: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def effective_batch(self) -> int:
        return self.per_device_batch_size * self.grad_accum

    def check(self) -> None:
        if self.preset not in PRESETS:
            raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        for name, minimum in (("lr", 0.0), ("epochs", 0.0)):
            if getattr(self, name) <= minimum:
                raise UserError(f"--{name} must be > {minimum:g}, got {getattr(self, name)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(f"--max-steps must be >= 1 (or -1 for epochs), got {self.max_steps}")
        if self.max_length < 16:
            raise UserError(f"--max-length must be >= 16, got {self.max_length}")
        if not self.full and self.lora_r < 1:
            raise UserError(f"--lora-r must be >= 1, got {self.lora_r}")
        if self.per_device_batch_size < 1 or self.grad_accum < 1:
            raise UserError("--batch-size and --grad-accum must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["effective_batch"] = self.effective_batch
        return d


def make_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Preset values, then every override that is not None."""
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    known = {f.name for f in fields(TrainConfig)}
    values: dict[str, Any] = {"preset": name, **PRESETS[name]}
    for k, v in overrides.items():
        if k not in known:
            raise TypeError(f"unknown training option {k!r}")
        if v is not None:
            values[k] = v
    cfg = TrainConfig(**values)
    cfg.check()
    return cfg
