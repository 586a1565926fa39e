"""Static matplotlib plots for the report, returned as base64 PNG data URIs (no files, no network)."""

from __future__ import annotations

import base64
import io
from typing import Any

from reflectkit.report.collect import RunData

METRICS = (("ifd_ppl", "IFD (perplexity ratio)"), ("rifd_ppl", "r-IFD (perplexity ratio)"),
           ("coherence", "coherence (MiniLM cosine)"), ("ppl_out_alone", "response perplexity"))


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hist(ax: Any, before: list[float], after: list[float], title: str, labels: tuple[str, str]) -> None:
    vals = before + after
    if not vals:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    else:
        lo, hi = min(vals), max(vals)
        bins = 20 if hi > lo else 1
        rng = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
        if before:
            ax.hist(before, bins=bins, range=rng, alpha=0.55, label=f"{labels[0]} (n={len(before)})", color="#4C78A8")
        if after:
            ax.hist(after, bins=bins, range=rng, alpha=0.55, label=f"{labels[1]} (n={len(after)})", color="#F58518")
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)


def length_plot(data: RunData) -> str | None:
    import matplotlib.pyplot as plt

    if not data.rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    words = lambda s: len(s.split())  # noqa: E731
    _hist(axes[0], [words(r["oi"] + " " + r["on"]) for r in data.rows], [words(r["ni"] + " " + r["nn"]) for r in data.rows],
          "instruction length (words)", ("original", "rewritten"))
    _hist(axes[1], [words(r["oo"]) for r in data.rows], [words(r["no"]) for r in data.rows],
          "response length (words)", ("original", "rewritten"))
    return _png(fig)


def score_plot(data: RunData) -> str | None:
    import matplotlib.pyplot as plt

    if not any(r["sb"] or r["sa"] for r in data.rows):
        return None
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3))
    for ax, (key, title) in zip(axes, METRICS):
        _hist(ax, [r["sb"][key] for r in data.rows if key in r["sb"]], [r["sa"][key] for r in data.rows if key in r["sa"]],
              title, ("original", "rewritten/selected"))
    return _png(fig)


def funnel(data: RunData) -> list[tuple[str, int]]:
    """Rows after each data stage, starting with the rows read; the select stage's own funnel when it has one."""
    steps: list[tuple[str, int]] = []
    for s in data.stages:
        m = s.manifest or {}
        if not steps and isinstance(m.get("input"), dict) and m["input"].get("rows_read") is not None:
            steps.append(("input rows", int(m["input"]["rows_read"])))
        sel = m.get("select") if isinstance(m.get("select"), dict) else {}
        f = m.get("funnel") or sel.get("funnel")
        if isinstance(f, list):
            for item in f:
                if isinstance(item, dict) and isinstance(item.get("rows", item.get("count")), int):
                    steps.append((f"{s.name}: {item.get('rule', item.get('name', ''))}", int(item.get("rows", item.get("count")))))
        if m.get("rows_out") is not None:
            steps.append((f"after {s.name}", int(m["rows_out"])))
    return steps


def funnel_plot(data: RunData) -> str | None:
    import matplotlib.pyplot as plt

    steps = funnel(data)
    if len(steps) < 2:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(steps) + 0.8))
    names = [n for n, _ in steps][::-1]
    vals = [v for _, v in steps][::-1]
    ax.barh(names, vals, color="#54A24B")
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v}", va="center", fontsize=8)
    ax.set_title("selection funnel (rows remaining)", fontsize=10)
    return _png(fig)


def all_plots(data: RunData) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    out = []
    for title, fn in (("Lengths before/after", length_plot), ("Scores before/after", score_plot),
                      ("Selection funnel", funnel_plot)):
        img = fn(data)
        if img:
            out.append((title, img))
    return out
