"""The contamination report: ``<prefix>.jsonl`` (one line per training row with any evidence) and ``<prefix>.md``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from reflectkit.data.io import _atomic_write_bytes, dumps_jsonl
from reflectkit.data.record import Record
from reflectkit.engine.step import RowResult

if TYPE_CHECKING:
    from reflectkit.decontam.step import DecontamStep

SNIPPET = 300


def _snip(text: str) -> str:
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "..."


def write_reports(prefix: Path, results: Iterable[tuple[Record, RowResult]], step: "DecontamStep", *,
                  ngram_too_short: int | None = None, judge_identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write both files from the run's results (the ledger, so a resumed run reports every row); return the stats
    for the manifest."""
    items = {(it.benchmark, it.index): it for it in step.items}
    lines: list[dict[str, Any]] = []
    status_counts: Counter[str] = Counter()
    per_bench: dict[str, dict[str, Any]] = {
        b.name: {"items": len(b.items), "fields": b.fields, "source": b.source, "items_matched": set(),
                 "rows_flagged": set(), "by_detector": Counter(), "unknown_verdicts": 0, "judged_pairs": 0}
        for b in step.benchmarks
    }
    for rec, res in results:
        idx, rid, status = rec.index, rec.id, res.status
        status_counts[status] += 1
        rk = res.rk or {}
        matches = rk.get("matches") or []
        for m in matches:
            pb = per_bench[m["benchmark"]]
            if m.get("verdict") is not None:
                pb["judged_pairs"] += 1
                pb["unknown_verdicts"] += m["verdict"] == "unknown"
            if m.get("flagged_by"):
                pb["items_matched"].add(m["item_index"])
                pb["rows_flagged"].add(idx)
                for d in m["flagged_by"]:
                    pb["by_detector"][d] += 1
        if status == "clean" and not matches:
            continue
        out_matches = []
        for m in matches:
            it = items.get((m["benchmark"], m["item_index"]))
            out_matches.append({**m, "benchmark_text": _snip(it.question) if it else None})
        lines.append({"row": idx, "id": rid, "status": status, "reason": res.reason,
                      "detectors": rk.get("detectors", []), "train_text": _snip(rec.instruction),
                      "matches": out_matches})
    jsonl_path = Path(str(prefix) + ".jsonl")
    md_path = Path(str(prefix) + ".md")
    _atomic_write_bytes(jsonl_path, dumps_jsonl(lines))
    bench_stats = {
        name: {**{k: v for k, v in pb.items() if k not in ("items_matched", "rows_flagged", "by_detector")},
               "items_matched": len(pb["items_matched"]), "rows_flagged": len(pb["rows_flagged"]),
               "by_detector": dict(sorted(pb["by_detector"].items()))}
        for name, pb in per_bench.items()
    }
    stats: dict[str, Any] = {
        "rows": sum(status_counts.values()),
        "status_counts": dict(sorted(status_counts.items())),
        "per_benchmark": bench_stats,
        "threshold": step.options.threshold if step.options.embedding else None,
        "ngram_n": step.options.ngram_n if step.options.ngram else None,
        "ngram_benchmark_texts_too_short": ngram_too_short if step.options.ngram else None,
        "compared_fields": step.compared_fields(),
        "unknown_as": step.options.unknown_as,
        "report_jsonl": str(jsonl_path),
        "report_md": str(md_path),
    }
    _atomic_write_bytes(md_path, _markdown(stats, step, lines, judge_identity or {}).encode("utf-8"))
    return stats


def _markdown(stats: dict[str, Any], step: "DecontamStep", lines: list[dict[str, Any]],
              ident: dict[str, Any]) -> str:
    cfg = step.options
    det = [d for d in ("ngram", "embedding", "llm") if getattr(cfg, d)]
    out = ["# Contamination report", ""]
    sc = stats["status_counts"]
    out.append(f"Training rows: {stats['rows']} — " + ", ".join(f"{k}: {v}" for k, v in sc.items()))
    out.append("")
    out.append("Detectors: " + ", ".join(det) + ". A row is contaminated when any of them flags it.")
    if cfg.ngram:
        out.append(f"- n-gram: n = {cfg.ngram_n} words (normalised), benchmark texts of {cfg.ngram_min_words}–"
                   f"{cfg.ngram_n - 1} words count as one n-gram; {stats['ngram_benchmark_texts_too_short']} benchmark "
                   "texts are too short to check by overlap.")
    if cfg.embedding:
        out.append(f"- embedding: all-MiniLM-L6-v2, cosine ≥ {cfg.threshold} (each row's nearest benchmark item, and "
                   f"each benchmark item's top-{cfg.top_k} rows).")
    if cfg.llm:
        out.append(f"- LLM judge: {ident.get('model', ident)}, prompt set `{cfg.prompt_set}` ({cfg.judge_prompt}), "
                   f"top-{cfg.top_k} pairs with cosine ≥ {cfg.judge_min_similarity}; unknown verdicts count as "
                   f"**{cfg.unknown_as}**.")
    out += ["", "Fields compared:"]
    out += [f"- {k}: {v}" for k, v in stats["compared_fields"].items()]
    out += ["", "| benchmark | fields | items | items matched | rows flagged | by detector | judged | unknown |",
            "|---|---|---:|---:|---:|---|---:|---:|"]
    for name, b in stats["per_benchmark"].items():
        bd = ", ".join(f"{k} {v}" for k, v in b["by_detector"].items()) or "-"
        out.append(f"| {name} | {'+'.join(b['fields'])} | {b['items']} | {b['items_matched']} | {b['rows_flagged']} | "
                   f"{bd} | {b['judged_pairs']} | {b['unknown_verdicts']} |")
    flagged = [ln for ln in lines if ln["status"] != "clean"]
    out += ["", f"## Flagged rows ({len(flagged)}; full list in `{Path(stats['report_jsonl']).name}`)", ""]
    for ln in flagged[:50]:
        first = ln["matches"][0] if ln["matches"] else {}
        score = first.get("similarity")
        out.append(f"- row {ln['row']} ({ln['status']}): {ln['reason']}"
                   + (f"; cosine {score}" if score is not None else "")
                   + (f"; verdict {first['verdict']}" if first.get("verdict") else ""))
    if len(flagged) > 50:
        out.append(f"- ... {len(flagged) - 50} more")
    return "\n".join(out) + "\n"
