"""A pipeline with ``executor: ray`` on a local Ray cluster gives the stage outputs of ``executor: local``.

The oracle is the project's loopback server (``benchmarks/loopback_server.py``): the point is where rows run, not
what a model answers, and a real server's generation would only add minutes (the equivalence against a real
llama.cpp server is in tests/engine/test_ray_executor.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from pipeline_helpers import write_pipeline
from reflectkit.errors import UserError
from reflectkit.pipeline.runner import run_pipeline

sys.path.insert(0, str(ROOT / "benchmarks"))
from loopback_server import ServerThread


def _models(url: str) -> str:
    return (f"  oracle: {{model: loopback, base_url: '{url}', api_key_env: RK_TEST_NOKEY, canary_every: 0}}\n")


STAGES = "  - name: rec\n    kind: recycle\n    options: {phase: response}\n"


@pytest.mark.slow
def test_pipeline_executor_ray_matches_local(ray_cluster: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RK_TEST_NOKEY", "unused")
    outputs = {}
    with ServerThread(lat_min=0.02, lat_max=0.05) as srv:
        for executor in ("local", "ray"):
            d = tmp_path / executor
            d.mkdir()
            f = write_pipeline(d, STAGES, limit=12, models=_models(srv.base_url),
                               extra=f"executor: {executor}\nray_workers: 2\nreport: false\n"
                               if executor == "ray" else "report: false\n")
            res = run_pipeline(f, cache_dir=d / "cache", echo=lambda s: None)
            assert res.exit_code == 0
            outputs[executor] = (d / "out" / "rec" / "output.jsonl").read_bytes()
            manifest = json.loads((d / "out" / "rec" / "manifest.json").read_text())
            assert manifest.get("executor", {"kind": "local"})["kind"] == executor
    assert outputs["ray"] == outputs["local"]
    assert len(outputs["ray"].splitlines()) == 12


def test_ray_address_needs_executor_ray(tmp_path: Path) -> None:
    f = write_pipeline(tmp_path, STAGES, extra="ray_address: auto\n")
    with pytest.raises(UserError, match=r"pipeline\.yaml:\d+: .*ray_address needs executor: ray"):
        run_pipeline(f, cache_dir=tmp_path / "cache", echo=lambda s: None)


def test_unknown_executor_is_one_line(tmp_path: Path) -> None:
    f = write_pipeline(tmp_path, STAGES, extra="executor: spark\n")
    with pytest.raises(UserError, match=r"pipeline\.yaml:\d+: executor"):
        run_pipeline(f, cache_dir=tmp_path / "cache", echo=lambda s: None)

