"""Declarative, resumable pipelines: ``reflectkit run PIPELINE.yaml`` (see docs/pipeline.md)."""

from __future__ import annotations

__all__ = ["load_pipeline", "run_pipeline", "plan_pipeline"]


def __getattr__(name: str):  # lazy: keep `import reflectkit.pipeline` cheap
    if name in __all__:
        from reflectkit.pipeline import runner, schema

        return {"load_pipeline": schema.load_pipeline, "run_pipeline": runner.run_pipeline,
                "plan_pipeline": runner.plan_pipeline}[name]
    raise AttributeError(name)
