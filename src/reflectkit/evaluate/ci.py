"""Bootstrap confidence intervals (percentile method) for rates, ratios and paired differences.

Every rate reported by ``reflectkit eval`` / ``reflectkit judge`` carries a 95% CI from :func:`bootstrap_ci`:
resample the *units* (questions, prompts, pairs) with replacement, recompute the statistic, take the
``alpha/2`` and ``1 - alpha/2`` percentiles. Rows of a 2-D ``values`` array are resampled together, so ratio
statistics (e.g. instruction-level accuracy = followed / total over prompts) resample whole prompts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

Stat = Callable[[np.ndarray], float]


def _as_array(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return arr


def bootstrap_ci(
    values: Sequence[Any] | np.ndarray,
    stat: Stat = np.mean,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat(values)``; ``(nan, nan)`` for empty input.

    >>> lo, hi = bootstrap_ci([1, 0, 1, 1, 0, 1, 1, 1])
    >>> 0.0 <= lo <= 0.75 <= hi <= 1.0
    True
    """
    arr = _as_array(values)
    n = len(arr)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    stats = np.fromiter((stat(arr[i]) for i in idx), dtype=float, count=n_boot)
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def ratio_of_sums(arr: np.ndarray) -> float:
    """``sum(col 0) / sum(col 1)`` of a 2-D array (nan when the denominator is 0)."""
    den = float(arr[:, 1].sum())
    return float(arr[:, 0].sum()) / den if den else float("nan")


def paired_bootstrap_diff(
    a: Sequence[Any] | np.ndarray,
    b: Sequence[Any] | np.ndarray,
    stat: Stat = np.mean,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | bool]:
    """Difference ``stat(a) - stat(b)`` over the same units, with a paired bootstrap CI.

    ``a[i]`` and ``b[i]`` must belong to the same unit (question). Returns ``diff``, ``lo``, ``hi``, ``p_value``
    (two-sided, share of bootstrap differences on the other side of 0, doubled) and ``significant`` (the CI
    excludes 0).
    """
    xa, xb = _as_array(a), _as_array(b)
    if xa.shape != xb.shape:
        raise ValueError(f"paired bootstrap needs equal shapes, got {xa.shape} and {xb.shape}")
    n = len(xa)
    if n == 0:
        nan = float("nan")
        return {"diff": nan, "lo": nan, "hi": nan, "p_value": nan, "significant": False, "n": 0}
    diff = float(stat(xa) - stat(xb))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = np.fromiter((stat(xa[i]) - stat(xb[i]) for i in idx), dtype=float, count=n_boot)
    boots = boots[~np.isnan(boots)]
    lo, hi = (float(q) for q in np.quantile(boots, [alpha / 2, 1 - alpha / 2]))
    p = float(min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean())))
    return {"diff": diff, "lo": lo, "hi": hi, "p_value": p, "significant": bool(lo > 0 or hi < 0), "n": n}


def rate(values: Sequence[Any] | np.ndarray, stat: Stat = np.mean, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``{"value", "ci": [lo, hi], "n"}`` for a per-unit metric (the shape every report uses)."""
    arr = _as_array(values)
    value = float(stat(arr)) if len(arr) else float("nan")
    lo, hi = bootstrap_ci(arr, stat, n_boot=n_boot, seed=seed)
    return {"value": value, "ci": [lo, hi], "n": int(len(arr))}
