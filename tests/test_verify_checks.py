"""Checks on synthetic trajectories (known answers) and the prediction rules.

Synthetic trajectories have closed-form angles, so every branch of the decision -- holds
(measured / extrapolated), fails (stagnated / moving away / collapsed), inconclusive
(too short / metastable plateau / slow but genuine) -- is pinned down exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.flows import DominantSwitch, Trajectory
from sambias.verify import Verdict, combine
from sambias.verify.checks import (Amplification, Limit, amplification_profile, angle_between, check_amplification,
                                   check_collapse, check_direction, check_limit, check_limits, fit_trend,
                                   observed_limit, predict_first_leader, predict_gd_depth2_limit, predict_linf_limit)

LN10 = math.log(10)


def traj(beta, log10_t, problem=None, status="ok", depth=1, dominant=()):
    beta = np.asarray(beta, float)
    m, d = beta.shape
    if problem is None:
        problem = Problem(depth=depth, algorithm="gd", X=[np.linspace(2.0, 1.0, d).tolist()], y=[1],
                          init=Init(scale=0.1))
    if problem.depth == 1:
        W = beta[:, None, :]
    else:
        root = np.sqrt(np.abs(beta))
        W = np.stack([np.sign(beta) * root, root] + [np.ones_like(beta)] * (problem.depth - 2), axis=1)
    lt = np.asarray(log10_t, float)
    return Trajectory(problem=problem, tau=np.linspace(0, 1, m), log10_t=lt, weights=W, log10_loss=-lt,
                      status=status, dominant=dominant,
                      settings={"precision": "float64", "horizon": f"1e{lt[-1]:g}", "time": "physical"})


def power_law_path(target, other, c, p, lt, floor=0.0):
    """Unit-ish beta whose angle to ``target`` is ``floor + c (ln t)^-p`` (towards ``other``)."""
    target = np.asarray(target, float) / np.linalg.norm(target)
    other = np.asarray(other, float)
    other = other - (other @ target) * target
    other /= np.linalg.norm(other)
    ang = floor + c * (lt * LN10) ** (-p)
    return np.cos(ang)[:, None] * target + np.sin(ang)[:, None] * other


LT = np.linspace(0.5, 1000.0, 400)


def test_holds_when_measured_below_tolerance():
    tr = traj(power_law_path([1, 0, 0], [0, 1, 0], 0.5, 1.0, LT), LT)
    v = check_direction(tr, [1, 0, 0], tol=1e-3)
    assert v.outcome == "holds" and v.evidence["basis"] == "measured"
    assert v.evidence["angle_final"] == pytest.approx(0.5 / (1000 * LN10), rel=1e-9)
    assert v.margin == pytest.approx(math.log10(1e-3 / v.evidence["angle_final"]), rel=1e-9)
    assert v.evidence["trend"]["p"] == pytest.approx(1.0, abs=1e-6)
    for key in ("tol_rad", "precision", "horizon", "log10_t_final"):
        assert key in v.evidence


def test_holds_by_extrapolation_only_for_a_clean_decay():
    tr = traj(power_law_path([1, 0, 0], [0, 1, 0], 0.5, 0.33, LT), LT)   # angle 0.06 at the end
    v = check_direction(tr, [1, 0, 0], tol=1e-2)
    assert v.outcome == "holds" and v.evidence["basis"] == "extrapolated"
    assert v.evidence["trend"]["p_local"] == pytest.approx(0.33, abs=1e-3)
    assert check_direction(tr, [1, 0, 0], tol=1e-2, extrapolate=False).outcome == "inconclusive"


def test_fails_when_the_direction_settles_elsewhere():
    # angle -> 0.05 + 0.5/ln t: it converges, but 0.05 rad away (a wrong target)
    tr = traj(power_law_path([1, 0, 0], [0, 1, 0], 0.5, 1.0, LT, floor=0.05), LT)
    v = check_direction(tr, [1, 0, 0], tol=1e-3)
    assert v.outcome == "fails" and "stagnated" in v.reason and v.margin < 0
    assert v.evidence["trend"]["extrapolated_limit"] == pytest.approx(0.05, rel=0.05)


def test_fails_when_the_angle_grows():
    lt = LT
    beta = power_law_path([1, 0, 0], [0, 1, 0], 0.5, 1.0, lt)      # tends to e_0
    v = check_direction(traj(beta, lt), [0.8, 0.6, 0], tol=1e-3)   # angle to (0.8, 0.6) grows towards 0.64
    assert v.outcome == "fails"


def test_inconclusive_when_too_short_or_slow():
    short = np.linspace(-2, 0.2, 50)                                # t < 1.6: no log-time trend to fit
    tr = traj(power_law_path([1, 0], [0, 1], 0.3, 1.0, np.maximum(short, 0.01)), short)
    assert check_direction(tr, [1, 0], tol=1e-3).outcome == "inconclusive"
    # a genuine but very slow power law (p = 0.03, as for a small dual slack) is not a failure
    slow = traj(power_law_path([1, 0, 0], [0, 1, 0], 0.1, 0.03, LT), LT)
    v = check_direction(slow, [1, 0, 0], tol=1e-3)
    assert v.outcome == "inconclusive", v.reason


def test_metastable_plateau_is_inconclusive_not_fails():
    # the target coordinate is 1e-60 relative but grows like (ln t)^2: the angle stays at pi/2
    ln_t = LT * LN10
    beta = np.stack([1e-60 * ln_t ** 2, np.ones_like(ln_t), 0.5 * np.ones_like(ln_t)], axis=1)
    v = check_direction(traj(beta, LT), [1, 0, 0], tol=1e-3)
    assert v.outcome == "inconclusive" and v.evidence["target_component_growth"] == pytest.approx(2.0, abs=1e-6)
    # the same plateau with a shrinking target coordinate is a failure
    beta[:, 0] = 1e-60 / ln_t
    assert check_direction(traj(beta, LT), [1, 0, 0], tol=1e-3).outcome == "fails"


def test_collapse_and_limits():
    lt = np.linspace(-3, 1, 30)
    shrink = np.exp(-np.linspace(0, 40, 30))[:, None] * np.array([[1.0, 0.5]])
    shrink[-1] = 0.0
    tr = traj(shrink, lt)
    assert tr.beta_collapsed
    assert check_collapse(tr).holds and check_limit(tr, Limit.zero(2)).holds
    assert check_limit(tr, Limit.basis(0, 2)).fails        # no direction at all
    assert observed_limit(tr).kind == "zero"
    grows = traj(np.outer(np.linspace(1, 100, 30), [1.0, 1e-9]), lt)
    assert check_collapse(grows).fails
    assert observed_limit(grows).describe() == "e_0"
    reported = traj(shrink[:-1] * 1e3, lt[:-1], status="collapse: w reached 0")
    assert check_collapse(reported).holds


def test_check_limits_table_and_combine():
    a = traj(power_law_path([1, 0], [0, 1], 0.5, 1.0, LT), LT)
    b = traj(power_law_path([0, 1], [1, 0], 0.5, 1.0, LT), LT)
    v = check_limits([a, b], [Limit.basis(0, 2), Limit.basis(1, 2)], tol=1e-3)
    assert v.holds and v.evidence["agree"] == 2
    w = check_limits([a, b], [Limit.basis(0, 2), Limit.basis(0, 2)], tol=1e-3)
    assert w.fails and w.evidence["agree"] == 1
    assert combine([Verdict("holds", "a", 1.0), Verdict("inconclusive", "b")]).inconclusive
    assert combine([Verdict("holds", "a", 1.0), Verdict("fails", "c", -2.0)]).margin == -2.0


def test_angle_between_is_accurate_near_zero():
    u = np.array([[1.0, 1e-12, 0.0]])
    assert angle_between(u, [1, 0, 0])[0] == pytest.approx(1e-12, rel=1e-6)
    assert angle_between(np.array([[0.0, 0.0]]), [1, 0])[0] != angle_between(np.array([[0.0, 0.0]]), [1, 0])[0]


def test_fit_trend_exact_power_law():
    tr = fit_trend(LT, 3.0 * (LT * LN10) ** -0.25)
    assert tr.p == pytest.approx(0.25, abs=1e-9) and tr.p_local == pytest.approx(0.25, abs=1e-9)
    assert tr.r2 == pytest.approx(1.0) and tr.limit < 1e-12
    assert fit_trend(np.array([0.1, 0.2]), np.array([1.0, 0.5])) is None


# --- prediction rules ----------------------------------------------------------------------
X4 = [3.0, 2.0, 1.0, 0.5]


def linf(init_layers, depth=2, x=X4, rho=0.5):
    return Problem(depth=depth, algorithm="linf-sam", rho=rho, X=[x], y=[1], init=Init(layers=init_layers))


def test_linf_rule_depth2_theory_cases():
    assert predict_linf_limit(linf([[0.3, 0.3, 0.8, 0.8]] * 2)).describe() == "e_2"
    assert predict_linf_limit(linf([[0.6, 0.3, 0.8, 0.4]] * 2)).describe() == "e_0"
    assert predict_linf_limit(linf([[0.4] * 4] * 2)).kind == "zero"
    # unbalanced: u + v decides, not u and v separately
    assert predict_linf_limit(linf([[0.9, 0.1, 0.1, 0.1], [0.2, 0.1, 0.1, 0.95]])).describe() == "e_0"


def test_linf_rule_is_order_agnostic():
    perm = [2, 0, 3, 1]
    x = np.array(X4)[perm]
    init = np.array([0.3, 0.3, 0.8, 0.8])[perm]
    lim = predict_linf_limit(linf([init.tolist()] * 2, x=x.tolist()))
    assert lim.index == perm.index(2)


def test_linf_rule_deep_cor35_minor_can_win():
    # alpha - rho = (0.1, 0.4, 0.2, 0.05): x (alpha - rho) = (0.3, 0.8, 0.2, 0.025): e_1, not the major e_0
    assert predict_linf_limit(linf([[0.6, 0.9, 0.7, 0.55]] * 3, depth=3)).describe() == "e_1"
    assert predict_linf_limit(linf([[0.4] * 4] * 4, depth=4)).kind == "zero"
    odd = predict_linf_limit(linf([[0.4] * 4] * 3, depth=3))
    assert odd.kind == "direction" and np.allclose(odd.target(), 0.5)


def test_rules_refuse_outside_their_hypotheses():
    with pytest.raises(ValueError):
        predict_linf_limit(linf([[0.3, -0.3, 0.8, 0.8]] * 2))
    with pytest.raises(ValueError):
        predict_linf_limit(linf([[0.6, 0.9, 0.7, 0.55], [0.6, 0.9, 0.7, 0.5], [0.6, 0.9, 0.7, 0.55]], depth=3))
    with pytest.raises(ValueError):
        predict_gd_depth2_limit(Problem(depth=2, algorithm="gd", X=[[1.0, 2.0], [2.0, 1.0]], y=[1, 1],
                                        init=Init(scale=0.1)))


def test_first_leader_formula():
    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[X4], y=[1], init=Init(scale=0.2))
    assert predict_first_leader(p) == 2                  # THEORY.md: coordinate 2 pulls ahead first
    assert predict_first_leader(p.replace(init_scale=0.3)) == 1
    assert predict_first_leader(p.replace(init_scale=1.0)) == 0
    assert predict_first_leader(p.replace(algorithm="gd")) == 0


# --- amplification on synthetic paths --------------------------------------------------------
def amp_traj(shares_path, log10_t, x=X4, algorithm="l2-sam"):
    """A depth-2 single-example trajectory with given |beta| rows and growing norm."""
    p = Problem(depth=2, algorithm=algorithm, rho=0.5, X=[x], y=[1], init=Init(scale=0.3))
    beta = np.asarray(shares_path, float) * np.exp(np.linspace(0, 30, len(log10_t)))[:, None]
    return traj(beta, log10_t, problem=p)


def shares(times, peaks, d=4):
    """Bumps: coordinate j's share peaks at peaks[j] (the last one rises to the end)."""
    out = np.zeros((len(times), d))
    for j, c in enumerate(peaks):
        out[:, j] = np.exp(-((times - c) ** 2)) if np.isfinite(c) else 1.0 / (1 + np.exp(-(times - 8)))
    return out + 1e-9


def test_amplification_minor_first_major_last():
    t = np.linspace(0, 12, 600)
    tr = amp_traj(shares(t, [np.inf, 6.0, 4.0, 2.0]), t)     # 3 -> 2 -> 1 -> 0
    prof = amplification_profile(tr)
    assert [l.index for l in prof.leaders] == [3, 2, 1, 0]
    assert [j for j, *_ in prof.share_peaks] == [3, 2, 1]
    v = check_amplification(tr, Amplification(first_leader=3))
    assert v.holds, v.reason
    assert check_amplification(tr, Amplification(first_leader=2)).fails
    assert check_amplification(tr, Amplification(first_leader=3, order="major-to-minor")).fails
    assert check_amplification(tr, Amplification(first_leader=None, minor_phase=False)).fails


def test_amplification_violations_are_caught():
    t = np.linspace(0, 12, 600)
    # 3 -> 1 -> 2 -> 0 with N increasing throughout: the rank goes down after t0
    v = check_amplification(amp_traj(shares(t, [np.inf, 4.0, 6.0, 2.0]), t), Amplification(first_leader=3))
    assert v.fails and v.reason.startswith("(b)")
    # the major leads from the start: no minor phase
    major_only = np.tile([1.0, 0.3, 0.2, 0.1], (len(t), 1))
    assert check_amplification(amp_traj(major_only, t), Amplification(first_leader=0)).fails
    # not finished: the major never takes over in the window
    early = t <= 4.5
    v = check_amplification(amp_traj(shares(t, [np.inf, 6.0, 4.0, 2.0])[early], t[early]), Amplification(3))
    assert v.inconclusive and v.reason.startswith("(c)")


def test_verdict_validates():
    with pytest.raises(ValueError):
        Verdict("maybe", "x")
    with pytest.raises(ValueError):
        Verdict("holds", "two\nlines")
    assert Verdict("holds", "ok", 1.0, {"a": np.float64(2.0)}).to_dict()["evidence"] == {"a": 2.0}


# --- with the real integrator ---------------------------------------------------------------
needs_simulate = pytest.mark.skipif(not hasattr(__import__("sambias.flows").flows, "simulate"),
                                    reason="needs sambias.flows.simulate")


@needs_simulate
def test_phase_diagram_codes_and_scale_invariance():
    from sambias.verify.checks import PHASES, amplification_phase_diagram

    scales = np.array([0.1, 0.25, 0.3, 1.0])
    a = amplification_phase_diagram(X4, scales, [0.5], horizon="1e1000")
    # rescaled l2-SAM dynamics depend on scale/rho only: doubling both changes nothing
    b = amplification_phase_diagram(X4, 2 * scales, [1.0], horizon="1e1000")
    assert a.outcome.shape == (1, 4) and set(a.legend) == set(PHASES)
    assert a.outcome.tolist() == [[0, 1, 1, 2]], a.reasons
    assert b.outcome.tolist() == a.outcome.tolist()
    assert a.first_leader.tolist() == [[-1, 2, 1, 0]]


@needs_simulate
def test_theory_example_transient_is_before_t0():
    """THEORY.md's 'Careful' note: at scale 0.2 the leader goes 2 -> 3 -> ... -- the
    2 -> 3 step happens while N = |grad L|/S still falls (before t0), and after t0 the
    leader only moves to larger |x_j|; the major has not taken over by t = 1e1000."""
    from sambias.flows import simulate

    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[X4], y=[1], init=Init(scale=0.2))
    tr = simulate(p, "1e1000")
    prof = amplification_profile(tr)
    assert [l.index for l in prof.leaders[:2]] == [2, 3]
    assert prof.leaders[1].tau < prof.t0_tau
    v = check_amplification(tr, Amplification(first_leader=predict_first_leader(p)))
    assert v.inconclusive and v.reason.startswith("(c)")


def test_check_kkt_on_synthetic_paths():
    from sambias.verify.checks import check_kkt

    p = Problem(depth=2, algorithm="gd", X=[[3.0, 1.0]], y=[1], init=Init(scale=0.1))
    # towards e_0 (the l1 max-margin, a KKT point) like (log t)^-0.5
    good = traj(power_law_path([1, 0], [0, 1], 0.5, 0.5, LT), LT, problem=p)
    v = check_kkt(good, tol=1e-2)
    assert v.holds and v.evidence["basis"] == "extrapolated" and v.evidence["kkt"]["support"][0] == 0
    assert v.evidence["residuals"][-1] < v.evidence["residuals"][0] / 10
    # towards (1, 1)/sqrt 2: stationarity needs |A^T lambda| = 1 on both coordinates -- impossible
    bad = traj(power_law_path([1, 1], [1, -1], 0.5, 1.0, LT), LT, problem=p)
    w = check_kkt(bad, tol=1e-3)
    assert w.fails, w.reason
    # depth 3: e_1 (a minor coordinate) is a KKT point too -- but not the global minimiser
    p3 = Problem(depth=3, algorithm="gd", X=[[3.0, 1.0]], y=[1], init=Init(scale=0.1))
    minor = traj(power_law_path([0, 1], [1, 0], 0.5, 1.0, LT), LT, problem=p3)
    u = check_kkt(minor, tol=1e-3)
    assert u.holds and not u.evidence["kkt"]["is_global"]


@needs_simulate
def test_init_rule_over_a_grid_of_inits():
    from sambias.verify.checks import check_init_rule

    # a grid over (u_0 + v_0, u_2 + v_2) around 2 rho: the limit switches between 0, e_0 and e_2
    problems = [linf([[a, 0.2, b], [a, 0.2, b]], x=[3.0, 2.0, 1.0]) for a in (0.3, 0.7) for b in (0.3, 0.7)]
    v = check_init_rule(problems, horizon="1e1000")
    assert v.holds, v.reason
    assert [row["observed"] for row in v.evidence["table"]] == ["0 (collapse)", "e_2", "e_0", "e_0"]
    wrong = check_init_rule(problems, rule=lambda p: Limit.basis(0, 3), horizon="1e1000")
    assert wrong.fails and wrong.evidence["agree"] == 2


# --- independent oracles for the parts a mutation could switch off ---------------------------------
def _bumps(t, spec, d=4):
    """|beta| rows: coordinate j is a bump of height h centred at c (``spec[j] = (c, h)``),
    or the major's sigmoid rising to the end (``c = inf``)."""
    out = np.zeros((len(t), d))
    for j, (c, h) in enumerate(spec):
        out[:, j] = h * np.exp(-((t - c) ** 2)) if np.isfinite(c) else 1.0 / (1 + np.exp(-(t - 8)))
    return out + 1e-9


def test_amplification_part_d_share_peaks_out_of_order():
    """Leaders 3 -> 2 -> 0 (minor to major), but the share of coordinate 1 (rank 2), which
    never leads, peaks before that of coordinate 2 (rank 1): only part (d) sees it."""
    t = np.linspace(0, 12, 600)
    tr = amp_traj(_bumps(t, [(np.inf, 1), (3.0, 0.05), (4.0, 1), (2.0, 1)]), t)
    prof = amplification_profile(tr)
    assert [l.index for l in prof.leaders] == [3, 2, 0]
    assert [j for j, *_ in prof.share_peaks] == [3, 1, 2]
    v = check_amplification(tr, Amplification(first_leader=3))
    assert v.fails and v.reason.startswith("(d)"), v.reason
    # in order (coordinate 1 peaks after 2): holds -- the same test passes a correct path
    ok = amp_traj(_bumps(t, [(np.inf, 1), (5.0, 0.05), (4.0, 1), (2.0, 1)]), t)
    assert check_amplification(ok, Amplification(first_leader=3)).holds


def _sweep_runs(first_leaders, scales=(0.2, 0.3, 1.0)):
    """One synthetic l2-SAM run per init scale (THEORY.md's x, rho 0.5) whose first leader
    is prescribed; the major takes over at the end of each."""
    from sambias.verify.checks import check_first_leaders  # noqa: F401  (imported where used)

    t = np.linspace(0, 12, 400)
    runs = []
    for a, k in zip(scales, first_leaders):
        spec = [(np.inf, 1.0)] + [(20.0, 1e-3)] * 3
        if k != 0:
            spec[k] = (2.0, 1.0)
        p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=a))
        beta = _bumps(t, spec) * np.exp(np.linspace(0, 30, len(t)))[:, None]
        if k == 0:
            beta[:, 0] = np.exp(np.linspace(0, 30, len(t)))     # the major leads throughout
        runs.append(traj(beta, t, problem=p))
    return runs


def test_first_leaders_parts_i_ii_iii():
    from sambias.verify.checks import FirstLeaders, check_first_leaders

    # the formula argmax |x_j|(1 - rho|x_j|/N0): 2, 1, 0 at scales 0.2, 0.3, 1.0
    assert [predict_first_leader(r.problem) for r in _sweep_runs((2, 1, 0))] == [2, 1, 0]
    assert check_first_leaders(_sweep_runs((2, 1, 0))).holds
    # (i): a run whose first leader is not the formula's
    v = check_first_leaders(_sweep_runs((2, 3, 0)))
    assert v.fails and v.reason.startswith("(i)"), v.reason
    # (ii): leaders as predicted run by run (so (i) passes) but the rank goes 1 -> 0 -> 3
    v = check_first_leaders(_sweep_runs((2, 3, 0)), leaders=(2, 3, 0))
    assert v.fails and v.reason.startswith("(ii)"), v.reason
    # (iii): monotone, but the largest scale does not start with the major
    v = check_first_leaders(_sweep_runs((3, 2, 1)), leaders=(3, 2, 1))
    assert v.fails and v.reason.startswith("(iii)"), v.reason
    assert FirstLeaders("minor-to-major", (2, 1, 0)).to_dict()["leaders"] == [2, 1, 0]
    with pytest.raises(ValueError):
        check_first_leaders(_sweep_runs((2, 1, 0)), leaders=(2, 1))


def test_sensitivity_subset_test_alone_rejects():
    """L = 3 ends off the dominant coordinate more often (2 > 1), but on an init where
    L = 2 already does, L = 3 does not: only the subset test rejects "deeper is more
    sensitive" here."""
    import importlib

    cat = importlib.import_module("sambias.verify.catalogue")
    x = [3.0, 2.0, 1.0]

    def end(depth, k):
        p = Problem(depth=depth, algorithm="linf-sam", rho=0.5, X=[x], y=[1], init=Init(scale=0.6))
        beta = np.tile(np.eye(3)[k] + 0.01, (10, 1)) * np.linspace(1, 10, 10)[:, None]
        return traj(beta, np.linspace(1, 10, 10), problem=p)

    trajs = [end(2, 1), end(2, 0), end(2, 0), end(3, 0), end(3, 2), end(3, 1)]
    v = cat._check_sensitivity(trajs, "deeper-more-sensitive")
    assert v.fails and "at L = 2 but not at L = 3" in v.reason
    ok = [end(2, 1), end(2, 0), end(2, 0), end(3, 1), end(3, 2), end(3, 0)]
    assert cat._check_sensitivity(ok, "deeper-more-sensitive").holds
    assert cat._check_sensitivity(ok, "equally-sensitive").fails


def test_fates_rule_and_check_on_synthetic_paths():
    from sambias.verify.checks import Fates, check_fates, predict_linf_fates

    def prob(L, alpha):
        return Problem(depth=L, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0]], y=[1],
                       init=Init(layers=[list(alpha)] * L))

    assert predict_linf_fates(prob(2, (0.3, 0.5, 0.45))).beta == (0.0, 0.25, 0.0)
    assert predict_linf_fates(prob(3, (0.3, 0.5, 0.45))).beta == (0.125, 0.125, 0.125)
    assert predict_linf_fates(prob(4, (0.3, 0.5, 0.45))).beta == (0.0, 0.0625, 0.0)
    with pytest.raises(ValueError, match="blows up"):
        predict_linf_fates(prob(3, (0.3, 0.7, 0.45)))

    p = prob(2, (0.3, 0.5, 0.45))
    lt = np.linspace(0.0, 100.0, 200)
    approach = np.exp(-np.linspace(0, 40, 200))[:, None]      # converges within the first quarter
    target = np.array([0.0, 0.25, 0.0])
    tr = traj(target + approach * np.array([0.05, 0.02, 0.05]), lt, problem=p)
    assert check_fates(tr, Fates(tuple(target))).holds
    # settled elsewhere: beta_0 ends at 0.01 (40 x tol) and stopped moving long ago
    v = check_fates(tr, Fates((0.01, 0.25, 0.0)))
    assert v.fails and v.evidence["decided_by"] == "settled value"
    # still moving at the horizon: inconclusive, not fails
    slow = traj(target + np.linspace(0.05, 0.001, 200)[:, None] * np.array([1.0, 0.0, 0.0]), lt, problem=p)
    v = check_fates(slow, Fates(tuple(target)))
    assert v.inconclusive and v.evidence["decided_by"] == "horizon (not converged)"
