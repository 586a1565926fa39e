"""``reflectkit eval compare RUN_A RUN_B``: per-metric differences with a paired bootstrap CI over the items
both reports share (matched by id), and a plain statement when a difference is not significant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reflectkit.errors import UserError
from reflectkit.evaluate.ci import paired_bootstrap_diff, ratio_of_sums
from reflectkit.evaluate.report import fmt, read_report


def _resolve(path: Path) -> Path:
    """A report JSON, or a directory holding exactly one ``*.json`` report."""
    p = Path(path)
    if p.is_dir():
        found = sorted(x for x in p.glob("*.json") if x.name != "manifest.json")
        if len(found) != 1:
            raise UserError(f"{p}: expected one eval report (*.json) in the directory, found {len(found)}")
        return found[0]
    return p


def compare_reports(a: dict[str, Any], b: dict[str, Any], *, labels: tuple[str, str] = ("A", "B"),
                    metrics: list[str] | None = None, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    if a.get("kind") != b.get("kind"):
        raise UserError(f"cannot compare a {a.get('kind')!r} report with a {b.get('kind')!r} report")
    for rep in (a, b):
        if not all(isinstance(it, dict) and isinstance(it.get("metrics"), dict) for it in rep["per_item"]):
            raise UserError(f"a {rep.get('kind')!r} report has no per-item metrics to compare; compare reports of "
                            "eval gsm8k, eval ifeval or judge bench")
    ia = {str(it["id"]): it["metrics"] for it in a["per_item"]}
    ib = {str(it["id"]): it["metrics"] for it in b["per_item"]}
    common = [i for i in ia if i in ib]
    if not common:
        raise UserError("the two reports share no item ids; compare runs on the same eval set")
    names = metrics or [m for m in ia[common[0]] if m in ib[common[0]]]
    rows = []
    for name in names:
        if name not in ia[common[0]] or name not in ib[common[0]]:
            raise UserError(f"--metric {name!r}: not in both reports; they have {', '.join(ia[common[0]])}")
        va = np.array([ia[i][name] for i in common], dtype=float)
        vb = np.array([ib[i][name] for i in common], dtype=float)
        stat = ratio_of_sums if va.ndim == 2 else np.mean
        r = paired_bootstrap_diff(va, vb, stat, n_boot=n_boot, seed=seed)
        rows.append({"metric": name, "a": float(stat(va)), "b": float(stat(vb)), **r})
    return {"kind": "compare", "labels": list(labels), "items_compared": len(common),
            "only_in_a": len(ia) - len(common), "only_in_b": len(ib) - len(common), "rows": rows}


def compare_files(run_a: Path, run_b: Path, **kwargs: Any) -> dict[str, Any]:
    pa, pb = _resolve(run_a), _resolve(run_b)
    kwargs.setdefault("labels", (pa.stem, pb.stem))
    out = compare_reports(read_report(pa), read_report(pb), **kwargs)
    out["inputs"] = {"a": str(pa), "b": str(pb)}
    return out


def compare_markdown(c: dict[str, Any]) -> str:
    a, b = c["labels"]
    lines = [f"### {a} vs {b} ({c['items_compared']} paired items)", "",
             f"| metric | {a} | {b} | difference | 95% CI (paired bootstrap) | p | significant |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in c["rows"]:
        lines.append(f"| {r['metric']} | {fmt(r['a'], True)} | {fmt(r['b'], True)} | {100 * r['diff']:+.1f} pts | "
                     f"[{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}] | {r['p_value']:.3f} | "
                     f"{'yes' if r['significant'] else 'no'} |")
    lines.append("")
    for r in c["rows"]:
        if not r["significant"]:
            lines.append(f"> {r['metric']}: the difference of {100 * r['diff']:+.1f} points is NOT significant "
                         f"(95% CI [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}] includes 0).")
    if c["only_in_a"] or c["only_in_b"]:
        lines.append(f"> {c['only_in_a']} item(s) only in {a} and {c['only_in_b']} only in {b} were left out of the comparison.")
    return "\n".join(lines) + "\n"
