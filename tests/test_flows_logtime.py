"""The log-time system: clock conversions, the analytic Jacobian, exactness on closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import simulate
from tests.oracles.field import NumpyField
from sambias.flows.logtime import LogTimeSystem, ln1p_of_horizon, log10_t_from_s, tau_from_r
from sambias.horizon import parse_horizon

LN10 = math.log(10.0)


def test_clock_conversions():
    assert log10_t_from_s(0.0) == -math.inf
    assert log10_t_from_s(math.log1p(1e-12)) == pytest.approx(-12.0, abs=1e-9)
    assert log10_t_from_s(math.log1p(100.0)) == pytest.approx(2.0, abs=1e-14)
    assert log10_t_from_s(400 * LN10) == pytest.approx(400.0, abs=1e-12)
    assert log10_t_from_s(1e6 * LN10) == pytest.approx(1e6, rel=1e-15)
    vec = log10_t_from_s(np.array([0.0, math.log1p(10.0), 1000 * LN10]))
    assert vec[0] == -math.inf and vec[1:] == pytest.approx([1.0, 1000.0])
    assert tau_from_r(math.log1p(3.5)) == pytest.approx(3.5)
    assert tau_from_r(800.0) == math.inf
    assert ln1p_of_horizon(parse_horizon("100")) == pytest.approx(math.log(101.0))
    assert ln1p_of_horizon(parse_horizon("1e400")) == pytest.approx(400 * LN10, rel=1e-15)


@pytest.mark.parametrize("algorithm,loss,n", [("gd", "exp", 2), ("l2-sam", "exp", 1), ("usam", "logistic", 2),
                                              ("linf-sam", "exp", 1)])
def test_jacobian_matches_finite_differences(algorithm, loss, n):
    X = [[3.0, 2.0, 1.0, 0.5], [1.0, -1.0, 2.0, 0.3]][:n]
    p = Problem(depth=3, algorithm=algorithm, rho=0.5, X=X, y=[1] * n, loss=loss,
                init=Init(layers=[[0.3, 0.5, 0.7, 0.2], [0.4, -0.2, 0.6, 0.9], [0.5, 0.3, -0.8, 0.6]]))
    f = NumpyField(p)
    w0 = p.initial_weights().ravel()
    sigma = np.sign(f.normalised_gradient(w0)) if algorithm == "linf-sam" else None
    system = LogTimeSystem(lambda w: f.rescaled(w, sigma), lambda w: f.rescaled_log_speed_grad(w, sigma),
                           lambda w: f.rescaled_jac(w, sigma), w0, w_scale=1.3)
    y = system.pack(w0, 0.7, 0.3)
    J = system.jac(0.0, y)
    h = 1e-6
    Jn = np.column_stack([(system.fun(0.0, y + h * e) - system.fun(0.0, y - h * e)) / (2 * h)
                          for e in np.eye(y.size)])
    m = system.m
    scale = np.abs(Jn).max()
    # every row exactly, except the delta row's W-part, which omits the Hessian of phi by design
    assert np.abs(J[:m] - Jn[:m]).max() < 1e-7 * scale
    assert np.abs(J[m + 1] - Jn[m + 1]).max() < 1e-7 * scale
    assert J[m, m:] == pytest.approx(Jn[m, m:], rel=1e-6, abs=1e-7 * scale)


def test_rescaled_with_grad_matches_the_separate_methods():
    rng = np.random.default_rng(3)
    for algorithm in ("gd", "l2-sam", "usam", "linf-sam"):
        for depth in (1, 2, 3):
            p = Problem(depth=depth, algorithm=algorithm, rho=0.3, X=[[2.0, 1.0, -0.5], [1.0, 2.0, 0.5]],
                        y=[1, 1], loss="logistic", init=Init(layers=rng.normal(size=(depth, 3)).tolist()))
            f = NumpyField(p)
            w = p.initial_weights().ravel()
            dw, log_S, grad = f.rescaled_with_grad(w)
            dw2, log_S2 = f.rescaled(w)
            assert np.array_equal(dw, dw2) and log_S == log_S2
            # the Jacobian-free gradient equals the one through the full perturbation Jacobian
            wt = w + f.perturbation(w)
            pt = f.parts(f.shape(wt))
            gl = f._grad_log_S(pt)
            assert np.allclose(grad, gl + gl @ f._jac_eps(w), rtol=1e-12, atol=1e-14)


def test_depth1_gd_closed_form_in_both_clocks():
    # L = 1, one example, zero init: beta(tau) = tau x, z = tau |x|^2,
    # t(tau) = (e^{tau |x|^2} - 1) / |x|^2 exactly.
    x = np.array([2.0, 1.0])
    x2 = float(x @ x)
    p = Problem(depth=1, algorithm="gd", X=[x.tolist()], y=[1], init=Init(scale=0.0))
    tr = simulate(p, "3", time="rescaled")
    assert tr.status == "ok" and tr.tau_final == 3.0
    assert tr.beta_final == pytest.approx(3.0 * x, rel=1e-9)
    expected = (3.0 * x2 + math.log(-math.expm1(-3.0 * x2)) - math.log(x2)) / LN10
    assert tr.log10_t_final == pytest.approx(expected, rel=1e-9)
    # physical horizon far past float64: tau(T) = ln(1 + |x|^2 T) / |x|^2.  The global error
    # of the variable-order default (LSODA) is some 40 rtol over the ~400 steps; Radau and
    # DOP853 get far closer, and every method converges as rtol is tightened.
    tau_T = (400 * LN10 + math.log(x2)) / x2
    for method, rtol, tol in (("auto", 1e-9, 1e-7), ("auto", 1e-11, 3e-9), ("Radau", 1e-9, 3e-9),
                              ("DOP853", 1e-9, 1e-9)):
        tr = simulate(p, "1e400", method=method, rtol=rtol)
        assert tr.status == "ok" and tr.log10_t_final == 400.0
        assert tr.tau_final == pytest.approx(tau_T, rel=tol), method
        assert tr.beta_final == pytest.approx(tau_T * x, rel=tol), method
        assert tr.log10_loss_final == pytest.approx(-tau_T * x2 / LN10, rel=tol), method
