"""``reflectkit eval gsm8k|ifeval|compare``, ``reflectkit judge pairwise|summarize|bench|build-data|train``,
``reflectkit refine``.

``reflectkit generate`` is generated from its step like every registered step. ``judge pairwise``, ``judge bench``
``judge build-data``, ``judge train`` and ``refine`` are generated from their steps too (:func:`reflectkit.cli_steps.build_command`) and attached here,
under the ``judge`` group or by their own name. ``eval gsm8k``/``eval ifeval`` are the ``eval`` step with the metric
fixed (flags -> :mod:`reflectkit.evaluate.api` -> print); ``eval compare`` and ``judge summarize`` make no model
calls and are plain functions of their files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from reflectkit.errors import UserError

DataOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Shared data directory (default: auto-detected).")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Report JSON (default: next to the input).")]
MdOpt = Annotated[Optional[Path], typer.Option("--md", help="Report markdown table (default: next to the input).")]
RespFieldOpt = Annotated[Optional[str], typer.Option("--response-field", help="Field holding the answer (default response/output/completion).")]


def _print_report(report: dict[str, Any]) -> None:
    print(report.get("markdown", ""), end="")
    if "paths" in report:
        print(f"\nwrote {report['paths']['json']} and {report['paths']['md']}")


def _labels(spec: str | None) -> tuple[str, str] | None:
    if spec is None:
        return None
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UserError(f"--labels: expected two names separated by a comma (e.g. model_1,model_2), got {spec!r}")
    return parts[0], parts[1]


def _first_paragraph(cls: Any) -> str:
    return (cls.__doc__ or cls.name).strip().split("\n\n")[0]


def register(app: typer.Typer) -> None:  # noqa: C901 (one function per command, registered together)
    from reflectkit.cli_steps import build_command
    from reflectkit.evaluate.judge_data import JudgeDataStep
    from reflectkit.evaluate.judge_step import JudgeBenchStep, JudgeStep
    from reflectkit.evaluate.judge_train import JudgeTrainStep
    from reflectkit.evaluate.refine import RefineStep

    eval_app = typer.Typer(help="Score answers: GSM8K, IFEval; compare two runs with a paired bootstrap.", no_args_is_help=True)
    judge_app = typer.Typer(help="Pairwise LLM judges (both orders), recorded-judgment summaries, judge benchmarks.",
                            no_args_is_help=True)
    app.add_typer(eval_app, name="eval")
    app.add_typer(judge_app, name="judge")

    app.command("refine", help=_first_paragraph(RefineStep))(build_command(RefineStep))
    judge_app.command("pairwise", help=_first_paragraph(JudgeStep))(build_command(JudgeStep))
    judge_app.command("bench", help=_first_paragraph(JudgeBenchStep))(build_command(JudgeBenchStep))
    judge_app.command("build-data", help=_first_paragraph(JudgeDataStep))(build_command(JudgeDataStep))
    judge_app.command("train", help=_first_paragraph(JudgeTrainStep))(build_command(JudgeTrainStep))

    @eval_app.command("gsm8k")
    def eval_gsm8k_cmd(
        answers: Annotated[Path, typer.Argument(help="Answers JSONL (from generate/refine, or any rows with id + response).")],
        json_path: JsonOpt = None,
        md_path: MdOpt = None,
        references: Annotated[Optional[str], typer.Option("--references", help="Eval set with the reference answers when rows have no 'answer' (default gsm8k).")] = None,
        data_dir: DataOpt = None,
        response_field: RespFieldOpt = None,
    ) -> None:
        """GSM8K exact match: strict (#### N) and flexible (last number), with 95% CIs."""
        from reflectkit.evaluate import api

        _print_report(api.eval_gsm8k(answers, json_path=json_path, md_path=md_path, references=references,
                                     data=data_dir, response_field=response_field))

    @eval_app.command("ifeval")
    def eval_ifeval_cmd(
        answers: Annotated[Path, typer.Argument(help="Answers JSONL: rows with key (or numeric id) or prompt, and response.")],
        json_path: JsonOpt = None,
        md_path: MdOpt = None,
        input_data: Annotated[Optional[Path], typer.Option("--input-data", help="IFEval input_data.jsonl (default: shared data).")] = None,
        response_field: RespFieldOpt = None,
        whole_response: Annotated[bool, typer.Option("--whole-response", help="Score the whole text, not only <output>.")] = False,
    ) -> None:
        """IFEval prompt- and instruction-level accuracy, strict and loose, with 95% CIs over prompts."""
        from reflectkit.evaluate import api

        _print_report(api.eval_ifeval(answers, json_path=json_path, md_path=md_path, input_data=input_data,
                                      response_field=response_field, output_only=not whole_response))

    @eval_app.command("compare")
    def eval_compare_cmd(
        run_a: Annotated[Path, typer.Argument(help="Report JSON of run A (from eval gsm8k/ifeval or judge bench).")],
        run_b: Annotated[Path, typer.Argument(help="Report JSON of run B (same eval set).")],
        metric: Annotated[Optional[list[str]], typer.Option("--metric", help="Only these metrics (repeatable).")] = None,
        labels: Annotated[Optional[str], typer.Option("--labels", help="Names for A and B, e.g. base,tuned.")] = None,
        json_path: JsonOpt = None,
    ) -> None:
        """Difference A - B per metric with a paired bootstrap 95% CI; says when it is not significant."""
        from reflectkit.evaluate import api
        from reflectkit.evaluate.compare import compare_markdown
        from reflectkit.evaluate.report import _write_atomic

        res = api.compare(run_a, run_b, metrics=metric, labels=_labels(labels))
        md = compare_markdown(res)
        print(md, end="")
        if json_path:
            _write_atomic(json_path, json.dumps(res, indent=2) + "\n")

    @judge_app.command("summarize")
    def judge_summarize_cmd(
        judgments: Annotated[Path, typer.Argument(help="JSONL with question, answer_1, answer_2, review, review_reverse.")],
        labels: Annotated[Optional[str], typer.Option("--labels", help="Names of the two sides, e.g. model_1,model_2.")] = None,
        json_path: JsonOpt = None,
        md_path: MdOpt = None,
    ) -> None:
        """Recompute W/T/L, win rate and bias metrics from recorded judge outputs (no judge calls)."""
        from reflectkit.evaluate import api

        _print_report(api.summarize_judgments(judgments, labels=_labels(labels), json_path=json_path, md_path=md_path))
