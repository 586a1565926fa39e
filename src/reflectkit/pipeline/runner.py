"""Plan and run a pipeline: one sub-directory per stage (ledger + manifest + stage.json), skipped when its
content hash (inputs + options + models + code version, chained through the earlier stages) is unchanged.

Layout of the output directory::

    <output>/pipeline.json        the plan and what happened to each stage
    <output>/<stage>/stage.json   the stage's key and status (running / finished)
    <output>/<stage>/manifest.json, ledger.sqlite, output.jsonl   written by the recipe's run
    <output>/report.html          the self-contained run report
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reflectkit.engine.manifest import write_json_atomic
from reflectkit.errors import UserError
from reflectkit.engine.ledger import FingerprintMismatch
from reflectkit.engine.step import Step
from reflectkit.llm.spec import ModelSpec
from reflectkit.pipeline.hashing import code_version, data_hash, stage_key
from reflectkit.pipeline.schema import Pipeline, Stage, load_pipeline

STAGE_FILE = "stage.json"
PIPELINE_FILE = "pipeline.json"


@dataclass
class StageResult:
    output: Path | None = None  # data that feeds the next stage
    artefact: Path | None = None  # e.g. a trained model directory
    failed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # named side files (reports) for the HTML report


@dataclass
class StageRefs:
    """What a stage can refer to (see :meth:`reflectkit.engine.step.Step.for_stage`)."""

    pipeline: Pipeline
    stage: Stage
    data_outputs: dict[str, Path]
    artefacts: dict[str, Path]

    def data(self, stage: str) -> Path:
        if stage in ("input", "_input"):
            return self.pipeline.input
        if stage not in self.data_outputs:
            raise UserError(f"stage {self.stage.name!r}: {stage!r} is not an earlier stage with a data output")
        return self.data_outputs[stage]

    def artefact(self, stage: str) -> Path | None:
        return self.artefacts.get(stage)

    def path(self, p: str) -> str:
        looks_like_path = "/" in p or p.endswith((".json", ".jsonl", ".csv", ".parquet", ".gguf"))
        return str((self.pipeline.file.parent / p).resolve()) if looks_like_path else p

    def model(self, role: str) -> ModelSpec | None:
        return self.pipeline.models.get(role)

    def data_stages(self) -> list[str]:
        return list(self.data_outputs)


@dataclass
class StagePlan:
    stage: Stage
    kind: type[Step[Any]]
    dir: Path
    key: str
    input: Path | None
    input_from: str
    action: str  # run | rerun | resume | skip | reuse (--from/--only: earlier stage used as is) | not-selected
    reason: str
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> bool:
        return self.action in ("run", "rerun", "resume")


@dataclass
class PipelineResult:
    output: Path
    stages: list[dict[str, Any]]
    final_data: Path | None
    report: Path | None
    failed: int

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def read_state(d: Path) -> dict[str, Any] | None:
    p = d / STAGE_FILE
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
    except (OSError, json.JSONDecodeError):
        return None


def _finished_output(state: dict[str, Any] | None) -> Path | None:
    if not state or state.get("status") != "finished":
        return None
    out = state.get("output")
    return Path(out) if out else None


#: a directory named in the options (a prompt set) is hashed when it is this small; larger ones (a data directory)
#: are recorded by name only
_MAX_DIR_FILES = 200


def option_files(options: Any, base: Path) -> dict[str, str]:
    """sha256 of every file (and small directory) the options name, relative paths against the pipeline file:
    editing a benchmark file or a prompt set then re-runs the stage, like editing the stage's input does."""
    values: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str) and v:
            values.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    for v in options.model_dump(mode="json").values():
        walk(v)
    out: dict[str, str] = {}
    for v in values:
        path = Path(v).expanduser()
        path = path if path.is_absolute() else base / path
        try:
            if path.is_file():
                out[v] = data_hash(path)
            elif path.is_dir():
                files = sorted(f for f in path.rglob("*") if f.is_file())
                if len(files) <= _MAX_DIR_FILES:
                    out[v] = stage_key({str(f.relative_to(path)): data_hash(f) for f in files})
        except OSError:  # unreadable: the stage itself reports it when it runs
            continue
    return out


def _decide(state: dict[str, Any] | None, key: str, input_path: Path | None, upstream_ran: bool) -> tuple[str, str]:
    if state is None:
        return "run", "never ran"
    if state.get("key") != key:
        return "rerun", "inputs, options, models or code changed"
    if state.get("status") != "finished":
        return "resume", "interrupted; resuming from its ledger"
    if state.get("failed"):
        return "resume", f"{state['failed']} rows failed; retrying them"
    out = _finished_output(state)
    if out is not None and (not out.exists() or data_hash(out) != state.get("output_sha256")):
        return "rerun", "its output file is missing or was modified"
    if input_path is not None and input_path.exists() and state.get("input_sha256") not in (None, data_hash(input_path)):
        return "rerun", "its input file changed"
    if upstream_ran:
        return "rerun", "an earlier stage re-ran"
    return "skip", "up to date"


def plan_pipeline(p: Pipeline, *, from_stage: str | None = None, only: str | None = None) -> list[StagePlan]:
    """What ``run`` would do with each stage, and why."""
    if from_stage and only:
        raise UserError("--from and --only cannot be combined")
    start = p.stage(from_stage).index if from_stage else None
    only_idx = p.stage(only).index if only else None
    plans: list[StagePlan] = []
    prev_key = "pipeline:" + data_hash(p.input)
    data: tuple[Path | None, str] = (p.input, "pipeline input")
    data_by_stage: dict[str, Path | None] = {}
    upstream_ran = False
    models = {r: m.describe() for r, m in p.models.items()}
    for st in p.stages:
        kind = st.step_cls
        if st.input_ref is not None:
            inp, src = data_by_stage.get(st.input_ref), st.input_ref
        elif st.input_path is not None:
            inp, src = st.input_path, str(st.input_path)
        else:
            inp, src = data
        payload = {
            "kind": st.kind, "options": st.options.model_dump(mode="json"), "prev": prev_key,
            "models": {r: models[r] for r in st.roles if r in models}, "code": code_version(kind.code),
            "input_file": data_hash(inp) if st.input_path is not None else src,
            "limit": p.spec.limit if inp == p.input else None, "format": p.spec.format if inp == p.input else None,
            "option_files": option_files(st.options, p.file.parent),
        }
        key = stage_key(payload)
        d = p.output / st.name
        state = read_state(d)
        if only_idx is not None and st.index != only_idx:
            action, reason = ("reuse", "not selected (--only)") if st.index < only_idx else ("not-selected", "not selected (--only)")
        elif start is not None and st.index < start:
            action, reason = "reuse", "before --from"
        elif start is not None or only_idx is not None:
            action, reason = "rerun", "selected with --from/--only"
        else:
            action, reason = _decide(state, key, inp, upstream_ran)
        if action == "reuse" and kind.produces_data and _finished_output(state) is None:
            flag = "--only" if only else "--from"
            raise UserError(f"{flag}: the earlier stage {st.name!r} has not finished yet; run the pipeline without "
                            f"{flag} first")
        plans.append(StagePlan(st, kind, d, key, inp, src, action, reason))
        upstream_ran = upstream_ran or plans[-1].runs
        prev_key = key
        if kind.produces_data:
            out = d / (kind.stage_output or "output.jsonl")
            data_by_stage[st.name] = out
            data = (out, st.name)
    return plans


def _write_pipeline_json(p: Pipeline, plans: list[StagePlan], status: dict[str, dict[str, Any]], finished: bool) -> None:
    write_json_atomic(p.output / PIPELINE_FILE, {
        "name": p.spec.name or p.file.stem,
        "file": str(p.file),
        "input": str(p.input),
        "input_sha256": data_hash(p.input),
        "limit": p.spec.limit,
        "models": {r: m.describe() for r, m in p.models.items()},
        "finished": finished,
        "stages": [{"name": pl.stage.name, "kind": pl.kind.name, "dir": str(pl.dir), "key": pl.key,
                    "input": str(pl.input) if pl.input else None, "input_from": pl.input_from,
                    "options": pl.stage.options.model_dump(mode="json"), "action": pl.action, "reason": pl.reason,
                    **status.get(pl.stage.name, {})} for pl in plans],
    })


def _run_stage(pl: StagePlan, p: Pipeline, refs: StageRefs, *, cache_dir: Path, progress: bool) -> StageResult:
    from reflectkit.engine.executors import run_with_executor

    if pl.action in ("run", "rerun") and pl.dir.exists():
        shutil.rmtree(pl.dir)
    pl.dir.mkdir(parents=True, exist_ok=True)
    output = pl.dir / (pl.kind.stage_output or "output.jsonl")
    base = {"name": pl.stage.name, "kind": pl.kind.name, "key": pl.key, "options": pl.stage.options.model_dump(mode="json"),
            "input": str(pl.input) if pl.input else None,
            "input_sha256": data_hash(pl.input) if pl.input and pl.input.exists() else None}
    write_json_atomic(pl.dir / STAGE_FILE, {**base, "status": "running"})
    t0 = time.monotonic()
    if pl.kind.consumes_previous and pl.input is not None and pl.input.exists() and not pl.input.read_bytes().strip():
        # The previous stage kept no rows (e.g. selection dropped everything): say so and pass the emptiness on,
        # instead of failing on an empty file.
        if pl.kind.produces_data:
            output.write_bytes(b"")
        note = f"skipped: its input {pl.input} has no rows (the previous stage kept none)"
        write_json_atomic(pl.dir / STAGE_FILE, {
            **base, "status": "finished", "skipped": note, "output": str(output) if pl.kind.produces_data else None,
            "output_sha256": data_hash(output) if pl.kind.produces_data else None, "artefact": None, "failed": 0, "counts": {}, "files": {},
            "wall_time_s": 0.0,
        })
        print(f"  {pl.stage.name}: {note}")
        return StageResult(output=output if pl.kind.produces_data else None, counts={})
    try:
        step = pl.kind(pl.stage.options, models={r: p.models[r] for r in pl.stage.roles
                                                 if r in p.models and r in pl.kind.model_roles})
        step, inp = step.for_stage(refs, pl.input)
        first = pl.input == p.input  # the stage sits where the pipeline input comes in: --limit applies
        reads_pipeline_input = first and inp == pl.input
        kw: dict[str, Any] = dict(
            run_dir=pl.dir, cache_dir=cache_dir, concurrency=p.spec.concurrency, progress=progress,
            limit=p.spec.limit if first else None, format=p.spec.format if reads_pipeline_input else None,
            # rows that failed in an earlier stage are not processed further (recorded as upstream_failed)
            gate_failed=not reads_pipeline_input,
        )
        out_arg = output if pl.kind.stage_output else None
        # the executor decides where rows run, not what they produce: it is not part of the stage key
        kw.update(executor=p.spec.executor, ray_address=p.spec.ray_address, ray_workers=p.spec.ray_workers)
        try:
            summary = run_with_executor(step, inp, out_arg, **kw)
        except FingerprintMismatch:
            # resuming a stage whose run changed underneath (a benchmark file, a prompt set, the device's dtype):
            # its ledger cannot be reused, so the stage starts over
            print(f"  {pl.stage.name}: its earlier run no longer matches (inputs behind the options changed); "
                  "starting the stage over")
            summary = run_with_executor(step, inp, out_arg, restart=True, **kw)
    except UserError as exc:
        raise UserError(f"stage {pl.stage.name!r}: {exc}", exit_code=exc.exit_code) from None
    res = StageResult(output=output if pl.kind.produces_data else None, failed=summary.failed,
                      counts=dict(summary.counts), files={k: str(v) for k, v in summary.files.items()},
                      artefact=summary.files.get("model"))
    out = res.output if res.output and res.output.exists() else None
    write_json_atomic(pl.dir / STAGE_FILE, {
        **base, "status": "finished", "output": str(out) if out else None,
        "output_sha256": data_hash(out) if out else None, "artefact": str(res.artefact) if res.artefact else None,
        "failed": res.failed, "counts": res.counts, "files": res.files, "wall_time_s": round(time.monotonic() - t0, 3),
    })
    return res


def model_calls(estimate: dict[str, Any]) -> int:
    """The calls a step's dry-run estimate counts, whatever its model role is called."""
    for key in ("oracle_calls", "model_calls", "judge_calls", "judge_calls_at_most"):
        if key in estimate:
            return int(estimate[key])
    return 0


def _print_plan(plans: list[StagePlan], echo: Callable[[str], None]) -> None:
    echo("plan (oracle calls and tokens are upper-bound estimates, ~4 characters per token):")
    for pl in plans:
        e = pl.estimate
        est = (f"~{model_calls(e)} oracle calls, ~{e.get('prompt_tokens', 0)} prompt + "
               f"<={e.get('max_completion_tokens', 0)} completion tokens") if e else ""
        verb = {"skip": "skip", "reuse": "reuse", "not-selected": "skip"}.get(pl.action, "RUN")
        echo(f"  {pl.stage.index + 1}. {pl.stage.name:<16} [{pl.kind.name}] {verb:<5} ({pl.reason}) "
             f"input: {pl.input_from}" + (f"; {est}" if pl.runs and est else ""))


def run_pipeline(
    pipeline: str | Path | Pipeline,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    dry_run: bool = False,
    progress: bool = False,
    cache_dir: str | Path | None = None,
    report: bool | None = None,
    echo: Callable[[str], None] = print,
) -> PipelineResult:
    """Run (or with ``dry_run`` only plan) a pipeline file. Stages that are up to date are skipped."""
    from reflectkit.llm.cache import default_cache_dir

    p = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    plans = plan_pipeline(p, from_stage=from_stage, only=only)
    if dry_run:
        # Upper bounds: every stage is estimated on the pipeline's input rows (later stages see at most these),
        # read as the first stage reads them.
        first = plans[0].kind(plans[0].stage.options)
        records = first.read_input(p.input, format=p.spec.format, limit=p.spec.limit).records
        for pl in plans:
            step = pl.kind(pl.stage.options)
            try:  # files named in the options are relative to the pipeline file; earlier stages' data may not exist
                step, _ = step.for_stage(StageRefs(p, pl.stage, {}, {}), pl.input)
            except UserError:
                pass
            pl.estimate = step.estimate(records)
        _print_plan(plans, echo)
        total = sum(model_calls(pl.estimate) for pl in plans if pl.runs)
        echo(f"total: ~{total} oracle calls in the stages that would run (cached responses cost nothing)")
        return PipelineResult(p.output, [], None, None, 0)
    cdir = Path(cache_dir) if cache_dir else default_cache_dir()
    p.output.mkdir(parents=True, exist_ok=True)
    status: dict[str, dict[str, Any]] = {}
    _write_pipeline_json(p, plans, status, finished=False)
    data_outputs: dict[str, Path] = {}
    artefacts: dict[str, Path] = {}
    final_data: Path | None = None
    failed = 0
    for pl in plans:
        state = read_state(pl.dir)
        if pl.runs:
            echo(f"[{pl.stage.index + 1}/{len(plans)}] {pl.stage.name}: running ({pl.reason})")
            refs = StageRefs(p, pl.stage, dict(data_outputs), dict(artefacts))
            t0 = time.monotonic()
            res = _run_stage(pl, p, refs, cache_dir=cdir, progress=progress)
            status[pl.stage.name] = {"status": "ran", "wall_time_s": round(time.monotonic() - t0, 3), "failed": res.failed}
            failed += res.failed
            state = read_state(pl.dir)
        elif pl.action == "not-selected":
            status[pl.stage.name] = {"status": "not-selected"}
            continue
        else:
            echo(f"[{pl.stage.index + 1}/{len(plans)}] {pl.stage.name}: skipped ({pl.reason})")
            status[pl.stage.name] = {"status": "skipped"}
        out, art = _finished_output(state), (state or {}).get("artefact")
        if out is not None:
            data_outputs[pl.stage.name] = out
            final_data = out
        if art:
            artefacts[pl.stage.name] = Path(art)
        _write_pipeline_json(p, plans, status, finished=False)
    _write_pipeline_json(p, plans, status, finished=True)
    report_path = None
    if p.spec.report if report is None else report:
        from reflectkit.report.build import build_report

        report_path = build_report(p.output, p.output / "report.html")
    echo(f"output:    {final_data}" if final_data else "output:    (no data stage ran)")
    echo(f"manifests: {p.output}/<stage>/manifest.json (stages: {', '.join(pl.stage.name for pl in plans)})")
    if report_path:
        echo(f"report:    {report_path}")
    if failed:
        echo(f"{failed} rows failed; re-run the same command to retry them")
    return PipelineResult(p.output, [{"name": n, **s} for n, s in status.items()], final_data, report_path, failed)
