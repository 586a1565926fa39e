"""Python API for synthesis: the same function the CLI calls."""

from __future__ import annotations

from pathlib import Path

from reflectkit.data.io import read_dataset
from reflectkit.engine.run import RunSummary, run_step
from reflectkit.llm.cache import ResponseCache
from reflectkit.llm.factory import ModelSpec, build_chat_model
from reflectkit.synth.inputs import auto_mapping
from reflectkit.synth.step import SynthConfig, SynthStep


def synthesize(
    input: str | Path,
    output: str | Path | None,
    *,
    format: str = "reflection",
    oracle: ModelSpec | None = None,
    answer_field: str | None = None,
    checker: str = "numeric",
    max_attempts: int = 4,
    keep_unverified: bool = False,
    temperature: float = 0.7,
    first_temperature: float = 0.0,
    max_tokens: int = 1024,
    prompt_set: str = "paper",
    system_prompt: str | None = None,
    run_dir: str | Path | None = None,
    limit: int | None = None,
    concurrency: int = 8,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    shape: str | None = None,
    mapping: dict[str, str] | None = None,
    skip_bad_rows: bool = False,
    progress: bool = False,
    restart: bool = False,
) -> RunSummary:
    """Synthesize Reflection-format (or plain-CoT) answers, validated and verified against references.

    Verification statistics are in ``summary.manifest["synthesis"]`` (``verification_rate``,
    ``attempts_per_verified``, ``oracle_calls_per_verified``).

    >>> from reflectkit.synth.api import synthesize
    >>> s = synthesize("gsm8k_train.jsonl", "refl.jsonl", answer_field="answer", limit=20)  # doctest: +SKIP
    """
    m = auto_mapping(input, mapping)
    ds = read_dataset(input, format=shape, mapping=m, skip_bad_rows=skip_bad_rows, require_output=False).limit(limit)
    cfg = SynthConfig(format=format, answer_field=answer_field, checker=checker, max_attempts=max_attempts,  # type: ignore[arg-type]
                      keep_unverified=keep_unverified, temperature=temperature, first_temperature=first_temperature,
                      max_tokens=max_tokens, prompt_set=prompt_set, system_prompt=system_prompt)
    cache = ResponseCache(cache_dir) if use_cache else None
    model = build_chat_model(oracle or ModelSpec(), cache=cache, concurrency=concurrency)
    step = SynthStep(model, cfg)
    return run_step(step, ds, output=Path(output) if output else None, run_dir=Path(run_dir) if run_dir else None,
                    concurrency=concurrency, progress=progress, restart=restart)
