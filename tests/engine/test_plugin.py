"""A step defined outside reflectkit (examples/plugin/reflectkit_wordcount.py, the example of docs/CONTRIBUTING.md)
is found through the ``reflectkit.steps`` entry point and runs from the CLI, the Python API and a pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ALPACA, ROOT

EXAMPLE = ROOT / "examples" / "plugin" / "reflectkit_wordcount.py"


@pytest.fixture()
def plugin_path(tmp_path, monkeypatch) -> Path:
    """A directory on sys.path holding the module and a ``.dist-info`` whose entry_points.txt registers it."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE, site / "reflectkit_wordcount.py")
    dist = site / "reflectkit_wordcount-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: reflectkit-wordcount\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[reflectkit.steps]\nwordcount = reflectkit_wordcount:WordCountStep\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    from reflectkit.engine import registry

    registry.refresh()
    yield site
    registry.refresh()


def _rows(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reflectkit", *args], capture_output=True, text=True, cwd=str(cwd),
                          env=os.environ.copy(), timeout=300)


def test_plugin_step_is_listed_and_runs_from_the_cli(plugin_path, tmp_path):
    listing = _cli("steps", cwd=tmp_path)
    assert listing.returncode == 0 and "wordcount [row]" in listing.stdout and "min_words" in listing.stdout
    schema = json.loads(_cli("steps", "--json", cwd=tmp_path).stdout)["wordcount"]
    assert schema["options"]["properties"]["min_words"]["x-flag"] == "--min-words"
    r = _cli("wordcount", str(ALPACA), "-o", str(tmp_path / "wc.jsonl"), "--limit", "5", "--min-words", "40",
             "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = _rows(tmp_path / "wc.jsonl")
    assert len(rows) == 5
    for row in rows:
        wc = row["reflectkit"]["wordcount"]
        assert wc["words"] == len(row["output"].split())
        assert wc["status"] == ("short" if wc["words"] < 40 else "ok")
    bad = _cli("wordcount", str(ALPACA), "-o", str(tmp_path / "x.jsonl"), "--min-words", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--min-words" in bad.stderr and "Traceback" not in bad.stderr


def test_plugin_step_runs_from_the_python_api(plugin_path, tmp_path):
    from reflectkit.engine.api import run

    s = run("wordcount", ALPACA, tmp_path / "wc.jsonl", limit=4, min_words=40, drop_short=True,
            run_dir=tmp_path / "run")
    kept = _rows(tmp_path / "wc.jsonl")
    assert s.rows_in == 4 and s.rows_out == len(kept) == s.counts.get("ok", 0)
    assert s.counts.get("short", 0) + s.counts.get("ok", 0) == 4
    assert all(len(r["output"].split()) >= 40 for r in kept)


def test_plugin_step_runs_as_a_pipeline_stage(plugin_path, tmp_path):
    from reflectkit.pipeline.runner import run_pipeline

    data = tmp_path / "data.json"
    shutil.copy(ALPACA, data)
    pipe = tmp_path / "p.yaml"
    pipe.write_text(
        "input: data.json\noutput: out\nlimit: 3\nreport: false\n"
        "stages:\n  - name: wc\n    kind: wordcount\n    options: {min_words: 2}\n", encoding="utf-8")
    res = run_pipeline(pipe, echo=lambda s: None)
    rows = _rows(res.final_data)
    assert len(rows) == 3 and all(r["reflectkit"]["wordcount"]["status"] == "ok" for r in rows)
    again = run_pipeline(pipe, echo=lambda s: None)
    assert again.stages[0]["status"] == "skipped"
