"""``reflectkit train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from reflectkit import cli_common as c


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        data: c.InputArg,
        output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output directory (merged/, adapter/, checkpoints/, logs, manifest).")] = None,
        student: Annotated[str, typer.Option("--student", help="'embedded' (SmolLM2-135M-Instruct), a local HF model dir or a .gguf file.")] = "embedded",
        preset: Annotated[Optional[str], typer.Option("--preset", help="cpu-small (default) or paper (lr 2e-5, 3 epochs, warmup 0.03, wd 0, batch 128, max length 2048, full).")] = None,
        full: Annotated[Optional[bool], typer.Option("--full/--lora", help="Full fine-tuning instead of LoRA (default: as the preset).", show_default=False)] = None,
        epochs: Annotated[Optional[float], typer.Option("--epochs", help="Epochs (default: preset).")] = None,
        max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Stop after N optimizer steps (overrides --epochs).")] = None,
        lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default: preset).")] = None,
        lora_r: Annotated[Optional[int], typer.Option("--lora-r", help="LoRA rank (alpha = 2r).")] = None,
        max_length: Annotated[Optional[int], typer.Option("--max-length", help="Max tokens per example (longer ones are truncated).")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Per-device batch size.")] = None,
        grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Gradient accumulation steps.")] = None,
        add_tag_tokens: Annotated[bool, typer.Option("--add-tag-tokens", help="Add the six Reflection tags as special tokens and resize embeddings (Glaive recipe).")] = False,
        dual_mask: Annotated[bool, typer.Option("--dual-mask", help="Duplicate examples with a <reflection>; the copy has loss only after the first <reflection> (Glaive recipe).")] = False,
        system_prompt: Annotated[Optional[str], typer.Option("--system-prompt", help="System prompt for every example ('reflection' = the Reflection 70B prompt).")] = None,
        gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Trade compute for memory.")] = False,
        save_steps: Annotated[Optional[int], typer.Option("--save-steps", help="Checkpoint every N steps.")] = None,
        seed: Annotated[Optional[int], typer.Option("--seed")] = None,
        restart: Annotated[bool, typer.Option("--restart", help="Discard existing checkpoints in OUT instead of resuming.")] = False,
        limit: c.LimitOpt = None,
        shape: Annotated[Optional[str], typer.Option("--shape", help="Record shape: alpaca, messages or sharegpt (auto-detected).")] = None,
        map: c.MapOpt = None,
        quiet: c.QuietOpt = False,
    ) -> None:
        """Fine-tune a student on DATA (TRL SFTTrainer; LoRA by default; loss on assistant tokens only)."""
        from reflectkit.data.io import parse_mapping
        from reflectkit.train.api import train

        if output is None:
            raise c.UserError("train needs -o OUTPUT_DIR")
        m = train(data, output, student=student, full=full, preset=preset, epochs=epochs, max_steps=max_steps, lr=lr,
                  lora_r=lora_r, max_length=max_length, batch_size=batch_size, grad_accum=grad_accum,
                  add_tag_tokens=add_tag_tokens, dual_mask=dual_mask, system_prompt=system_prompt,
                  gradient_checkpointing=gradient_checkpointing, save_steps=save_steps, seed=seed, resume=not restart,
                  limit=limit, mapping=parse_mapping(map), shape=shape, cache_dir=c.cache_dir(),
                  progress=c.progress_enabled(quiet))
        met = m["metrics"]
        if m.get("already_finished"):
            print(f"train: {output} already holds this finished run (use --restart to train again)")
        print(f"train: {m['data']['examples']} examples ({m['data']['dual_mask_copies']} dual-mask copies), "
              f"{met['global_step']} steps, {m['method']}, {m['device']}/{m['precision']}")
        print(f"  loss {met['first_loss']} -> {met['last_loss']}; {met['tokens_per_s']} tokens/s; peak memory {met['peak_memory_mb']} MB")
        print(f"  merged model: {m['merged_dir']}")
        if m.get("adapter_dir"):
            print(f"  adapter:      {m['adapter_dir']}")
        print(f"  log: {m['train_log']}  plot: {m['loss_png']}")
        print(f"  manifest: {Path(output) / 'manifest.json'}")
