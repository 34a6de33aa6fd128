"""Flows checked against oracles written independently of sambias.flows (issue 8, item 5).

* ℓ∞-SAM, L = 3, one coordinate pinned at 0 (a Filippov sliding surface): the weights at a
  physical time against the textbook construction in *physical* time -- the convex
  combination ``lam F+ + (1 - lam) F-`` of the two sides' physical fields (tests/oracles/field.py)
  that keeps the pinned coordinate at 0, integrated with solve_ivp.  sambias integrates the
  same solution in rescaled time with a combined clock; the two must agree.
* ℓ2-SAM, L = 2, THEORY.md's x = (3, 2, 1, 0.5), alpha = 0.2: the whole leader sequence
  2 -> 3 -> 2 -> 1 -> 0 and its switch times against the balanced reduction
  ``da_j/dtau = x_j a_j (1 - rho x_j / N)`` integrated here (the default-suite case of
  tests/test_flows_long.py's slow sequence test).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from sambias import Init, Problem
from sambias.flows import simulate
from tests.oracles.field import NumpyField

RHO = 0.5
# W[0, 0] reaches 0 at t = 0.332 and slides there (its partners 0.3 < rho < 0.8) until the
# second coordinate of the column reaches 0 at t = 0.614: T = 0.5 is inside the slide
PINNED = Problem(depth=3, algorithm="linf-sam", rho=RHO, X=[[2.0, 1.0]], y=[1],
                 init=Init(layers=[[0.05, 0.7], [0.3, 0.7], [0.8, 0.7]]))
T_SLIDE = 0.5


def physical_filippov(problem: Problem, T: float, k: int = 0, *, slide: bool = True):
    """Weights at physical time ``T``: the frozen-sign flow until coordinate ``k`` reaches
    0, then Filippov sliding on ``W_k = 0`` in physical time.  ``slide=False`` (the
    oracle's own negative control) keeps the arrival signs instead: no sliding."""
    f = NumpyField(problem)
    L, d = problem.depth, problem.dim
    w0 = problem.initial_weights().ravel()
    sig0 = np.sign(f.switching(w0))

    def hit(_t, w):
        return w[k]
    hit.terminal, hit.direction = True, -1
    s1 = solve_ivp(lambda _t, w: f.physical(w, sig0), (0.0, T), w0, rtol=1e-12, atol=1e-14, events=hit)
    if s1.status == 0:
        return s1.y[:, -1], None
    t1, w1 = float(s1.t_events[0][0]), s1.y_events[0][0].copy()
    w1[k] = 0.0

    def side_fields(w):
        out = []
        for s in (1.0, -1.0):
            W = w.reshape(L, d).copy()
            W[k // d, k % d] = s * 1e-300          # the switches on side s of W_k = 0
            out.append(f.physical(w, np.sign(f.normalised_gradient(W.ravel()))))
        return out

    def rhs(_t, w):
        fp, fm = side_fields(w)
        if not slide:
            return fm if sig0.reshape(L, d)[0, 0] < 0 else fp
        lam = fm[k] / (fm[k] - fp[k])        # the normal velocity vanishes
        assert -1e-9 <= lam <= 1.0 + 1e-9, "not a sliding surface"
        v = lam * fp + (1.0 - lam) * fm
        v[k] = 0.0
        return v
    s2 = solve_ivp(rhs, (t1, T), w1, rtol=1e-12, atol=1e-14)
    return s2.y[:, -1], t1


@pytest.fixture(scope="module")
def oracle():
    w, t1 = physical_filippov(PINNED, T_SLIDE)
    assert t1 is not None and 0.3 < t1 < T_SLIDE
    return w


def test_mp_slides_on_a_single_pin_at_depth_3_like_the_physical_filippov_oracle(oracle):
    tr = simulate(PINNED, repr(T_SLIDE), precision="mp:20")
    w = np.asarray(tr.weights[-1], float).ravel()
    assert tr.status == "ok" and w[0] == 0.0
    np.testing.assert_allclose(w, oracle, rtol=0, atol=1e-9)
    # negative control of the oracle: without sliding (arrival signs kept) it is far off
    frozen, _ = physical_filippov(PINNED, T_SLIDE, slide=False)
    assert np.max(np.abs(frozen - w)) > 1e-2


# At commit 88ef064 float64 was off by 2.4e-2 here (7.3e-3 at T = 0.4, 5.5e-2 at 0.6): the
# sliding clock's rate kept a leftover g_base . (comb - dw_base), zero at L = 2 (the control
# field is the convex combination there) but not at L >= 3.
def test_float64_slides_on_a_single_pin_at_depth_3_like_the_physical_filippov_oracle(oracle):
    tr = simulate(PINNED, repr(T_SLIDE), rtol=1e-10)
    w = tr.weights[-1].ravel()
    assert tr.status == "ok" and w[0] == 0.0
    np.testing.assert_allclose(w, oracle, rtol=0, atol=1e-7)


# --- THEORY.md's l2-SAM leader sequence, fast (tests/test_flows_long.py has the slow checks) -----
def _reduction_switches(x, alpha: float, rho: float, tau_end: float) -> tuple[list[int], list[float]]:
    """Leaders of ``da_j/dtau = x_j a_j (1 - rho x_j / (sqrt 2 |x a|))`` and the times they
    take over (located to 1e-10 by bisection on the dense output).  Integrated in ``ln a``:
    the major dips to a ~ 1e-35 before it takes over, far below any absolute tolerance."""
    x = np.asarray(x, float)

    def rhs(_t, s):
        a = np.exp(s - s.max())          # N is homogeneous of degree 1 in a: scale out max a
        return x * (1.0 - rho * x * math.exp(-s.max()) / (math.sqrt(2.0) * np.linalg.norm(x * a)))
    sol = solve_ivp(rhs, (0.0, tau_end), np.full(x.size, math.log(alpha)), method="DOP853", rtol=1e-12,
                    atol=1e-12, dense_output=True)
    grid = np.linspace(1e-6, tau_end, 70001)
    lead = np.argmax(sol.sol(grid), axis=0)
    leaders, times = [int(lead[0])], [0.0]
    for i in np.flatnonzero(np.diff(lead)):
        lo, hi = grid[i], grid[i + 1]
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if int(np.argmax(sol.sol(mid))) == lead[i] else (lo, mid)
        leaders.append(int(lead[i + 1]))
        times.append(0.5 * (lo + hi))
    return leaders, times


def test_l2sam_theory_leader_sequence_2_3_2_1_0_against_the_reduction():
    x = (3.0, 2.0, 1.0, 0.5)
    p = Problem(depth=2, algorithm="l2-sam", rho=RHO, X=[list(x)], y=[1], init=Init(scale=0.2))
    tr = simulate(p, "70", time="rescaled")
    leaders, times = _reduction_switches(x, 0.2, RHO, 70.0)
    assert tr.status == "ok"
    assert leaders == [s.index for s in tr.dominant] == [2, 3, 2, 1, 0]
    # the take-overs (tau = 0.73, 20.1, 40.2, 67.1) to 1e-5 relative
    for s, t in list(zip(tr.dominant, times))[1:]:
        assert s.tau == pytest.approx(t, rel=1e-5)
    # negative control: USAM from the same init has another sequence (THEORY.md: 2 1 0)
    usam = simulate(p.replace(algorithm="usam"), "12", time="rescaled")
    assert [s.index for s in usam.dominant] == [2, 1, 0]
