"""Leader changes: exact switch times by root finding on the dense output."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from sambias import Init, Problem
from sambias.flows import simulate
from sambias.flows.dominant import dominant_switches

LN10 = math.log(10.0)


def test_switch_time_matches_the_closed_form():
    # L = 2 GD, x = (2, 1), u = v = (0.1, 1): a_j(tau) = a_j(0) e^{x_j tau}, |beta_j| = a_j^2;
    # beta_0 overtakes beta_1 when 0.01 e^{4 tau} = e^{2 tau}: tau* = ln(100)/2
    p = Problem(depth=2, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(layers=[[0.1, 1.0], [0.1, 1.0]]))
    tau_star = math.log(100.0) / 2
    # default run: to the integration error (LSODA's global error is some 50 rtol)
    tr = simulate(p, "1e400")
    assert [s.index for s in tr.dominant] == [1, 0]
    assert tr.dominant[1].tau == pytest.approx(tau_star, rel=3e-7)
    # tight run: the root on the dense output is as exact as the trajectory
    tr = simulate(p, "1e400", method="Radau", rtol=1e-11)
    assert tr.dominant[1].tau == pytest.approx(tau_star, rel=1e-10)
    # physical time: t(tau) = int_0^tau e^{z}, z = 2 (0.01 e^{4 u}) + 1 (e^{2 u})
    z = lambda u: 0.02 * math.exp(4 * u) + math.exp(2 * u)
    zmax = z(tau_star)
    t_star = quad(lambda u: math.exp(z(u) - zmax), 0.0, tau_star, epsabs=0, epsrel=1e-13, limit=200)[0]
    assert tr.dominant[1].log10_t == pytest.approx((zmax + math.log(t_star)) / LN10, rel=1e-8)
    # the first entry: the leader from the start, dated at the first saved instant after t = 0
    assert tr.dominant[0].log10_t == tr.log10_t[1]


def test_uniform_init_first_leader_pulls_ahead_and_later_switches_are_ordered():
    # THEORY.md "Careful": for l2-SAM at scale 0.2 the leader goes 2 -> 3 -> ...
    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    tr = simulate(p, "1e400")
    assert [s.index for s in tr.dominant] == [2, 3]
    times = [s.log10_t for s in tr.dominant]
    assert all(math.isfinite(t) for t in times) and times == sorted(times)
    # at the reported switch |beta_2| = |beta_3| (interpolated from the saved states)
    s = tr.dominant[1]
    b = np.abs(tr.beta)
    i = int(np.searchsorted(tr.tau, s.tau))
    assert b[i - 1, 2] > b[i - 1, 3] and b[i, 3] > b[i, 2]


def test_synthetic_paths_and_ties():
    nu = np.array([0.0, 1.0, 2.0, 3.0])
    W = np.array([[[1.0, 1.0, 1.0]], [[2.0, 1.5, 0.0]], [[2.0, 3.0, 0.0]], [[2.0, 3.0, 0.0]]])
    dense = lambda i, x: W[i] + (x - nu[i]) * (W[i + 1] - W[i])
    clock = lambda i, x: (x, 10.0 * x)
    out = dominant_switches(nu, W, dense, clock)
    assert [(s.index, s.tau) for s in out] == [(0, 1.0), (1, pytest.approx(4.0 / 3.0))]
    assert out[1].log10_t == pytest.approx(40.0 / 3.0)
    # a permanent tie never produces an entry; without a dense output a change is dated at the sample
    assert dominant_switches(nu, np.ones((4, 1, 3)), dense, clock) == []
    coarse = dominant_switches(nu, W, tau=nu, log10_t=10 * nu)
    assert [(s.index, s.tau) for s in coarse] == [(0, 1.0), (1, 2.0)]


def test_collapsed_coordinates_do_not_lead():
    p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    tr = simulate(p, "1e400")
    # the smallest x shrinks slowest and leads until everything is held at 0 (then: a tie)
    assert [s.index for s in tr.dominant] == [3]
