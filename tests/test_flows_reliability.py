"""Reliability of the float64 engine (issue 10): runs end with a status that says what
happened -- never a solver traceback, never "ok" for a run that did not get there.

The random-problem sweep (30+ asymmetric linf-SAM L = 2 problems to tau = 40, each within
60 s) is marked slow; the default suite keeps the reproducer's mechanism (the stiff clock's
Jacobian row, the first step at a late restart) and the status guarantees.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import simulate
from sambias.flows import integrate as integrate_mod
from sambias.flows.logtime import LogTimeSystem

# issue 10.1's reproducer: ValueError "`ts` must be strictly increasing" after 95-196 s
REPRO = Problem(depth=2, algorithm="linf-sam", rho=0.673, X=[[2.8588, 1.3986, 2.462]], y=[1],
                init=Init(layers=[[0.4199, 1.2446, 1.1745], [0.5115, 1.3108, 0.3283]]))


def test_first_step_never_below_the_rounding_of_nu(monkeypatch):
    """A restart at nu ~ 1e24 with the clock's first step 1e-28 was a zero-length step."""
    seen = []
    real = integrate_mod.Float64Stepper

    def spy(method, fun, t0, y0, **kw):
        seen.append((t0, kw["first_step"]))
        return real(method, fun, t0, y0, **kw)

    monkeypatch.setattr(integrate_mod, "Float64Stepper", spy)
    monkeypatch.setattr(LogTimeSystem, "first_step", lambda self, y, default: 1e-300)
    tr = simulate(REPRO, "3", time="rescaled")
    assert tr.ok and len(seen) >= 2
    assert all(nu + h > nu for nu, h in seen)


@pytest.mark.parametrize("exc", [ValueError("`ts` must be strictly increasing or decreasing."),
                                 np.linalg.LinAlgError("singular matrix"), ZeroDivisionError("float division")])
def test_a_solver_exception_ends_the_run_with_a_status(monkeypatch, exc):
    calls = {"n": 0}
    real = integrate_mod.Float64Stepper

    def flaky(method, fun, t0, y0, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc
        return real(method, fun, t0, y0, **kw)

    monkeypatch.setattr(integrate_mod, "Float64Stepper", flaky)
    tr = simulate(REPRO, "40", time="rescaled")
    assert tr.status.startswith("solver: ") and str(exc).split()[0] in tr.status
    assert "\n" not in tr.status and tr.weights.shape[0] >= 2 and tr.tau_final < 40.0
    assert tr.to_json()["status"] == tr.status


def _old_clock_jacobian(system, nu, y):
    """The Jacobian as it was: the delta row with its W entries (dG/dW less the Hessian term)."""
    J = _JAC(system, nu, y)
    w, f, g, nf, nw, bD, iD, E, G = system._parts(y)
    Jf = np.asarray(system.flow_jac(w), float)[np.ix_(system.free, system.free)]
    dA = (Jf.T @ (f / nf)) / nw
    J[system.m, :system.m] = -(E - G) * dA * iD + (Jf.T @ g) * iD
    return J


_JAC = LogTimeSystem.jac


def test_reproducer_runs_deep_into_the_stiff_regime():
    """Past tau ~ 16 (margins ~1e33) the delta row's W entries made LU pivot on a row of size
    ~1e24 and lose the W solve: BDF's steps collapsed to 1e-7 nu (the reproducer's 100 s
    crawl before its crash at tau ~ 25; the slow test below goes to tau = 40)."""
    tr = simulate(REPRO, "18", time="rescaled", max_steps=4000)
    assert tr.ok and tr.tau_final == 18.0
    # column 0 is held at the corner W = 0; the other two grow without bound
    beta = tr.beta_final
    assert beta[0] == 0.0 and np.all(beta[1:] > 1e20)


@pytest.mark.slow
def test_reproducer_stalls_with_the_old_clock_row(monkeypatch):
    """Negative control of the test above: the old row brings the stall back."""
    monkeypatch.setattr(LogTimeSystem, "jac", _old_clock_jacobian)
    old = simulate(REPRO, "18", time="rescaled", max_steps=4000)
    assert old.status.startswith("max_steps") and old.tau_final < 17.5


def _random_asymmetric(seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 3.0, 3).round(4).tolist()
    rho = round(float(rng.uniform(0.1, 1.0)), 3)
    layers = rng.uniform(0.05, 1.5, (2, 3)).round(4).tolist()
    return Problem(depth=2, algorithm="linf-sam", rho=rho, X=[x], y=[1], init=Init(layers=layers))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1032))
def test_random_asymmetric_linf_runs_finish_with_a_status_within_60s(seed):
    start = time.perf_counter()
    tr = simulate(_random_asymmetric(seed), "40", time="rescaled")
    wall = time.perf_counter() - start
    assert tr.status and "\n" not in tr.status
    assert tr.ok, tr.status
    assert wall < 60.0, wall


@pytest.mark.slow
def test_reproducer_reaches_tau_40():
    tr = simulate(REPRO, "40", time="rescaled")
    assert tr.ok and tr.tau_final == 40.0


# --- issue 10.3: statuses that say what happened -------------------------------------------------
USAM_STUCK = Problem(depth=2, algorithm="usam", rho=0.784, y=[1, 1, 1], init=Init(scale=0.422),
                     X=[[3.241, -1.356, 1.618], [0.632, 0.747, 0.984], [-0.82, 0.968, 0.335]])


def test_usam_stationary_point_that_misclassifies_is_not_ok():
    tr = simulate(USAM_STUCK, "1e50")
    margins = tr.margins()[-1]
    assert tr.status.startswith("stationary: ") and "example 0" in tr.status, tr.status
    assert margins[0] < -0.1 and np.all(margins[1:] > 0)
    # it is a genuine rest point of the flow, not a numerical artefact
    from sambias.symbolic import GeneratedField
    dw, _ = GeneratedField(USAM_STUCK).rescaled(tr.weights[-1].ravel())
    assert np.max(np.abs(dw)) < 1e-7 * np.max(np.abs(tr.weights[-1]))
    # negative control: the same data under GD separates every example and is "ok"
    gd = simulate(Problem(depth=2, algorithm="gd", X=USAM_STUCK.X.tolist(), y=[1, 1, 1], init=Init(scale=0.422)), "1e50")
    assert gd.ok and np.all(gd.margins()[-1] > 0)


def test_linf_columns_held_at_zero_stay_ok():
    """Frozen with beta = 0 (THEORY's linf-SAM small-init outcome) is no misclassification."""
    p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    tr = simulate(p, "1e400")
    assert tr.ok and tr.beta_collapsed


def test_l2_collapse_names_the_columns_that_never_move():
    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 0.0]], y=[1], init=Init(scale=0.2))
    tr = simulate(p, "1e400")
    assert tr.status.startswith("collapse: F reached 0") and "columns [2]" in tr.status
    assert "w reached 0" not in tr.status
    W = tr.weights[-1]
    assert np.all(W[:, 2] == 0.2) and np.all(np.abs(W[:, :2]) < 1e-3)
    # negative control: with every column in the data the old wording is the right one
    full = simulate(Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1],
                            init=Init(scale=0.06)), "1e400")
    assert full.status.startswith("collapse: w reached 0")


def test_tiny_init_is_an_underflow_not_a_zero_start():
    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0]], y=[1], init=Init(scale=1e-300))
    tr = simulate(p, "1e400")
    assert tr.status.startswith("underflow: ") and "1e-300" in tr.status
    # negative control: a genuine zero start is still reported as one
    z = simulate(Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0]], y=[1], init=Init(scale=0.0)), "1e400")
    assert z.status.startswith("collapse: w starts at 0")


@pytest.mark.slow
def test_rescaled_horizon_past_float64_ends_with_an_overflow_status():
    """``--horizon 1e400 --time rescaled``: tau = 1e400 means |w| ~ e^(x tau); float64 stops at
    |w| ~ 1e148 with a status saying so (the CLI prints it), never a bare exit."""
    p = Problem(depth=2, algorithm="gd", X=[[3.0, 2.0, 1.0]], y=[1], init=Init(scale=0.8))
    tr = simulate(p, "1e400", time="rescaled")
    assert tr.status.startswith("overflow: ") and "mp:DIGITS" in tr.status
    assert 100 < tr.tau_final < 200 and math.isfinite(tr.log10_t_final)


# --- issue 10.2: linf-SAM L >= 3, a column crossing 0 together ------------------------------------
def _balanced_column_exact(a0: float, x: float, rho: float, L: int, tau: float) -> float:
    """Independent oracle, by hand: one example, y = 1, a balanced column ``w_l = a`` in every
    layer.  ``F_l = g a^(L-1)`` with ``g = -x``; for odd ``L`` its sign is ``-1`` on both sides
    of ``a = 0``, so ``eps = -rho`` throughout and ``da/dtau = x (a - rho)^(L-1)``.  For
    ``L = 3``: ``1/(rho - a) = 1/(rho - a0) + x tau``."""
    assert L == 3
    return rho - 1.0 / (1.0 / (rho - a0) + x * tau)


def test_odd_depth_balanced_negative_column_crosses_zero_and_grows():
    rho, x = 0.72, [3.0, 2.0, 1.0]
    p = Problem(depth=3, algorithm="linf-sam", rho=rho, X=[x], y=[1], init=Init(layers=[[0.3, -0.55, 0.3]] * 3))
    tr = simulate(p, "3", time="rescaled")
    assert tr.ok
    exact = _balanced_column_exact(-0.55, 2.0, rho, 3, 3.0)
    assert tr.weights[-1][:, 1] == pytest.approx(np.full(3, exact), rel=1e-7)
    assert tr.beta_final[1] > 0.18
    # the crossing is where the closed form puts a = 0
    cross = [e for e in tr.stats["event_log"] if e["kind"] == "cross"][0]
    assert cross["tau"] == pytest.approx((1.0 / rho - 1.0 / (rho + 0.55)) / 2.0, rel=1e-6)


def test_freezing_the_odd_depth_corner_is_detected(monkeypatch):
    """Negative control: the old rule (every corner frozen) lands far from the oracle."""
    from sambias.flows.filippov import FilippovModel

    monkeypatch.setattr(FilippovModel, "_leave_corners", lambda self, w, mode, decisions, tol: mode)
    p = Problem(depth=3, algorithm="linf-sam", rho=0.72, X=[[3.0, 2.0, 1.0]], y=[1],
                init=Init(layers=[[0.3, -0.55, 0.3]] * 3))
    tr = simulate(p, "3", time="rescaled")
    assert tr.weights[-1][:, 1] != pytest.approx(np.full(3, _balanced_column_exact(-0.55, 2.0, 0.72, 3, 3.0)), rel=1e-3)


def test_depth2_balanced_corner_is_still_held():
    """For L = 2 the crossing flips the column's switches: the corner attracts (THEORY)."""
    p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(layers=[[0.3, -0.2]] * 2))
    tr = simulate(p, "5", time="rescaled")
    assert tr.ok and np.all(tr.weights[-1][:, 1] == 0.0)


@pytest.mark.parametrize("algorithm", ["usam", "l2-sam", "linf-sam"])
def test_data_past_float64_range_is_an_overflow_status_at_once(algorithm):
    """X = 1e308 (found by the slow fuzz run): float64 hung over 100 s (usam, l2-SAM) or ended
    with a math domain error; now an immediate "overflow" status pointing to mp, and mp
    carries the same problem (the weights cannot move by t = 1e6: dtau/dt = e^{-4e306})."""
    p = Problem(depth=2, algorithm=algorithm, rho=0.5, X=[[1e308, 2.0, 1.0, 0.5]], y=[1],
                init=Init(scale=0.2))
    tr = simulate(p, "1e6")
    assert tr.status.startswith("overflow: at t = 0") and "mp:DIGITS" in tr.status
    if algorithm == "usam":
        mp = simulate(p, "1e6", precision="mp:30")
        assert mp.ok and mp.log10_t_final == pytest.approx(6.0, abs=1e-9)
        np.testing.assert_allclose(mp.beta_final, np.full(4, 0.04), rtol=1e-12)


def test_ordinary_data_is_not_refused_by_the_range_check():
    """Control: the same problem with X = 3 runs."""
    p = Problem(depth=2, algorithm="usam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    assert simulate(p, "1e6").ok


@pytest.mark.parametrize("horizon", ["1e-3", "1e6", "1e400"])
def test_a_horizon_inside_the_skipped_start_ends_the_run_there(horizon):
    """Found by the slow fuzz run: L = 1 l2-SAM with init 1001 (margins ~1500) and T = 1e-3
    integrated for minutes -- the analytic skip of the first instant jumped past the horizon
    and the main loop never met it (at T = 1e400 it ended in an OverflowError).  With W
    frozen over that stretch tau = T e^{-phi(0)} exactly, phi = log dt/dtau from the field."""
    from sambias.symbolic import GeneratedField

    p = Problem(depth=1, algorithm="l2-sam", rho=0.5, X=[[2.0, 1.0], [1.0, 3.0], [-1.0, -1.0], [-2.0, 0.5]],
                y=[1, 1, -1, -1], init=Init(scale=1001.0))
    tr = simulate(p, horizon)
    assert tr.ok and tr.log10_t_final == pytest.approx(float(horizon[2:]) if horizon != "1e-3" else -3.0, abs=1e-9)
    np.testing.assert_allclose(tr.beta_final, [1001.0, 1001.0], rtol=1e-12)
    _, log_S = GeneratedField(p).rescaled(np.full(2, 1001.0))
    log10_tau = tr.log10_t_final + float(log_S) / math.log(10)
    if log10_tau > -300:                     # tau itself is representable (T = 1e400)
        assert math.log10(tr.tau_final) == pytest.approx(log10_tau, abs=1e-6)
