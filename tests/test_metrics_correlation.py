"""Correlations against scipy.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rspose.metrics import average_ranks, kendall, pearson, spearman, spearman_per_column


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_pearson_kendall_match_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=300)
    y = 0.5 * x + rng.normal(size=300)
    x[:40] = np.round(x[:40], 1)  # ties
    y[100:160] = 0.0
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    np.testing.assert_allclose(average_ranks(x), stats.rankdata(x, method="average"))


def test_undefined_correlations_are_nan():
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(pearson([1.0], [2.0]))
    assert math.isnan(kendall([], []))


def test_spearman_per_column_skips_nan_and_averages():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(50, 3))
    y = x + rng.normal(0, 0.3, (50, 3))
    y[:10, 1] = np.nan
    y[:, 2] = np.nan  # an undefined column is left out of the mean
    mean, per = spearman_per_column(x, y)
    expected = [stats.spearmanr(x[:, 0], y[:, 0]).statistic, stats.spearmanr(x[10:, 1], y[10:, 1]).statistic]
    np.testing.assert_allclose(per[:2], expected, atol=1e-12)
    assert math.isnan(per[2])
    assert mean == pytest.approx(np.mean(expected), abs=1e-12)
