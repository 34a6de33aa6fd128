"""The claims added for issue 8 item 4: L >= 3 KKT limits, whole leader sequences, the
measured collapse boundary and phases, USAM, discrete -> flow; their oracles (the
reduction of THEORY.md, integrated on its own) and checks, each shown to reject a wrong
prediction.  The full claims run in the quick catalogue (tests/conftest.py); the slow
cases here run them again in full."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import DominantSwitch, Trajectory
from sambias.verify import get_claim, run_claims
from sambias.verify.claims_deep import PLANTED, KKTTarget
from sambias.verify.claims_discrete import DiscreteOrder, check_discrete_order, discrete_errors
from sambias.verify.claims_reduced import LeaderSequence, Phases, check_leader_sequence
from sambias.verify.reduced import collapse_ratio, reduced_collapses, reduced_leaders, trivial_collapse_ratio
from sambias.verify.references import kkt_check, l1_max_margin, quasi_norm_argmin, quasi_norm_min

THEORY_X = (3.0, 2.0, 1.0, 0.5)


# --- the reduction as an oracle ----------------------------------------------------------------
def test_collapse_ratio_matches_theory_and_beats_the_trivial_bound():
    c = collapse_ratio(THEORY_X)
    # THEORY.md measured collapse for alpha/rho < ~0.39 (alpha = 0.01, 0.06, 0.1 at rho 0.5 collapse)
    assert 0.39 < c < 0.40
    assert trivial_collapse_ratio(THEORY_X) == pytest.approx(0.5 / (math.sqrt(2) * math.sqrt(14.25)))
    assert c > 4 * trivial_collapse_ratio(THEORY_X)
    assert reduced_collapses(THEORY_X, 0.99 * c) and not reduced_collapses(THEORY_X, 1.01 * c)
    # the order of the coordinates does not matter
    assert collapse_ratio(THEORY_X[::-1]) == pytest.approx(c, rel=2e-4)


def test_reduced_leaders_reproduce_theory_and_differ_by_algorithm():
    assert reduced_leaders(THEORY_X, 0.2, 0.5) == (2, 3, 2, 1, 0)        # THEORY.md's transient
    assert reduced_leaders(THEORY_X, 0.2, 0.5, algorithm="gd") == (0,)
    assert reduced_leaders(THEORY_X, 0.2, 0.4, algorithm="usam") == (1, 0)
    assert reduced_leaders(THEORY_X, 0.2, 0.4) == (2, 1, 0)
    assert reduced_leaders(THEORY_X, 0.05, 0.5) == ()                    # collapse
    # scale invariance of l2-SAM (not of USAM): only alpha / rho matters
    assert reduced_leaders(THEORY_X, 0.4, 1.0) == reduced_leaders(THEORY_X, 0.2, 0.5)


# --- leader sequences -----------------------------------------------------------------------------
def _fake(leaders, weights_final, algorithm="l2-sam", rho=0.5, status="ok"):
    p = Problem(depth=2, algorithm=algorithm, rho=rho, X=[list(THEORY_X)], y=[1], init=Init(scale=0.2))
    W = np.array([np.full((2, 4), 0.2), weights_final])
    dom = tuple(DominantSwitch(i, float(k), float(k)) for k, i in enumerate(leaders))
    return Trajectory(problem=p, tau=np.array([0.0, 5.0]), log10_t=np.array([-np.inf, 3.0]), weights=W,
                      log10_loss=np.array([0.0, -3.0]), status=status, dominant=dom)


def test_a_run_that_stopped_at_its_start_is_inconclusive_not_fails():
    """A solver failure at tau = 0 (no leader located; seen in the full catalogue) says
    nothing about the sequence; the same empty run once settled would contradict it."""
    start = np.full((2, 4), 0.2)
    tr = _fake((), start, status="solver: ValueError (`ts` must be strictly increasing or decreasing.)")
    v = check_leader_sequence(tr, LeaderSequence((2, 1, 0)))
    assert v.outcome == "inconclusive" and "run stopped: solver" in v.reason, v.reason
    settled = _fake((), np.array([[9.0, 1.0, 1.0, 1.0]] * 2))    # control: N >> 2 rho max x, no leader seen
    assert check_leader_sequence(settled, LeaderSequence((2, 1, 0))).fails


def test_check_leader_sequence_holds_fails_and_waits():
    settled = np.array([[9.0, 1.0, 1.0, 1.0]] * 2)      # the major leads, N >> 2 rho max x
    unsettled = np.array([[0.3, 0.5, 0.2, 0.2]] * 2)
    assert check_leader_sequence(_fake((2, 1, 0), settled), LeaderSequence((2, 1, 0))).holds
    assert check_leader_sequence(_fake((2, 1, 0), settled), LeaderSequence((2, 3, 2, 1, 0))).fails
    assert check_leader_sequence(_fake((2, 1, 0), settled), LeaderSequence((2, 0))).fails
    # a prefix of the prediction when the horizon ends: slow, not false
    v = check_leader_sequence(_fake((2, 1), unsettled), LeaderSequence((2, 1, 0)))
    assert v.inconclusive and "horizon" in v.evidence["decided_by"]
    # a run that differs before its last leader is wrong whatever the horizon
    assert check_leader_sequence(_fake((3, 1), unsettled), LeaderSequence((2, 1, 0))).fails
    assert check_leader_sequence(_fake((), settled, status="collapse: w = 0"), LeaderSequence(())).holds
    assert check_leader_sequence(_fake((), settled, status="collapse: w = 0"), LeaderSequence((2, 1, 0))).fails


def test_phases_prediction_scales_with_rho():
    ph = Phases(0.4, 0.94)
    assert ph.phase(0.19, 0.5) == 0 and ph.phase(0.21, 0.5) == 1 and ph.phase(0.5, 0.5) == 2
    assert ph.phase(0.38, 1.0) == 0 and ph.phase(0.42, 1.0) == 1
    fixed = Phases(0.4, 0.94, rho_power=0.0)         # the rho-independent rival
    assert fixed.phase(0.38, 1.0) == 1


# --- discrete -> flow ------------------------------------------------------------------------------
def test_discrete_order_check_on_a_real_run():
    from sambias.flows import simulate

    p = Problem(depth=2, algorithm="l2-sam", rho=0.3, X=[[3.0, 2.0, 1.0]], y=[1], init=Init(scale=0.5))
    flow = simulate(p, "1", rtol=1e-12)
    etas = (0.02, 0.01, 0.005)
    errs = discrete_errors(p, flow.weights[-1], etas)
    assert errs[0] / errs[1] == pytest.approx(2.0, rel=0.05) and errs[1] / errs[2] == pytest.approx(2.0, rel=0.05)
    assert check_discrete_order(flow, DiscreteOrder(1.0, etas)).holds
    for wrong in (2.0, 0.5):
        assert check_discrete_order(flow, DiscreteOrder(wrong, etas)).fails
    # GD's iterates against l2-SAM's flow: the gap does not vanish
    v = check_discrete_order(flow, DiscreteOrder(1.0, etas, algorithm="gd"))
    assert v.fails and v.evidence["decided_by"] == "gap not shrinking"


# --- KKT points of min |beta|_{2/L} ------------------------------------------------------------------
def test_quasi_norm_argmin_is_feasible_and_attains_the_minimum():
    for X, y, _ in PLANTED:
        b, v = quasi_norm_argmin(X, y, 3)
        A = np.asarray(y, float)[:, None] * np.asarray(X, float)
        assert np.min(A @ b) >= 1 - 1e-9
        assert v == pytest.approx(quasi_norm_min(X, y, 3))
        assert v == pytest.approx(float(np.sum(np.abs(b) ** (2 / 3)) ** 1.5))


def test_planted_kkt_point_off_the_global_minimiser_is_named_so():
    X, y, _ = PLANTED[1]
    l1 = l1_max_margin(X, y).direction
    r = kkt_check(l1, X, y, 3, tol=1e-2, weighted=True)
    assert r.is_kkt and not r.is_global          # a KKT point, 4 % above the global value
    assert r.value > 1.03 * r.global_value
    g, _ = quasi_norm_argmin(X, y, 3)
    assert kkt_check(g, X, y, 3, tol=1e-2, weighted=True).is_global


def test_kkt_target_prediction():
    assert KKTTarget(3) == KKTTarget(3, label="x") and KKTTarget(3) != KKTTarget(2)


# --- the claims, in the catalogue ---------------------------------------------------------------------
QUICK = ("gd-deep-kkt", "l2sam-deep-kkt", "usam-depth2-leader-sequence", "discrete-sam-flow-order1")
HEAVY = ("l2sam-depth2-leader-sequence", "l2sam-depth2-phases")    # outside the --quick subset (CPU)
NEW = QUICK + HEAVY


def test_new_claims_are_catalogued_with_sources_rivals_and_controls():
    for cid in NEW:
        c = get_claim(cid)
        assert c.source in ("derivation in THEORY.md", "known result cited in THEORY.md", "secondary source")
        assert len(c.rivals) >= 2 and len(c.negative_controls) >= 2 and c.hypotheses
        assert c.quick == (cid in QUICK)


def test_new_claims_hold_in_the_quick_catalogue(quick_results):
    by = {r.claim.id: r for r in quick_results}
    for cid in QUICK:
        r = by[cid]
        assert r.verdict.holds, (cid, r.verdict.reason)
        assert all(c.rejected for c in r.controls), cid
        assert all(rv.separated >= 1 and rv.rejected for rv in r.rivals), cid


@pytest.mark.slow
@pytest.mark.parametrize("cid", HEAVY)
def test_heavy_claims_hold_quick(cid):
    (r,) = run_claims([cid], quick=True)
    assert r.verdict.holds, r.verdict.reason
    assert all(c.rejected for c in r.controls)
    assert all(rv.separated >= 1 and rv.rejected for rv in r.rivals)


@pytest.mark.slow
@pytest.mark.parametrize("cid", NEW)
def test_new_claims_hold_in_full(cid):
    (r,) = run_claims([cid])
    assert r.verdict.holds, r.verdict.reason
    assert all(c.rejected for c in r.controls)
    assert all(rv.separated >= 1 and rv.rejected for rv in r.rivals)


# --- the discrete clock against an independent oracle (issue 8 item 5) --------------------------------
@pytest.mark.parametrize("algorithm,loss", [("l2-sam", "exp"), ("usam", "logistic"), ("gd", "exp")])
def test_discrete_tau_is_the_riemann_sum_of_S(algorithm, loss):
    """``iterate``'s rescaled clock is ``sum_k eta S(w~_k)`` (S = |l'| at the perturbed
    point, from the tests' own numpy field) -- not ``k eta`` (the tau-without-S mutant),
    and each iterate is ``w + eta S dW/dtau``."""
    from sambias.flows import iterate
    from tests.oracles.field import NumpyField

    p = Problem(depth=2, algorithm=algorithm, rho=0.2, loss=loss, X=[[3.0, 2.0, 1.0]], y=[1], init=Init(scale=0.6))
    eta, steps = 0.01, 200
    tr = iterate(p, eta, steps)
    f = NumpyField(p)
    W = tr.weights.reshape(tr.weights.shape[0], -1)
    S = np.array([math.exp(f.rescaled(w)[1]) for w in W[:-1]])
    expected = np.concatenate([[0.0], np.cumsum(eta * S)])
    np.testing.assert_allclose(tr.tau, expected, rtol=1e-10)
    assert not np.allclose(tr.tau, eta * np.arange(steps + 1), rtol=1e-3)     # the mutant's clock
    step = W[:-1] + eta * S[:, None] * np.array([f.rescaled(w)[0] for w in W[:-1]])
    np.testing.assert_allclose(W[1:], step, rtol=1e-10, atol=1e-14)
