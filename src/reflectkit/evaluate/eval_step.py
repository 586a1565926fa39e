"""The ``eval`` step: score an answers file (GSM8K exact match or IFEval instruction following) with bootstrap CIs
and write the report (JSON + markdown table).

``reflectkit eval gsm8k FILE`` and ``reflectkit eval ifeval FILE`` are this step with the metric fixed; they call
:func:`reflectkit.evaluate.api.eval_gsm8k` / :func:`~reflectkit.evaluate.api.eval_ifeval`, which compute the same
report with :func:`eval_report` and write it next to the answers (no run directory). As a step (pipelines,
``reflectkit.engine.api.run("eval", ...)``) the report goes to ``eval.json`` / ``eval.md`` in the run directory,
registered as the files ``eval_json`` and ``eval_md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from reflectkit.data.io import Dataset, existing_file, file_sha256
from reflectkit.engine.step import RunContext, StageRefs, StepOptions, TaskStep, option
from reflectkit.errors import UserError
from reflectkit.evaluate.report import markdown, report_json

METRICS = ("gsm8k", "ifeval")


class EvalOptions(StepOptions):
    metric: Literal["gsm8k", "ifeval"] = option(..., "gsm8k (strict and flexible exact match) or ifeval (prompt- and "
                                                "instruction-level accuracy, strict and loose).")
    json_path: Path | None = option(None, "Report JSON (default: eval.json in the run directory).", flag="--json",
                                    fingerprint=False)
    md_path: Path | None = option(None, "Report markdown table (default: eval.md in the run directory).",
                                  flag="--md", fingerprint=False)
    response_field: str | None = option(None, "Field holding the answer (default response/output/completion).")
    references: str | None = option(None, "GSM8K: eval set with the reference answers when rows have no 'answer' "
                                    "(default gsm8k).")
    data: Path | None = option(None, "Shared data directory (default: auto-detected).", flag="--data-dir",
                               fingerprint=False)
    input_data: Path | None = option(None, "IFEval: input_data.jsonl (default: shared data).")
    whole_response: bool = option(False, "IFEval: score the whole text, not only <output>.")


def eval_report(metric: str, answers: str | Path, *, references: str | None = None, data: str | Path | None = None,
                response_field: str | None = None, input_data: str | Path | None = None,
                whole_response: bool = False) -> dict[str, Any]:
    """The report of ``metric`` on an answers file (what ``eval gsm8k`` / ``eval ifeval`` print and write)."""
    if metric == "gsm8k":
        from reflectkit.evaluate.gsm8k import eval_gsm8k_file

        return eval_gsm8k_file(answers, references=references, data=data, response_field=response_field)
    if metric == "ifeval":
        from reflectkit.evaluate.ifeval_report import eval_ifeval_file

        return eval_ifeval_file(Path(answers), input_data=Path(input_data) if input_data else None,
                                response_field=response_field, output_only=not whole_response)
    raise UserError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")


class EvalStep(TaskStep[EvalOptions]):
    """Score an answers file: GSM8K exact match or IFEval, with 95% CIs (JSON report + markdown table)."""

    name = "eval"
    files = {"eval_json": "the metrics with CIs (eval.json)", "eval_md": "the metrics table (eval.md)"}
    Options = EvalOptions
    code = ("evaluate", "answers.py", "evalsets.py")
    require_output = False
    needs_output = False
    #: in a pipeline it scores the previous stage's answers (an empty one is skipped, with a note)
    consumes_previous = True
    input_help = "Answers JSONL (from generate/refine, or any rows with id + response)."
    cli_plumbing = ("run_dir", "quiet")
    #: the commands are ``reflectkit eval gsm8k|ifeval FILE`` (reflectkit.evaluate.cli), with the metric fixed
    cli_command = False

    def for_stage(self, refs: StageRefs, input: Any) -> tuple["EvalStep", Any]:
        o = self.options
        update: dict[str, Any] = {}
        for name in ("json_path", "md_path", "input_data", "data"):
            p = getattr(o, name)
            if p is not None and not p.is_absolute():
                update[name] = Path(refs.path(f"./{p}"))
        return (type(self)(o.model_copy(update=update), models=self.models) if update else self), input

    def read_input(self, input: Any, *, format: str | None = None, mapping: dict[str, str] | None = None,
                   skip_bad_rows: bool = False, limit: int | None = None) -> Dataset:
        """The answers file, as the run's input (its hash is in the fingerprint; the scorers read it themselves)."""
        if input is None:
            raise UserError("eval needs an answers file")
        p = existing_file(input, what="answers file", expected="a JSONL answers file")
        return Dataset(p, p.suffix.lstrip(".") or "jsonl", "", [], [], file_sha256(p), {}, 0)

    def run_task(self, ctx: RunContext) -> dict[str, int]:
        o = self.options
        report = eval_report(o.metric, ctx.dataset.path, references=o.references, data=o.data,
                             response_field=o.response_field, input_data=o.input_data,
                             whole_response=o.whole_response)
        js = ctx.write_file("eval_json", Path(o.json_path).expanduser().absolute() if o.json_path else "eval.json",
                            report_json(report))
        text = markdown(report)
        md = ctx.write_file("eval_md", Path(o.md_path).expanduser().absolute() if o.md_path else "eval.md", text)
        ctx.state["report"] = {**report, "markdown": text, "paths": {"json": str(js), "md": str(md)}}
        return {k: v for k, v in (report.get("counts") or {}).items() if isinstance(v, int) and not isinstance(v, bool)}

    def details(self, ctx: RunContext) -> dict[str, Any]:
        return dict(ctx.state.get("report") or {})

    def summary_lines(self, summary: Any) -> list[str]:
        return [str(summary.details.get("markdown", "")).rstrip("\n")]
