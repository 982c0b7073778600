"""apps/tabular_ridge.py: the ridge regression a regression's ensemble is blended with.

The closed form from streamed sums is scikit-learn's Ridge (intercept not
penalised), and the penalty chosen is the one whose generalised cross-validation
error, computed here from the explicit hat matrix, is lowest.
"""
from __future__ import annotations

import numpy as np
import pytest

from apps import tabular_ridge


def summed(x, y, pieces=3):
    sums = tabular_ridge.Sums()
    for part_x, part_y in zip(np.array_split(x, pieces), np.array_split(y, pieces)):
        sums.add(part_x, part_y)
    return sums


def rows(n=120, d=6, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.2, 3, d) + rng.normal(size=d)
    return x, x @ rng.normal(size=d) + 2.0 + noise * rng.normal(size=n)


def test_the_streamed_solution_is_scikit_learns_ridge(monkeypatch):
    from sklearn.linear_model import Ridge

    x, y = rows()
    monkeypatch.setattr(tabular_ridge, "ALPHAS", np.array([3.0]))
    alpha, kernel, bias = summed(x, y).solve()
    reference = Ridge(alpha=3.0).fit(x, y)
    assert alpha == 3.0
    assert np.allclose(kernel, reference.coef_, atol=1e-9) and np.isclose(bias, reference.intercept_, atol=1e-9)


def explicit_gcv(x, y, alpha):
    """n RSS / (n - trace H)^2 with H the hat matrix of ridge with an unpenalised intercept, built row by row."""
    n = len(y)
    design = np.c_[np.ones(n), x]
    penalty = alpha * np.diag([0.0] + [1.0] * x.shape[1])
    hat = design @ np.linalg.solve(design.T @ design + penalty, design.T)
    residuals = y - hat @ y
    return n * residuals @ residuals / (n - np.trace(hat)) ** 2


@pytest.mark.parametrize("noise", [0.1, 3.0, 30.0])
def test_the_penalty_chosen_has_the_lowest_generalised_cross_validation_error(noise):
    x, y = rows(noise=noise)
    alpha, _, _ = summed(x, y).solve()
    scores = [explicit_gcv(x, y, a) for a in tabular_ridge.ALPHAS]
    assert alpha == tabular_ridge.ALPHAS[int(np.argmin(scores))]


def test_noise_alone_gets_a_large_penalty_and_a_clean_line_a_small_one():
    x, y = rows(noise=0.0)
    assert summed(x, y).solve()[0] == tabular_ridge.ALPHAS[0]
    rng = np.random.default_rng(1)
    assert summed(x, rng.normal(size=len(y))).solve()[0] >= 1e3


def test_more_columns_than_rows_still_solve():
    x, y = rows(n=5, d=12)
    alpha, kernel, bias = summed(x, y, pieces=2).solve()
    assert np.all(np.isfinite(kernel)) and np.isfinite(bias) and alpha in tabular_ridge.ALPHAS
