"""The lean compiled loop (flows/compiled_loop.py, issue 11.2) against the scipy path.

Tolerances: both paths run at rtol = 1e-9 with different integrators (DOP853 on (W, r) with
t by quadrature, against LSODA on (W, delta, r)), so they agree to what that rtol buys, not
to rounding: final direction 1e-6 (absolute, unit vector), leader-change instants 1e-6
relative in tau and log10 t, the final tau 1e-6 in log10, collapse instants likewise, and
identical statuses and leader sequences.  The first leader's date is the first step's end
by CONTRACT.md's convention (a step size, not a property of the flow), so it is not compared.

Compiling a shape's loop costs ~20-40 s of CPU once (then the disk cache serves): the tests
that need it are marked slow.
"""

from __future__ import annotations

import glob
import math
import os

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import compiled_loop as cl
from sambias.flows import simulate
from sambias.flows.collapse import is_filippov
from sambias.problem import load_problem
from sambias.symbolic.compiled import jit_enabled

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")
TOL = 1e-6

needs_numba = pytest.mark.skipif(not jit_enabled(), reason="numba unavailable or SAMBIAS_JIT=0")


def _runs(p, horizon, monkeypatch, **kw):
    """(lean, scipy) trajectories of one problem, and how many segments the loop took."""
    monkeypatch.setenv("SAMBIAS_LEAN", "1")
    before = cl.STATS["segments"]
    lean = simulate(p, horizon, **kw)
    taken = cl.STATS["segments"] - before
    monkeypatch.setenv("SAMBIAS_LEAN", "0")
    ref = simulate(p, horizon, **kw)
    return lean, ref, taken


def disagreements(a, b) -> list[str]:
    """What differs between two trajectories beyond the tolerances above."""
    out = []
    if a.status.split(" at ")[0] != b.status.split(" at ")[0]:
        out.append(f"status {a.status!r} vs {b.status!r}")
    if (a.direction_final is None) != (b.direction_final is None):
        out.append("direction defined in one only")
    elif a.direction_final is not None:
        d = float(np.abs(a.direction_final - b.direction_final).max())
        if d > TOL:
            out.append(f"direction differs by {d:.3g}")
    la, lb = list(a.dominant), list(b.dominant)
    if [s.index for s in la] != [s.index for s in lb]:
        out.append(f"leaders {[s.index for s in la]} vs {[s.index for s in lb]}")
    else:
        for sa, sb in zip(la[1:], lb[1:]):
            # log10 t only where t >= 1e-3: below, the scipy path's s = phi + delta has lost t to
            # phi's rounding (test_lean_small_t_is_exact; the lean loop keeps it)
            early = min(sa.log10_t, sb.log10_t) < -3
            if not math.isclose(sa.tau, sb.tau, rel_tol=TOL) or not (early or math.isclose(
                    sa.log10_t, sb.log10_t, rel_tol=TOL, abs_tol=TOL)):
                out.append(f"leader {sa.index} at tau {sa.tau:.9g} / {sb.tau:.9g}, log10 t {sa.log10_t:.9g} / "
                           f"{sb.log10_t:.9g}")
    ta, tb = a.stats["log10_tau_final"], b.stats["log10_tau_final"]
    if not math.isclose(ta, tb, rel_tol=TOL, abs_tol=TOL):
        out.append(f"final log10 tau {ta:.9g} vs {tb:.9g}")
    # ln t ~ 1e77 (tau = 30 of a growing run) is phi(W) to the weights' accumulated relative
    # error: the scipy path's is 6e-7 there (lean: 3e-8, test_lean_far_rescaled_is_accurate)
    far = 1e-4 if abs(float(b.log10_t[-1])) > 1e10 else TOL
    if not math.isclose(float(a.log10_t[-1]), float(b.log10_t[-1]), rel_tol=far, abs_tol=TOL):
        out.append(f"final log10 t {a.log10_t[-1]:.9g} vs {b.log10_t[-1]:.9g}")
    return out


def _smooth_examples():
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.toml"))):
        try:
            p = load_problem(path)
        except Exception:          # sweep files are not problems
            continue
        if not is_filippov(p):
            yield os.path.basename(path), p


def _random_problems(k: int = 6):
    rng = np.random.default_rng(7)
    for i in range(k):
        alg = ("gd", "l2-sam", "usam")[i % 3]
        d, n = int(rng.integers(2, 6)), int(rng.integers(1, 3))
        X = rng.normal(size=(n, d))
        X[:, 0] = np.abs(X[:, 0]) + 1.0          # separable through the first coordinate
        yield f"random-{i}-{alg}", Problem(depth=2, algorithm=alg, rho=0.3, X=X.tolist(), y=[1] * n,
                                           init=Init(scale=float(rng.uniform(0.1, 1.0))))


def test_lean_mode_switch(monkeypatch):
    monkeypatch.setenv("SAMBIAS_LEAN", "0")
    assert cl.lean_mode() == "off"
    monkeypatch.setenv("SAMBIAS_LEAN", "auto")
    monkeypatch.setenv("SAMBIAS_JIT", "0")
    assert cl.lean_mode() == "off"          # no compiled kernels, no compiled loop


def test_off_is_the_scipy_path(monkeypatch):
    """SAMBIAS_LEAN=0: the loop never runs and the run is the scipy path's, bit for bit."""
    p = Problem(depth=2, algorithm="gd", X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    monkeypatch.setenv("SAMBIAS_LEAN", "0")
    before = dict(cl.STATS)
    a = simulate(p, "1e400")
    monkeypatch.setenv("SAMBIAS_JIT", "0")
    b = simulate(p, "1e400")
    assert cl.STATS == before
    assert a.status == b.status == "ok"
    assert not disagreements(a, b)


@needs_numba
@pytest.mark.slow
@pytest.mark.parametrize("horizon,kw", [("1e400", {}), ("1e6", {}), ("30", {"time": "rescaled"})])
def test_lean_agrees_on_examples(horizon, kw, monkeypatch):
    checked = 0
    # (tau = 30 only on the examples: random-0-gd there takes 5+ minutes on either path)
    extra = list(_random_problems()) if horizon != "30" else []
    for name, p in list(_smooth_examples()) + extra:
        lean, ref, taken = _runs(p, horizon, monkeypatch, **kw)
        assert taken >= 1, name                       # the loop did run
        bad = disagreements(lean, ref)
        assert not bad, (name, bad)
        if lean.status == "ok":
            assert lean.stats["steps"] < ref.stats["steps"], name
        checked += 1
    assert checked >= 7


@needs_numba
@pytest.mark.slow
def test_lean_event_location(monkeypatch):
    """Collapse, horizon (both clocks) and overflow are located where the scipy path puts them."""
    x = [[3.0, 2.0, 1.0, 0.5]]
    coll = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=x, y=[1], init=Init(scale=0.06))
    lean, ref, taken = _runs(coll, "1e400", monkeypatch)
    assert taken and lean.status.startswith("collapse") and ref.status.startswith("collapse")
    assert math.isclose(lean.tau[-1], ref.tau[-1], rel_tol=1e-8)
    assert math.isclose(lean.log10_t[-1], ref.log10_t[-1], rel_tol=1e-8, abs_tol=1e-8)
    gd = Problem(depth=2, algorithm="gd", X=x, y=[1], init=Init(scale=0.2))
    lean, ref, taken = _runs(gd, "7.5", monkeypatch, time="rescaled")
    assert taken and lean.tau[-1] == 7.5 and not disagreements(lean, ref)
    # inside a run: the horizon event's state is the interpolated one, not the step end
    lean, ref, taken = _runs(gd, "1e50", monkeypatch)
    assert taken and not disagreements(lean, ref)
    big = Problem(depth=3, algorithm="gd", X=x, y=[1], init=Init(scale=0.5))
    lean, ref, taken = _runs(big, "1e1000", monkeypatch)
    assert taken and lean.status.split(" at ")[0] == ref.status.split(" at ")[0]
    assert not disagreements(lean, ref)


@needs_numba
@pytest.mark.slow
def test_negative_control_wrong_loop_is_caught(monkeypatch):
    """A loop whose steps are off by 1e-4 (a wrong kernel, in effect) fails the comparison."""
    p = Problem(depth=2, algorithm="usam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    real_kit_for = cl.kit_for

    def wrong_kit_for(field):
        kit = real_kit_for(field)
        if kit is None:
            return None
        module = kit.module

        class Wrong:
            def __getattr__(self, name):
                return getattr(module, name)

            @staticmethod
            def run(*args):
                out = module.run(*args)
                Y = args[-4]                  # the saved step ends (W, r)
                Y[1:out[1] + 1, :-1] *= 1.0 + 1e-4 * np.arange(Y.shape[1] - 1)
                return out
        kit.module = Wrong()
        return kit

    monkeypatch.setattr(cl, "kit_for", wrong_kit_for)
    lean, ref, taken = _runs(p, "1e400", monkeypatch)
    assert taken
    assert disagreements(lean, ref)


@needs_numba
@pytest.mark.slow
def test_handed_back_segment_is_the_scipy_run(monkeypatch):
    """A loop that gives up (stiff, trouble) hands the segment back: the run is the scipy one."""
    p = Problem(depth=2, algorithm="gd", X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    monkeypatch.setattr(cl, "STIFF_STEPS", 2)
    before = cl.STATS["handed_back"]
    lean, ref, taken = _runs(p, "1e400", monkeypatch)
    assert taken == 0 and cl.STATS["handed_back"] > before
    assert lean.stats["steps"] == ref.stats["steps"]
    np.testing.assert_array_equal(lean.direction_final, ref.direction_final)


@needs_numba
@pytest.mark.slow
def test_lean_small_t_is_exact(monkeypatch):
    """Leader changes at t ~ 1e-20 .. 1e-2 are dated as t(tau) = int_0^tau e^{phi(W)} dtau from an
    independent tight solve_ivp in tau (rtol 1e-13) says, to 1e-8 in log10 t.  (The scipy path
    reads t off s = phi + delta, which at phi ~ -13 cannot hold t = 1e-20: it dates these
    changes at -8.3 and -7.27 instead of -20.06 and -7.65.)"""
    from scipy.integrate import solve_ivp

    from sambias.symbolic import GeneratedField

    p = dict(_random_problems())["random-2-usam"]
    f = GeneratedField(p)
    w0 = p.initial_weights().ravel()

    def rhs(tau, y):
        dw, log_S = f.rescaled(y[:-1])
        return np.r_[dw, math.exp(-log_S)]

    monkeypatch.setenv("SAMBIAS_LEAN", "1")
    tr = simulate(p, "1e400")
    assert len(tr.dominant) >= 3
    for sw in tr.dominant:
        sol = solve_ivp(rhs, (0.0, sw.tau), np.r_[w0, 0.0], method="DOP853", rtol=1e-13, atol=1e-30)
        assert abs(sw.log10_t - math.log10(sol.y[-1, -1])) < 1e-8, (sw, math.log10(sol.y[-1, -1]))


@needs_numba
@pytest.mark.slow
def test_lean_far_rescaled_is_accurate(monkeypatch):
    """tau = 30 on the GD example (|w| ~ 1e38, ln t ~ 1.8e77): the weights agree with a tight
    solve_ivp in tau (rtol 1e-13) to 1e-7 relative (measured 2.9e-8; the scipy path: 5.8e-7)."""
    from scipy.integrate import solve_ivp

    from sambias.symbolic import GeneratedField

    p = load_problem(os.path.join(EXAMPLES, "gd-depth2.toml"))
    f = GeneratedField(p)
    sol = solve_ivp(lambda t, w: f.rescaled(w)[0], (0.0, 30.0), p.initial_weights().ravel(), method="DOP853",
                    rtol=1e-13, atol=1e-30)
    monkeypatch.setenv("SAMBIAS_LEAN", "1")
    tr = simulate(p, "30", time="rescaled")
    w = tr.weights[-1].ravel()
    assert np.max(np.abs(w - sol.y[:, -1]) / np.abs(sol.y[:, -1])) < 1e-7
    # ln t = ln int e^{phi} dtau = phi(W) - ln(dphi/dtau) + O(1/phi): to float64 resolution of ln t
    assert math.isclose(tr.log10_t[-1] * math.log(10), -float(f.rescaled(w)[1]), rel_tol=1e-12)
