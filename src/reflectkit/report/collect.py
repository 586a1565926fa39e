"""Gather what the report shows from a run directory: pipeline.json, each stage's stage.json + manifest.json, and
the rows of the data stages (joined by reflectkit row id)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflectkit.engine.manifest import read_manifest
from reflectkit.errors import UserError

PROBLEM_STATUSES = ("failed", "kept_original", "partial", "skipped", "contaminated", "unknown")
SCORE_KEYS = ("ins_len", "res_len", "ifd_ppl", "rifd_ppl", "coherence", "ppl_out_alone", "ppl_out_condition",
              "ppl_ins_alone", "gzip_ratio")


@dataclass
class StageInfo:
    name: str
    kind: str
    dir: Path
    status: str  # ran | skipped | not-selected | missing | running
    manifest: dict[str, Any] | None = None
    state: dict[str, Any] | None = None

    @property
    def output(self) -> Path | None:
        out = (self.state or {}).get("output") or (self.manifest or {}).get("output")
        p = Path(out) if out else None
        if p is not None and not p.is_absolute():
            p = self.dir / p if (self.dir / p).exists() else p
        return p if p is not None and p.exists() else None

    @property
    def ran(self) -> bool:
        return self.manifest is not None or bool(self.state and self.state.get("status") == "finished")


@dataclass
class RunData:
    run_dir: Path
    title: str
    pipeline: dict[str, Any] | None
    stages: list[StageInfo]
    rows: list[dict[str, Any]] = field(default_factory=list)
    rows_total: int = 0

    def by_kind(self, kind: str) -> StageInfo | None:
        for s in self.stages:
            if s.kind == kind and s.ran:
                return s
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    rows.append(obj)
    return rows


def _load_stages(run_dir: Path) -> tuple[dict[str, Any] | None, list[StageInfo]]:
    pj = run_dir / "pipeline.json"
    if pj.exists():
        pipe = json.loads(pj.read_text(encoding="utf-8"))
        stages = []
        for s in pipe.get("stages", []):
            d = run_dir / s["name"]
            state = json.loads((d / "stage.json").read_text(encoding="utf-8")) if (d / "stage.json").exists() else None
            status = s.get("status") or ("missing" if state is None else state.get("status", "missing"))
            stages.append(StageInfo(s["name"], s["kind"], d, status, read_manifest(d) if d.exists() else None, state))
        return pipe, stages
    m = read_manifest(run_dir)
    if m is None:
        raise UserError(f"{run_dir}: not a run directory (no pipeline.json or manifest.json)")
    step = str(m.get("step", "step"))
    kind = {"decontam": "decontaminate"}.get(step, step)
    return None, [StageInfo(step, kind, run_dir, "ran", m, None)]


def _rk(row: dict[str, Any]) -> dict[str, Any]:
    v = row.get("reflectkit")
    return v if isinstance(v, dict) else {}


def _texts(row: dict[str, Any]) -> tuple[str, str, str]:
    """(instruction, input, output) of an output row in any shape."""
    if isinstance(row.get("messages"), list) or isinstance(row.get("conversations"), list):
        turns = row.get("messages") or row.get("conversations") or []
        user = next((str(t.get("content", t.get("value", ""))) for t in turns if isinstance(t, dict)
                     and str(t.get("role", t.get("from", ""))).lower() in ("user", "human")), "")
        bot = next((str(t.get("content", t.get("value", ""))) for t in turns if isinstance(t, dict)
                    and str(t.get("role", t.get("from", ""))).lower() in ("assistant", "gpt")), "")
        return user, "", bot
    return str(row.get("instruction") or ""), str(row.get("input") or ""), str(row.get("output") or "")


def _triple(v: Any) -> tuple[str, str, str] | None:
    if not isinstance(v, dict):
        return None
    return str(v.get("instruction") or ""), str(v.get("input") or ""), str(v.get("output") or "")


def _scores(d: Any) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    return {k: float(d[k]) for k in SCORE_KEYS if isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool)}


def _stage_rows(s: StageInfo | None) -> dict[str, dict[str, Any]]:
    if s is None or s.output is None or s.output.suffix not in (".jsonl", ".json"):
        return {}
    return {str(_rk(r).get("id")): r for r in read_jsonl(s.output)}


def build_rows(data: RunData, max_rows: int) -> None:
    """The row browser's rows: the recycle stage's rows (or the first data stage's), with scores, selection and
    decontamination verdicts joined by row id."""
    base = data.by_kind("recycle") or next((s for s in data.stages if s.ran and s.output), None)
    if base is None or base.output is None:
        return
    scored = _stage_rows(data.by_kind("score"))
    selected_stage = data.by_kind("select")
    selected = _stage_rows(selected_stage)
    decon = _stage_rows(data.by_kind("decontaminate"))
    rows = read_jsonl(base.output)
    data.rows_total = len(rows)
    out = []
    for n, row in enumerate(rows[:max_rows]):
        rk = _rk(row)
        rid = str(rk.get("id", n))
        rec = rk.get("recycle") if isinstance(rk.get("recycle"), dict) else {}
        own = _texts(row)
        orig = _triple(rec.get("original")) or own
        variants = rec.get("variants") if isinstance(rec.get("variants"), dict) else {}
        sel_row = selected.get(rid)
        sel_rk = _rk(sel_row).get("select", {}) if sel_row else {}
        chosen = (sel_rk.get("kept") or sel_rk.get("variant") or sel_rk.get("chosen")) if isinstance(sel_rk, dict) else None
        new = (_texts(sel_row) if sel_row else None) or _triple(variants.get("both")) or own
        own_rk = rk.get(base.kind) if isinstance(rk.get(base.kind), dict) else {}
        status = str(rec.get("status") or own_rk.get("status") or "")
        sc_row = scored.get(rid, {})
        sc = _rk(sc_row).get("score", {}) if sc_row else {}
        sv = sc.get("variants", {}) if isinstance(sc, dict) and isinstance(sc.get("variants"), dict) else {}
        tags = []
        if selected_stage is not None:
            tags.append(f"selected:{chosen}" if sel_row is not None and chosen else "selected" if sel_row else "dropped")
        dec = _rk(decon.get(rid, {})).get("decontaminate") or _rk(decon.get(rid, {})).get("decontam")
        if isinstance(dec, dict) and dec.get("status"):
            tags.append(str(dec["status"]))
        if rec.get("truncated"):
            tags.append("truncated")
        out.append({
            "n": n, "id": rid, "st": status or "(none)", "rs": str(rec.get("reason") or ""),
            "oi": orig[0], "on": orig[1], "oo": orig[2], "ni": new[0], "nn": new[1], "no": new[2],
            "cr": str(rec.get("critique") or ""), "tags": tags,
            "sb": _scores(sv.get("original")), "sa": _scores(sv.get(chosen or "both")) or _scores(sc),
            "pr": status in PROBLEM_STATUSES or any(t in PROBLEM_STATUSES or t == "truncated" for t in tags),
        })
    data.rows = out


def collect(run_dir: str | Path, *, max_rows: int = 20000) -> RunData:
    rd = Path(run_dir)
    if not rd.is_dir():
        raise UserError(f"{rd}: run directory not found")
    pipe, stages = _load_stages(rd)
    title = (pipe or {}).get("name") or rd.name
    data = RunData(rd, str(title), pipe, stages)
    build_rows(data, max_rows)
    return data
