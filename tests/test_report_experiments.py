"""The paper's experiments: the synthetic setting, the digits data and the minor/major ranking."""

from __future__ import annotations

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import Trajectory
from sambias.reports.experiments import (DigitsSettings, digits_data, digits_runs, feature_series,
                                         rank_features, signed_features, synthetic_problem)


def test_digits_subset_is_two_scaled_separable_classes():
    data = digits_data((3, 8), pool=2, per_class=20, seed=1)
    assert data.X.shape[0] == 40 and data.side == 4
    assert 0.0 <= data.X.min() and data.X.max() <= 1.0
    assert sorted(np.unique(data.y).tolist()) == [-1, 1] and (data.y == 1).sum() == 20
    assert np.all(data.X.std(axis=0) > 0)                        # constant pixels are dropped
    assert len(set(data.pixels)) == data.X.shape[1] <= 16
    again = digits_data((3, 8), pool=2, per_class=20, seed=1)
    np.testing.assert_array_equal(again.X, data.X)               # seeded: the same subset every time
    full = digits_data((0, 1), pool=1, per_class=None)
    assert full.side == 8 and full.X.shape[0] == 360
    Problem(depth=2, algorithm="gd", X=signed_features(full.X), y=full.y, init=Init(scale=0.1))  # separable
    with pytest.raises(ValueError, match="two different digits"):
        digits_data((1, 1))


def test_ranking_puts_the_l1_max_margin_support_first():
    # beta* = (1, 1, 0): feature 2 alone needs |beta_2| = 10, so it is minor.
    r = rank_features(np.array([[1.0, 0.0, 0.1], [0.0, 2.0, 0.1]]), np.array([1, 1]))
    np.testing.assert_allclose(r.beta_star, [1.0, 0.5, 0.0], atol=1e-9)
    assert r.major.tolist() == [True, True, False] and r.order.tolist() == [0, 1, 2]
    assert r.rank.tolist() == [0, 1, 2] and r.unique
    # One example: the major coordinate is the largest |x_j|, wherever it sits (the paper's order).
    r = rank_features(np.array([[0.5, 1.0, 2.0, 3.0]]), np.array([1]))
    assert r.order[0] == 3 and r.major.tolist() == [False, False, False, True]


def test_minor_share_tells_minor_weight_from_major_weight():
    X, y = np.array([[1.0, 0.0, 0.1], [0.0, 2.0, 0.1]]), np.array([1, 1])
    ranking = rank_features(X, y)
    p = Problem(depth=1, algorithm="gd", X=X, y=y, init=Init(scale=0.1))

    def series(beta):
        beta = np.asarray(beta, float)
        tr = Trajectory(problem=p, tau=np.arange(len(beta), dtype=float), log10_t=np.arange(len(beta), dtype=float),
                        weights=beta[:, None, :], log10_loss=np.zeros(len(beta)))
        return feature_series(tr, ranking)

    on_minor = series([[0.1, 0.1, 5.0], [0.2, 0.1, 3.0]])
    on_major = series([[1.0, 0.5, 0.0], [2.0, 1.0, 0.01]])
    assert on_minor.minor_share.min() > 0.9 and on_major.minor_share.max() < 0.01
    assert on_minor.leader_rank.tolist() == [2.0, 2.0] and on_major.leader_rank.tolist() == [0.0, 0.0]
    np.testing.assert_allclose(on_major.cosine[0], 1.0, atol=1e-12)
    assert on_minor.peak_minor_share(after=0.5) == (pytest.approx(3.0 / 3.3), 1.0)


def test_paper_synthetic_setting_is_increasing_and_logistic():
    p = synthetic_problem("l2-sam", 0.2)
    x = np.asarray(p.X)[0]
    assert np.all(np.diff(x) > 0) and p.loss == "logistic" and p.n == 1 and p.depth == 2
    assert synthetic_problem("gd", 0.2).rho == 0.0


def test_digits_runs_flow_and_discrete_agree_and_approach_beta_star():
    settings = DigitsSettings(per_class=6, horizon="1e2", steps=500, eta=0.01, rtol=1e-6,
                              algorithms=(("gd", 0.0),))
    data, ranking, runs = digits_runs(settings)
    (gd,) = runs
    assert gd.flow.ok and gd.flow.log10_t_final == pytest.approx(2.0)
    assert gd.series.cosine[-1] > gd.series.cosine[1] + 0.1             # moves towards beta*
    # The discrete algorithm at eta = 0.01 follows the flow (O(eta) apart at t = 5).
    t_end = gd.discrete_series.log10_t[-1]
    ok = np.isfinite(gd.series.log10_t)
    flow_cos = np.interp(t_end, gd.series.log10_t[ok], gd.series.cosine[ok])
    assert abs(flow_cos - gd.discrete_series.cosine[-1]) < 0.02
    # Negative control: the flow at t = 5 is far from the discrete run's *start*.
    assert abs(flow_cos - gd.discrete_series.cosine[0]) > 0.05
