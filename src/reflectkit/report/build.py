"""Render the self-contained HTML report (inline CSS/JS, plots as data URIs, rows as escaped JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

import reflectkit
from reflectkit.report.collect import RunData, StageInfo, collect, read_jsonl
from reflectkit.report.plots import all_plots

_TEMPLATES = Path(__file__).parent / "templates"
MAX_FLAGGED = 500


def embed_json(obj: Any) -> str:
    """JSON safe to place inside a <script> element: no '<', '>' or '&' (so no '</script>'), no U+2028/2029."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _verification(stage: str, models: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per model of a stage that was verified (an endpoint) or replayed cached responses."""
    out = []
    for role, ident in models.items():
        if not isinstance(ident, dict):
            continue
        v, cache = ident.get("verification"), ident.get("cache") or {}
        if not v and not cache.get("line"):
            continue
        v = v or {}
        drift = v.get("drift")
        out.append({
            "stage": stage, "role": role, "host": v.get("host", ""), "identity": (v.get("identity_hash") or "")[:16],
            "verified": v.get("verified"), "claims": v.get("claims") or "", "tiers": ", ".join(v.get("tiers") or []),
            "canaries": len(v.get("canaries") or []), "canary_every": v.get("canary_every", ""),
            "checks": v.get("canary_checks", ""), "passive": v.get("passive_checks", ""),
            "drift": f"at call {drift['call']}: {drift['reason']}" if drift else "none",
            "first_suspect_call": v.get("first_suspect_call"), "suspect_rows": v.get("suspect_rows", 0),
            "cache_line": cache.get("line") or "",
        })
    return out


def _stage_view(s: StageInfo) -> dict[str, Any]:
    m = s.manifest or {}
    inv = (m.get("invocations") or [{}])[-1]
    raw_models = dict(m.get("models") or {})
    # the verification and cache records get their own table; the provenance column keeps the identity itself
    models = {r: ({k: v for k, v in i.items() if k not in ("verification", "cache")} if isinstance(i, dict) else i)
              for r, i in raw_models.items()}
    for extra in ("student", "model_spec"):
        if isinstance(m.get(extra), dict):
            models[extra] = {k: v for k, v in m[extra].items() if k not in ("path", "hf_dir")}
    return {"name": s.name, "kind": s.kind, "status": s.status, "manifest": m or None, "state": s.state,
            "models": models, "config": json.dumps(m.get("config"), sort_keys=True, default=str),
            "calls": inv.get("oracle_calls", m.get("oracle_calls_this_invocation", "")),
            "hits": inv.get("cache_hits", m.get("cache_hits_this_invocation", "")),
            "wall": m.get("wall_time_s", ""), "verification": _verification(s.name, raw_models)}


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, list) and d and all(isinstance(x, (int, float)) for x in d):
        out.append((prefix, "[" + ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in d) + "]"))
    elif not isinstance(d, list):
        out.append((prefix, f"{d:.4g}" if isinstance(d, float) else str(d)))
    return out


def _decontam(data: RunData) -> dict[str, Any] | None:
    s = data.by_kind("decontaminate")
    if s is None:
        return None
    files = (s.state or {}).get("files") or {}
    info = (s.manifest or {}).get("decontam") or {}
    jl = files.get("contamination_jsonl") or info.get("report_jsonl")
    md = files.get("contamination_md") or info.get("report_md")
    rows = read_jsonl(Path(jl)) if jl and Path(jl).exists() else []
    keys: list[str] = []
    for r in rows[:MAX_FLAGGED]:
        keys += [k for k in r if k not in keys]
    shown = [{k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v) for k, v in r.items()}
             for r in rows[:MAX_FLAGGED]]
    return {"md": Path(md).read_text(encoding="utf-8") if md and Path(md).exists() else "", "rows": shown,
            "keys": keys, "total": len(rows)}


def _evals(data: RunData) -> list[dict[str, Any]]:
    out = []
    for s in data.stages:
        files = (s.state or {}).get("files") or {}
        for key in ("eval_json", "judge_json"):
            p = files.get(key)
            if p and Path(p).exists():
                rep = json.loads(Path(p).read_text(encoding="utf-8"))
                metrics = rep.get("metrics", rep) if isinstance(rep, dict) else rep
                out.append({"stage": s.name, "kind": s.kind, "metrics": _flatten(metrics)[:200]})
    return out


def _stats_text(data: RunData) -> str:
    s = data.by_kind("stats")
    p = ((s.state or {}).get("files") or {}).get("stats") if s else None
    return Path(p).read_text(encoding="utf-8") if p and Path(p).exists() else ""


def render(data: RunData) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True,
                             undefined=jinja2.ChainableUndefined)
    base = data.by_kind("recycle") or next((s for s in data.stages if s.ran and s.output), None)
    return env.get_template("report.html.j2").render(
        title=data.title, run_dir=str(data.run_dir), version=reflectkit.__version__, pipeline=data.pipeline,
        stages=[_stage_view(s) for s in data.stages], n_rows=len(data.rows), rows_total=data.rows_total,
        row_stage=base.name if base else "", plots=all_plots(data), has_scores=any(r["sb"] or r["sa"] for r in data.rows),
        stats_text=_stats_text(data), decon=_decontam(data), evals=_evals(data),
        rows_json=embed_json(data.rows), css=(_TEMPLATES / "report.css").read_text(encoding="utf-8"),
        js=(_TEMPLATES / "report.js").read_text(encoding="utf-8"),
    )


def build_report(run_dir: str | Path, output: str | Path, *, max_rows: int = 20000) -> Path:
    """Write ``output`` (one self-contained HTML file) for a pipeline output dir or a single step's run dir."""
    data = collect(run_dir, max_rows=max_rows)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render(data), encoding="utf-8")
    tmp.replace(out)
    return out
