import numpy as np
import pytest

from reflectkit.evaluate.ci import bootstrap_ci, paired_bootstrap_diff, rate, ratio_of_sums


def test_constant_values_have_a_point_interval():
    assert bootstrap_ci([1, 1, 1, 1]) == (1.0, 1.0)


def test_interval_contains_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 2, 40)
    big = rng.integers(0, 2, 4000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_b, hi_b = bootstrap_ci(big)
    assert lo_s <= small.mean() <= hi_s
    assert lo_b <= big.mean() <= hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 3


def test_seeded_and_deterministic():
    v = [0, 1, 1, 0, 1, 1, 1, 0]
    assert bootstrap_ci(v, seed=3) == bootstrap_ci(v, seed=3)


def test_ratio_statistic_resamples_rows_together():
    vals = np.array([[1, 2], [3, 3], [0, 1]], dtype=float)
    assert ratio_of_sums(vals) == pytest.approx(4 / 6)
    r = rate(vals, ratio_of_sums)
    assert r["value"] == pytest.approx(4 / 6)
    assert 0 <= r["ci"][0] <= r["value"] <= r["ci"][1] <= 1


def test_paired_diff_identical_runs_is_zero_and_not_significant():
    a = [1, 0, 1, 1, 0, 1]
    r = paired_bootstrap_diff(a, a)
    assert r["diff"] == 0 and r["lo"] == 0 and r["hi"] == 0 and not r["significant"]


def test_paired_diff_detects_a_large_consistent_gain():
    a = np.ones(200)
    b = np.r_[np.ones(100), np.zeros(100)]
    r = paired_bootstrap_diff(a, b)
    assert r["diff"] == pytest.approx(0.5)
    assert r["significant"] and r["lo"] > 0.4
    assert r["p_value"] < 0.01


def test_small_difference_on_80_questions_is_not_significant():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, 80)
    a = b.copy()
    a[np.flatnonzero(a == 0)[:2]] = 1  # a "2.5 point win"
    r = paired_bootstrap_diff(a, b)
    assert r["diff"] == pytest.approx(2 / 80)
    assert not r["significant"]


def test_empty_input():
    lo, hi = bootstrap_ci([])
    assert np.isnan(lo) and np.isnan(hi)
