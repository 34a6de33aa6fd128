"""linf-SAM in the Filippov sense: events, sliding at exactly 0, no chattering, THEORY.md's rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import simulate
from sambias.flows.filippov import FilippovModel

X = np.array([3.0, 2.0, 1.0, 0.5])
RHO = 0.5


def linf(layers=None, scale=None, depth: int = 2, rho: float = RHO) -> Problem:
    init = Init(scale=scale) if scale is not None else Init(layers=[list(map(float, r)) for r in layers])
    return Problem(depth=depth, algorithm="linf-sam", rho=rho, X=[X.tolist()], y=[1], init=init)


def switching_events(tr):
    return [e for e in tr.stats["event_log"] if e["kind"] in ("cross", "g", "release", "cross+g")]


def test_theory_small_init_every_coordinate_held_at_exactly_zero():
    tr = simulate(linf(scale=0.2), "1e400")
    assert tr.status == "ok" and tr.log10_t_final == 400.0
    assert tr.stats["events"] < 50 and len(switching_events(tr)) <= 8
    assert np.all(tr.weights[-1] == 0.0)           # exactly, not approximately
    assert tr.beta_collapsed and tr.direction_final is None
    # u_j = v_j = a_j with da/dtau = x_j (a_j - rho): 0 at tau_j = ln(rho/(rho - a0)) / x_j
    hit = sorted(e["tau"] for e in switching_events(tr))
    expected = sorted(math.log(RHO / (RHO - 0.2)) / X)
    assert hit == pytest.approx(expected, rel=1e-8)


def test_theory_large_init_everything_grows_and_e0_leads():
    tr = simulate(linf(scale=1.0), "1e400")
    assert tr.status == "ok" and not switching_events(tr)
    assert int(np.argmax(tr.direction_final)) == 0 and np.all(tr.weights[-1] > 0)


def test_mixed_init_minor_coordinate_wins():
    tr = simulate(linf(layers=[[0.3, 0.3, 0.8, 0.8], [0.3, 0.3, 0.8, 0.8]]), "1e400")
    assert tr.status == "ok" and len(switching_events(tr)) <= 4
    assert np.all(tr.weights[-1][:, :2] == 0.0) and np.all(tr.weights[-1][:, 2:] > 0)
    assert int(np.argmax(tr.direction_final)) == 2 and [s.index for s in tr.dominant] == [2]


@pytest.mark.parametrize("seed", range(6))
def test_the_depth2_rule_on_random_positive_inits(seed):
    """Grow iff u_j(0) + v_j(0) > 2 rho; limit e_k with k the largest-x growing coordinate; beta -> 0 if none."""
    rng = np.random.default_rng(seed)
    small = seed % 2 == 0
    U = rng.uniform(0.05, 0.9 if small else 1.5, size=(2, 4))
    grows = U.sum(axis=0) > 2 * RHO
    # p_j = u_j + v_j obeys dp/dtau = x_j (p - 2 rho): a shrinking column reaches 0 (and its
    # smaller layer earlier) by tau_j = ln(2 rho / (2 rho - p_j(0))) / x_j -- in rescaled time,
    # which a growing coordinate may map past any physical horizon: run in tau
    p0 = U.sum(axis=0)[~grows]
    tau_end = float(np.max(np.log(2 * RHO / (2 * RHO - p0)) / X[~grows])) + 1.0 if p0.size else 0.0
    # ... and long enough for the leader among the growing ones to be plain
    tr = simulate(linf(layers=U), repr(min(max(tau_end, 6.0), 40.0)), time="rescaled")
    assert tr.status == "ok" and tr.stats["events"] < 50
    W = tr.weights[-1]
    assert np.all(W[:, ~grows] == 0.0)
    assert np.all(W[:, grows] > 0.0)
    if grows.any():
        assert int(np.argmax(np.abs(tr.direction_final))) == int(np.flatnonzero(grows)[0])
    else:
        assert tr.beta_collapsed and tr.direction_final is None


def test_unbalanced_column_partner_is_driven_to_zero_after_a_pin():
    # u = 0.9, v = 0.05: u + v < 2 rho, v reaches 0 first and slides; then du/dtau = -rho x
    # sign(u) drives u to 0 linearly, and the column is held at (0, 0)
    tr = simulate(linf(layers=[[0.9, 1.0, 1.0, 1.0], [0.05, 1.0, 1.0, 1.0]]), "1e400")
    assert tr.status == "ok" and np.all(tr.weights[-1][:, 0] == 0.0)
    assert len(switching_events(tr)) == 2


def test_equivalent_control_holds_a_pinned_coordinate():
    p = linf(scale=0.2)
    model = FilippovModel(p)
    w = np.array([0.0, 0.2, 0.2, 0.2, 0.3, 0.2, 0.2, 0.2])   # u_0 = 0, v_0 = 0.3 < rho
    mode = model.initial_mode(w)
    mode, decisions = model.settle(w, mode, w == 0.0, np.zeros(4, bool), tol=1e-12)
    assert mode.pinned[0, 0] and ("coord", 0, "slide") in decisions
    dw, _ = model.flow(w, mode)
    sigma = model.sigma(w, mode)
    # u_0 is held (du/dtau = x_0 (v_0 + rho sigma[1, 0]) = 0): the switch of F[1, 0] = g_0 u_0,
    # on its discontinuity, takes the equivalent-control value -v_0/rho in [-1, 1] ...
    assert dw[0] == 0.0 and sigma[4] == pytest.approx(-0.3 / RHO, rel=1e-14)
    # ... while v_0 moves on at dv/dtau = x_0 (u_0 + rho sign(g_0 v_0)) = -rho x_0 towards 0
    assert sigma[0] == -1.0 and dw[4] == pytest.approx(-RHO * X[0], rel=1e-14)
    # the release event value is 1 - |c|: it reaches 0 when |v_0| reaches rho
    assert model.release_value(w, mode) == pytest.approx(1 - 0.3 / RHO)


def test_crossing_when_both_sides_push_the_same_way():
    # v_2 = -0.1 with u_2 = 0.8 > rho: dv/dtau = x(u - rho sign(v)) > 0 on both sides: v crosses
    tr = simulate(linf(layers=[[0.3, -0.2, 0.8, 0.1], [0.6, 0.3, -0.1, 0.8]]), "1e400")
    assert tr.status == "ok" and tr.stats["events"] < 50
    first = switching_events(tr)[0]
    assert ("coord", 6, "+") in [tuple(d) for d in first["decisions"]]


# 160 s on 2 cores since the float64 clock follows the equivalent control's motion (issue 9.2)
@pytest.mark.slow
def test_multi_example_gradient_surface_slides_without_chattering():
    # L = 1: the switches are sign(g_j) only; with X = [[1, 1], [1, -1]] g_1 = 0 at the start
    # by symmetry and both sides push back: w_1 slides at g_1 = 0
    p = Problem(depth=1, algorithm="linf-sam", rho=1.0, X=[[1.0, 1.0], [1.0, -1.0]], y=[1, 1],
                init=Init(scale=0.0))
    tr = simulate(p, "1e400")
    assert tr.status == "ok" and tr.stats["events"] < 10
    assert tr.weights[-1, 0, 1] == pytest.approx(0.0, abs=1e-9) and tr.direction_final[0] == pytest.approx(1.0)
    p = Problem(depth=2, algorithm="linf-sam", rho=0.3, X=[[1.0, 1.0], [1.0, -1.0]], y=[1, 1],
                init=Init(scale=0.5))
    tr = simulate(p, "1e400")
    assert tr.status == "ok" and tr.stats["events"] < 10 and np.all(tr.weights[-1][:, 1] == 0.0)


def test_multi_example_runs_stay_bounded_in_events():
    Xm = [[2.0, 1.0], [1.0, 3.0], [-1.0, -1.0], [-2.0, 0.5]]
    for depth, rho, init in ((1, 2.0, Init(scale=0.0)), (2, 0.5, Init(layers=[[0.3, -0.2], [0.5, 0.4]])),
                             (2, 0.5, Init(scale=0.6))):
        p = Problem(depth=depth, algorithm="linf-sam", rho=rho, X=Xm, y=[1, 1, -1, -1], loss="logistic", init=init)
        tr = simulate(p, "1e400")
        assert tr.status == "ok" and tr.stats["events"] < 50


def test_odd_depth_small_init_tends_to_rho_cubed():
    # Cor 3.5 (as reported): L = 3, alpha_j < rho -> beta_j -> rho^3; the approach rho - a ~ 1/(x tau)
    # is semi-stable, so the run freezes W once it no longer moves and must stay below rho
    tr = simulate(linf(scale=0.3, depth=3), "1e400")
    assert tr.status == "ok" and "frozen_from_log10_t" in tr.stats
    assert np.all(tr.weights[-1] < RHO)
    assert tr.beta_final == pytest.approx(np.full(4, RHO ** 3), rel=1e-8)


def test_odd_depth_large_init_diverges_towards_the_rule():
    # alpha_j > rho: diverge; limit e_{j*}, j* = argmax x_j (alpha_j - rho)^(L-2)
    alpha = np.array([0.55, 0.9, 0.6, 0.7])
    tr = simulate(linf(layers=np.tile(alpha, (3, 1)), depth=3), "1e400")
    assert tr.status == "ok"
    assert int(np.argmax(tr.direction_final)) == int(np.argmax(X * (alpha - RHO)))
