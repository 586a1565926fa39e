"""``reflectkit judge train``: ReflectRM's unified GRPO training of a generative judge (TRL ``GRPOTrainer``).

ReflectRM (Qin et al., arXiv 2604.07506, 2026) trains one model on a mix of response-preference data (which answer
is better) and analysis-preference data (which of two analyses of the same pair is right), with GRPO and a rule
reward. Here:

* input: a mix written by ``judge build-data`` (``*.mix.jsonl``), or a named bench / labelled pairwise file, in
  which case the mix is built first (into ``OUT/data/``, through the engine: cached, resumable) by sampling the
  *base model itself* (the ``--student``: the model that is trained);
* reward (:func:`judge_rewards`): ``format`` 1 when the completion ends with the fixed verdict line the prompt asks
  for (``Verdict: Assistant 1|2`` or ``Sounder: A|B``), ``verdict`` 1 when that verdict is the labelled one; summed
  with weights ``--format-weight`` (0.2) and 1. A choice made here: the paper's template and reward weights are not
  public (see ``prompts/judge/reflective/SOURCE.md``);
* LoRA by default (``--full`` for all weights); checkpoints in ``OUT/checkpoints`` (re-running resumes, like
  ``reflectkit train``); ``OUT/train_log.csv`` + ``OUT/curves.png`` (loss and mean reward per step);
  ``OUT/manifest.json``; ``OUT/merged/`` (+ ``OUT/adapter/``) so that ``judge pairwise|bench --model OUT`` uses it.
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from reflectkit.data.io import Dataset
from reflectkit.data.record import Record
from reflectkit.engine.step import ModelRole, RunContext, StepOptions, TaskStep, option
from reflectkit.errors import UserError
from reflectkit.evaluate.judge_parse import parse_sounder, parse_verdict
from reflectkit.train.step import keep_training_manifest, training_manifest_section

LOG_FIELDS = ("step", "epoch", "loss", "reward", "reward_std", "reward_format", "reward_verdict", "kl",
              "completion_length", "learning_rate", "grad_norm")


class JudgeTrainOptions(StepOptions):
    # --- data (when the input is not yet a mix)
    n: int = option(8, "Data: analyses sampled per pair from the base model (ReflectRM: 8).", ge=2)
    data_temperature: float = option(1.0, "Data: temperature of those analyses.", ge=0)
    data_max_tokens: int = option(1024, "Data: max_tokens of each analysis.", ge=1)
    ratio: float = option(4.0, "Data: response-preference : analysis-preference examples (ReflectRM: 4:1).", gt=0)
    prompt_set: str = option("reflectrm", "Judge prompt set used to build the data.")
    subset: list[str] | None = option(None, "Named benchmark: only these subsets/files (repeatable).")
    data: Path | None = option(None, "Shared data directory (default: auto-detected).", flag="--data-dir",
                               fingerprint=False)
    # --- GRPO
    full: bool = option(False, "Full fine-tuning instead of LoRA.", flag="--full/--lora")
    lora_r: int = option(16, "LoRA rank (alpha = 2r).", ge=1)
    lr: float = option(1e-5, "Learning rate.", gt=0)
    # not part of the run's key: a run can be extended (it resumes from its last checkpoint)
    epochs: float = option(1.0, "Epochs over the mix.", gt=0, fingerprint=False)
    max_steps: int | None = option(None, "Stop after N optimizer steps (overrides --epochs).", ge=1,
                                   fingerprint=False)
    num_generations: int = option(8, "GRPO group size: completions per prompt.", ge=2)
    batch_size: int | None = option(None, "Completions per device step (default: --num-generations).", ge=1)
    grad_accum: int = option(1, "Gradient accumulation steps.", ge=1)
    max_completion_length: int = option(1024, "Max tokens of each GRPO completion.", ge=1)
    temperature: float = option(1.0, "GRPO sampling temperature.", gt=0)
    beta: float = option(0.0, "KL coefficient (TRL default 0: no reference model).", ge=0)
    format_weight: float = option(0.2, "Weight of the well-formed-output reward (the verdict reward weighs 1).", ge=0)
    save_steps: int = option(50, "Checkpoint every N steps.", ge=1, fingerprint=False)
    seed: int = option(0, "Seed of the data's orders and mix, and of training.")
    device: str | None = option(None, "cpu or cuda (default: cuda when available).", fingerprint=False)


def _verdict_of(text: str, kind: str) -> str | None:
    return parse_verdict(text)[0] if kind == "response" else parse_sounder(text)


def _text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def format_reward(completions: list[Any], kind: list[str], **_: Any) -> list[float]:
    """1.0 when the completion has the verdict line its prompt asks for (``Verdict: Assistant 1|2`` for response
    preference, ``Sounder: A|B`` for analysis preference), else 0.0."""
    out = []
    for c, k in zip(completions, kind):
        v = _verdict_of(_text(c), k)
        out.append(1.0 if v in (("1", "2") if k == "response" else ("A", "B")) else 0.0)
    return out


def verdict_reward(completions: list[Any], kind: list[str], answer: list[str], **_: Any) -> list[float]:
    """1.0 when the completion's verdict is the labelled one (the better answer; the correct analysis), else 0.0."""
    return [1.0 if _verdict_of(_text(c), k) == a else 0.0 for c, k, a in zip(completions, kind, answer)]


def judge_rewards() -> list[Any]:
    return [format_reward, verdict_reward]


def read_mix(path: Path) -> list[dict[str, Any]]:
    from reflectkit.evaluate.answersfile import read_jsonl

    rows = read_jsonl(path, what="training mix")
    out = []
    for r in rows:
        line = r.get("_line", "?")
        if r.get("kind") not in ("response", "analysis") or not isinstance(r.get("prompt"), list) \
                or not isinstance(r.get("answer"), str):
            raise UserError(f"{path}:{line}: not a judge training example (kind response|analysis, prompt messages, "
                            "answer); build one with `reflectkit judge build-data`")
        out.append({"id": str(r.get("id", line)), "kind": r["kind"], "prompt": r["prompt"], "answer": r["answer"]})
    if not out:
        raise UserError(f"{path}: the training mix is empty (every pair was easy?); nothing to train on")
    return out


def is_mix_file(source: Any) -> bool:
    p = Path(str(source))
    if not p.is_file():
        return False
    if p.name.endswith(".mix.jsonl"):
        return True
    try:
        with open(p, encoding="utf-8") as fh:
            first = json.loads(fh.readline() or "{}")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(first, dict) and first.get("kind") in ("response", "analysis") and "prompt" in first


class JudgeTrainStep(TaskStep[JudgeTrainOptions]):
    """Train a generative judge the ReflectRM way: GRPO on response- and analysis-preference data (LoRA default)."""

    name = "judge-train"
    Options = JudgeTrainOptions
    model_roles = {"student": ModelRole("student", "The base model to train (and to sample the data from): "
                                        "'embedded', a local HF dir or a .gguf.")}
    files = {"model": "the output directory", "train_manifest": "OUT/manifest.json", "merged": "the merged model",
             "adapter": "the LoRA adapter", "mix": "the training mix used"}
    manifest_sections = ("judge_train", "model_dir")
    code = ("evaluate/judge_train.py", "evaluate/judge_data.py", "evaluate/judge_parse.py", "train", "student.py",
            "prompts/judge")
    require_output = False
    stage_output = "model"
    cli_command = False
    cli_plumbing = ("run_dir", "limit", "dry_run", "restart", "map", "quiet")
    input_help = "A mix from `judge build-data` (*.mix.jsonl), or llmbar / judgebench / a labelled pairwise file " \
                 "(the mix is built first, sampling the base model)."

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> Dataset:
        if input is None:
            raise UserError("judge train needs a training mix, a benchmark name or a labelled pairwise file")
        if is_mix_file(input):
            p = Path(str(input))
            rows = read_mix(p)[: limit or None]
            recs = [Record(id=r["id"], index=i, instruction=r["prompt"][-1]["content"], output=r["answer"], raw=r)
                    for i, r in enumerate(rows)]
            sha = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
            ds = Dataset(p, "jsonl", "mix", recs, [], sha, {}, len(recs))
            ds.meta_kind = "mix"  # type: ignore[attr-defined]
            return ds
        from reflectkit.evaluate.judge_step import bench_or_file

        ds = bench_or_file(input, data=self.options.data, limit=limit, subsets=self.options.subset, mapping=mapping)
        ds.meta_kind = "pairs"  # type: ignore[attr-defined]
        ds.source = input  # type: ignore[attr-defined]
        return ds

    def estimate(self, records: list[Record]) -> dict[str, Any]:
        o = self.options
        pairs = bool(records) and "label" in records[0].raw
        est: dict[str, Any] = {"rows": len(records), "input": "labelled pairs" if pairs else "training mix",
                               "method": "full" if o.full else f"lora r={o.lora_r}", "max_steps": o.max_steps,
                               "num_generations": o.num_generations}
        if pairs:
            est["oracle_calls"] = o.n * len(records)
        return est

    # ----------------------------------------------------------------- the run
    def _build_mix(self, ctx: RunContext, out: Path) -> Path:
        """Run ``judge build-data`` with the student as the sampled model, in ``OUT/data`` (a nested engine run in a
        worker thread: this task already runs inside the engine's event loop)."""
        from reflectkit.engine.api import run
        from reflectkit.evaluate.judge_data import JudgeDataStep

        o = self.options
        ds = ctx.dataset
        step = JudgeDataStep({"n": o.n, "temperature": o.data_temperature, "max_tokens": o.data_max_tokens,
                              "ratio": o.ratio, "seed": o.seed, "prompt_set": o.prompt_set, "subset": o.subset,
                              "data": o.data}, models={"judge": self.spec("student")})
        data_dir = out / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        limit = len(ds.records) if getattr(ds, "limit_per_subset", None) is None else ds.limit_per_subset  # type: ignore[attr-defined]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            summary = pool.submit(run, step, getattr(ds, "source", ds.path), data_dir / "pairs.jsonl",
                                  run_dir=data_dir / "run", cache_dir=ctx.cache_dir, limit=limit,
                                  restart=ctx.restart, concurrency=ctx.concurrency).result()
        ctx.state["data_summary"] = {k: v for k, v in summary.details.items() if k != "left_out"}
        return Path(summary.details["mix"])

    def run_task(self, ctx: RunContext) -> dict[str, int]:
        from reflectkit.student import resolve_student

        if ctx.output is None:
            raise UserError("judge train needs -o OUTPUT_DIR")
        out = Path(ctx.output)
        if getattr(ctx.dataset, "meta_kind", "mix") == "pairs":
            mix_path = self._build_mix(ctx, out)
            mix = read_mix(mix_path)
        else:
            mix_path = ctx.dataset.path
            mix = [r.raw for r in ctx.dataset.records]
        ctx.add_file("mix", Path(mix_path))
        info = resolve_student(self.spec("student").student_ref(), cache_dir=ctx.cache_dir)
        m = run_grpo(mix, Path(mix_path), out, self.options, base_dir=info.hf_dir, base_identity=info.identity,
                     resume=not ctx.restart, progress=ctx.progress)
        if ctx.state.get("data_summary"):
            m["data_build"] = ctx.state["data_summary"]
        keep_training_manifest(ctx, m, out)
        return {"examples": len(mix), "steps": int(m["metrics"]["global_step"] or 0)}

    def manifest_extra(self, ctx: RunContext) -> dict[str, Any]:
        return training_manifest_section(ctx, "judge_train", ("method", "device", "merged_dir", "adapter_dir",
                                                              "resumed_from", "metrics", "data", "reward",
                                                              "already_finished"))

    def details(self, ctx: RunContext) -> dict[str, Any]:
        return dict(ctx.state.get("manifest") or {})

    def summary_lines(self, summary: Any) -> list[str]:
        m = summary.details
        if not m:
            return []
        met = m["metrics"]
        lines = []
        if m.get("already_finished"):
            lines.append(f"judge train: {summary.output} already holds this finished run (use --restart to train again)")
        lines += [f"judge train: {m['data']['examples']} examples ({m['data']['by_kind']}), {met['global_step']} GRPO "
                  f"steps, {m['method']}, {m['device']}",
                  f"  reward {met['first_reward']} -> {met['last_reward']}; loss {met['first_loss']} -> "
                  f"{met['last_loss']}; {met['wall_time_s']} s",
                  f"  judge model: {m['merged_dir']}  (use: reflectkit judge bench NAME --judge reflective --model "
                  f"{summary.output})",
                  f"  log: {m['train_log']}  curves: {m['curves_png']}"]
        return lines


# --------------------------------------------------------------------------------------------- GRPO


def _fingerprint(o: JudgeTrainOptions, mix_sha: str, base_identity: dict[str, Any]) -> str:
    keys = ("full", "lora_r", "lr", "num_generations", "batch_size", "grad_accum", "max_completion_length",
            "temperature", "beta", "format_weight", "seed")
    payload = {"config": {k: getattr(o, k) for k in keys}, "mix": mix_sha, "student": base_identity}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def log_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in history:
        if "step" in e and ("loss" in e or "reward" in e):
            rows.append({
                "step": e.get("step"), "epoch": e.get("epoch"), "loss": e.get("loss"), "reward": e.get("reward"),
                "reward_std": e.get("reward_std"), "reward_format": e.get("rewards/format_reward/mean"),
                "reward_verdict": e.get("rewards/verdict_reward/mean"), "kl": e.get("kl"),
                "completion_length": e.get("completions/mean_length"), "learning_rate": e.get("learning_rate"),
                "grad_norm": e.get("grad_norm")})
    return rows


def write_curves(rows: list[dict[str, Any]], csv_path: Path, png_path: Path, title: str) -> None:
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(LOG_FIELDS))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
    steps = [r["step"] for r in rows]
    for ax, key, label in ((a1, "loss", "GRPO loss"), (a2, "reward", "mean reward")):
        ys = [r[key] if r[key] is not None else float("nan") for r in rows]
        ax.plot(steps, ys, marker="." if len(rows) < 50 else None)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def run_grpo(mix: list[dict[str, Any]], mix_path: Path, out: Path, o: JudgeTrainOptions, *, base_dir: Path,
             base_identity: dict[str, Any], resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """GRPO on the mix; writes OUT/ (see the module docstring) and returns the manifest."""
    import torch
    from datasets import Dataset as HFDataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from reflectkit.engine.manifest import code_info, command_line, write_json_atomic
    from reflectkit.train.outputs import save_models
    from reflectkit.train.trainer import check_run_dir, versions

    dev = o.device or ("cuda" if torch.cuda.is_available() else "cpu")
    mix_sha = hashlib.sha256(json.dumps(mix, sort_keys=True).encode()).hexdigest()
    fp = _fingerprint(o, mix_sha, base_identity)
    done = _finished(out, fp, o) if resume else None
    if done is not None:
        return done
    resume_from = check_run_dir(out, fp, resume)
    torch.manual_seed(o.seed)
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft_config = None
    if not o.full:
        from peft import LoraConfig

        peft_config = LoraConfig(r=o.lora_r, lora_alpha=2 * o.lora_r, lora_dropout=0.05, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    bf16 = dev == "cuda" and torch.cuda.is_bf16_supported()
    args = GRPOConfig(
        output_dir=str(out / "checkpoints"), num_train_epochs=o.epochs, max_steps=o.max_steps or -1,
        learning_rate=o.lr, per_device_train_batch_size=o.batch_size or o.num_generations,
        gradient_accumulation_steps=o.grad_accum, num_generations=o.num_generations,
        max_completion_length=o.max_completion_length, temperature=o.temperature, beta=o.beta,
        reward_weights=[o.format_weight, 1.0], bf16=bf16, fp16=False, use_cpu=dev == "cpu", logging_steps=1,
        logging_first_step=True, save_strategy="steps", save_steps=o.save_steps, save_total_limit=2,
        report_to="none", seed=o.seed, data_seed=o.seed, dataloader_num_workers=0, disable_tqdm=not progress,
    )
    ds = HFDataset.from_list([{"prompt": r["prompt"], "answer": r["answer"], "kind": r["kind"]} for r in mix])
    trainer = GRPOTrainer(model=model, reward_funcs=judge_rewards(), args=args, train_dataset=ds,
                          processing_class=tok, peft_config=peft_config)
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    wall = time.monotonic() - t0
    rows = log_rows(trainer.state.log_history)
    method = "full" if o.full else f"LoRA r={o.lora_r}"
    write_curves(rows, out / "train_log.csv", out / "curves.png",
                 f"GRPO ({method}) of {base_dir.name} on {mix_path.name}")
    saved = save_models(trainer.model, tok, out, lora=not o.full, merge=True)
    rewards = [r["reward"] for r in rows if r["reward"] is not None]
    losses = [r["loss"] for r in rows if r["loss"] is not None]
    by_kind = {k: sum(r["kind"] == k for r in mix) for k in ("response", "analysis")}
    manifest = {
        "step": "judge-train", "status": "finished", "code": code_info(), "command": command_line(),
        "config": o.fingerprint_dict() | {"max_steps": o.max_steps, "epochs": o.epochs}, "fingerprint": fp,
        "data": {"mix": str(mix_path), "sha256": mix_sha, "examples": len(mix), "by_kind": by_kind},
        "reward": {"format_reward": o.format_weight, "verdict_reward": 1.0,
                   "rule": "format: the verdict line the prompt asks for; verdict: equals the label"},
        "student": base_identity, "base_model_dir": str(base_dir), "merged_dir": saved["merged_dir"],
        "adapter_dir": saved["adapter_dir"], "checkpoints_dir": str(out / "checkpoints"),
        "method": "full" if o.full else "lora", "device": dev, "precision": "bf16" if bf16 else "fp32",
        "resumed_from": str(resume_from) if resume_from else None,
        "metrics": {"global_step": trainer.state.global_step, "epoch": trainer.state.epoch,
                    "train_loss": result.training_loss, "first_loss": losses[0] if losses else None,
                    "last_loss": losses[-1] if losses else None, "first_reward": rewards[0] if rewards else None,
                    "last_reward": rewards[-1] if rewards else None, "wall_time_s": round(wall, 2)},
        "train_log": str(out / "train_log.csv"), "curves_png": str(out / "curves.png"), "versions": versions(),
        "kind": "judge",
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def _finished(out: Path, fp: str, o: JudgeTrainOptions) -> dict[str, Any] | None:
    p = out / "manifest.json"
    try:
        m = json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
    except (OSError, json.JSONDecodeError):
        return None
    if not m or m.get("fingerprint") != fp or m.get("status") != "finished":
        return None
    c = m.get("config", {})
    if c.get("max_steps") == o.max_steps and c.get("epochs") == o.epochs and Path(m.get("merged_dir") or "").exists():
        return {**m, "already_finished": True}
    return None


__all__ = ["JudgeTrainOptions", "JudgeTrainStep", "format_reward", "verdict_reward", "run_grpo", "train_judge"]


def train_judge(input: Any, output: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Python API of ``reflectkit judge train``; returns the training manifest (``OUT/manifest.json``)."""
    from reflectkit.engine.api import run

    summary = run(JudgeTrainStep, input, output, **kwargs)
    return summary if isinstance(summary, dict) else dict(summary.details)
