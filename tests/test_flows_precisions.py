"""float64 and mpmath runs of the same flow agree: every example, random problems, and the
linf-SAM "mixed" example against an independent closed form and the discrete algorithm.

Both precisions report the same statuses, leader list format and stats keys
(``flows/trajectory.py``'s conventions); the tolerances below are the float64 run's
accuracy (``rtol = 1e-9`` per step, a few decades of accumulated error), the mp run being
exact to ~1e-25 at 30 digits.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from sambias import Init, Problem, load_problem
from sambias.examples import example_names
from sambias.flows import iterate, simulate

#: float64 vs mp:30 -- rescaled time, physical log10 t at the end, direction, leader times
TOL_TAU = 1e-6
TOL_LOG10_T = 1e-6
TOL_DIRECTION = 1e-6
TOL_LEADER_LOG10_T = 1e-4
#: stats every driver reports (CONTRACT.md's consumers read these whatever the precision)
COMMON_STATS = {"steps", "nfev", "njev", "nlu", "wall_s", "events", "event_log", "segments",
                "saved_points", "log10_tau_final"}

SLOW_EXAMPLES = {"l2-sam-depth2-collapse"}   # the approach to w = 0 costs mp ~30 s


def compare(a, b) -> list[str]:
    """Differences between two trajectories beyond the stated tolerances (empty: agree)."""
    bad = []
    if a.status.split(":")[0] != b.status.split(":")[0]:
        bad.append(f"status {a.status!r} vs {b.status!r}")
    if not abs(a.tau_final - b.tau_final) <= TOL_TAU * max(1.0, abs(b.tau_final)):
        bad.append(f"tau {a.tau_final!r} vs {b.tau_final!r}")
    if not abs(a.log10_t_final - b.log10_t_final) <= TOL_LOG10_T * max(1.0, abs(b.log10_t_final)):
        bad.append(f"log10 t {a.log10_t_final!r} vs {b.log10_t_final!r}")
    da, db = a.direction_final, b.direction_final
    if (da is None) != (db is None):
        bad.append(f"direction {da} vs {db}")
    elif da is not None and np.max(np.abs(da - db)) > TOL_DIRECTION:
        bad.append(f"direction {da} vs {db}")
    la, lb = [s.index for s in a.dominant], [s.index for s in b.dominant]
    if la != lb:
        bad.append(f"leaders {la} vs {lb}")
    else:
        # the first leader is dated at each solver's first step (a convention, not a time);
        # every later change is a root located on the dense output
        for sa, sb in zip(a.dominant[1:], b.dominant[1:]):
            if abs(sa.log10_t - sb.log10_t) > TOL_LEADER_LOG10_T:
                bad.append(f"leader {sa.index} at log10 t {sa.log10_t} vs {sb.log10_t}")
        for tr in (a, b):
            if tr.dominant and not (math.isfinite(tr.dominant[0].log10_t)
                                    and tr.dominant[0].log10_t <= min([0.0] + [s.log10_t for s in tr.dominant[1:]])):
                bad.append(f"first leader dated at {tr.dominant[0].log10_t}")
    missing = COMMON_STATS - set(b.stats)
    if missing:
        bad.append(f"stats keys missing: {sorted(missing)}")
    return bad


def both(problem, horizon, **kw):
    return simulate(problem, horizon, **kw), simulate(problem, horizon, precision="mp:30", **kw)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXAMPLES else n
                                  for n in example_names()])
def test_every_example_float64_and_mp_agree(name):
    a, b = both(load_problem(f"example:{name}"), "1e3")
    assert a.settings["precision"] == "float64" and b.settings["precision"] == "mp:30"
    assert compare(a, b) == []
    assert COMMON_STATS <= set(a.stats)


def test_compare_rejects_a_different_run():
    # negative control: the checker must see a changed clock, leader and direction
    p = load_problem("example:l2-sam-depth2")
    a = simulate(p, "1e3")
    b = simulate(p, "1e3", rtol=1e-4)        # a coarse run: same leaders, a visibly different time
    c = simulate(p, "1e-1")                  # stops before the 2 -> 3 leader change
    assert any(s.startswith("tau") for s in compare(a, b))
    assert any(s.startswith("leaders") for s in compare(a, c))
    q = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.25))
    assert any(s.startswith("direction") for s in compare(a, simulate(q, "1e3")))


def random_problem(seed: int, algorithm: str | None = None) -> Problem:
    rng = np.random.default_rng(seed)
    L = int(rng.integers(1, 4))
    alg = algorithm or ["gd", "l2-sam", "linf-sam", "usam"][seed % 4]
    d, n = int(rng.integers(2, 4)), int(rng.integers(1, 3))
    X = rng.uniform(0.2, 2.0, size=(n, d)) * rng.choice([-1.0, 1.0], size=(n, d))
    X[:, 0] = np.abs(X[:, 0]) + 1.0       # separable through coordinate 0 (y = 1)
    layers = rng.uniform(0.3, 1.2, size=(L, d))
    return Problem(depth=L, algorithm=alg, rho=float(rng.uniform(0.05, 0.3)), loss=["exp", "logistic"][seed % 2],
                   X=X.tolist(), y=[1] * n, init=Init(layers=layers.tolist()))


@pytest.mark.parametrize("seed, algorithm", [(11, None), (12, None), (13, None), (14, None),
                                             pytest.param(15, "asam", marks=pytest.mark.slow)])  # mp asam: ~13 s
def test_random_problems_float64_and_mp_agree(seed, algorithm):
    a, b = both(random_problem(seed, algorithm), "1e3")
    assert a.ok and b.ok, (a.status, b.status)
    assert compare(a, b) == []


# --- the linf-SAM "mixed" example: which clock is right --------------------------------------------
def mixed_closed_form(log10_T: float, corner_clock: str, dps: int = 40):
    """``(tau, W)`` at ``t = 10^log10_T`` for x = (3, 2, 1, 0.5), rho = 0.5, u = v = (.3, .3, .8, .8).

    THEORY.md's p/q form: with ``u = v = a`` (``q = 0``) each column is GD from ``a - rho``:
    ``a_j(tau) = rho + (a_j(0) - rho) e^{x_j tau}``.  Columns 0 and 1 reach ``u = v = 0`` at
    ``tau_j = ln(rho/(rho - a_j(0)))/x_j`` and are frozen there; the clock
    ``t = int e^{z~} dtau`` with ``z~ = sum_j x_j u~_j v~_j`` then takes, for a frozen column,
    ``u~ v~ = rho^2`` (``corner_clock="arrival"``: the sign pattern it arrived with, what
    discrete linf-SAM does) or ``0`` (``"zero"``: ``W~ = 0``, the rival selection).
    """
    with mpmath.workdps(dps):
        x = [mpmath.mpf(v) for v in (3, 2, 1, 0.5)]
        rho = mpmath.mpf("0.5")
        # the problem's data are the float64 numbers 0.3 and 0.8 (exact in mpf), not the decimals
        a0 = [mpmath.mpf(0.3)] * 2 + [mpmath.mpf(0.8)] * 2
        tz = [mpmath.log(rho / (rho - a0[j])) / x[j] for j in range(2)]
        frozen = rho ** 2 if corner_clock == "arrival" else 0

        def z(s):
            out = sum(x[j] * (a0[j] - rho) ** 2 * mpmath.exp(2 * x[j] * s) for j in (2, 3))
            return out + sum(x[j] * ((a0[j] - rho) ** 2 * mpmath.exp(2 * x[j] * s) if s < tz[j] else frozen)
                             for j in (0, 1))

        def log_t(tau):
            cuts = [mpmath.mpf(0)] + [v for v in sorted(tz) if v < tau] + [tau]
            return mpmath.log(sum(mpmath.quad(lambda s: mpmath.exp(z(s)), [cuts[i], cuts[i + 1]])
                                  for i in range(len(cuts) - 1)))

        target = log10_T * mpmath.log(10)
        tau = mpmath.findroot(lambda s: log_t(s) - target, (mpmath.mpf(0.5), mpmath.mpf(5)), solver="anderson")
        a = [mpmath.mpf(0)] * 2 + [rho + (a0[j] - rho) * mpmath.exp(x[j] * tau) for j in (2, 3)]
        return tau, np.array([float(v) for v in a + a]).reshape(2, 4)


def test_mixed_example_matches_the_closed_form_and_the_discrete_limit():
    p = load_problem("example:linf-sam-depth2-mixed")
    tau_a, W_a = mixed_closed_form(math.log10(3.0), "arrival")
    tau_z, W_z = mixed_closed_form(math.log10(3.0), "zero")
    assert abs(float(tau_a) - float(tau_z)) > 0.1          # the two selections are far apart
    # the flow is the eta -> 0 limit of discrete linf-SAM: it decides between them
    disc = iterate(p, eta=1e-3, steps=3000).weights[-1]
    assert np.max(np.abs(disc - W_a)) < 2e-3 < 0.1 < np.max(np.abs(disc - W_z))
    for prec in ("float64", "mp:30"):
        tr = simulate(p, "3", precision=prec)
        assert tr.tau_final == pytest.approx(float(tau_a), rel=1e-7)
        np.testing.assert_allclose(tr.weights[-1], W_a, rtol=1e-7, atol=1e-12)


@pytest.mark.slow
def test_mixed_example_at_1e50_both_precisions_on_the_closed_form():
    # ISSUE 9: float64 ended at tau = 3.5881 and mp at 3.5934; the closed form with the
    # discrete algorithm's corner clock says 3.5881 (mp now uses float64's Filippov clock)
    p = load_problem("example:linf-sam-depth2-mixed")
    tau, W = mixed_closed_form(50.0, "arrival")
    tau_rival, _ = mixed_closed_form(50.0, "zero")
    assert float(tau_rival) == pytest.approx(3.5934, abs=1e-4)
    a, b = both(p, "1e50")
    assert compare(a, b) == []
    assert a.tau_final == pytest.approx(float(tau), rel=1e-7)
    with mpmath.workdps(30):
        assert abs(mpmath.mpf(b.stats["tau_final_mp"]) - tau) < mpmath.mpf("1e-20")
    direction = (W[0] * W[1]) / np.linalg.norm(W[0] * W[1])
    np.testing.assert_allclose(b.direction_final, direction, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(example_names()) - {"linf-sam-depth2-mixed"}))
def test_every_example_float64_and_mp_agree_at_1e50(name):
    a, b = both(load_problem(f"example:{name}"), "1e50")
    assert compare(a, b) == []


def g_sliding_problem() -> Problem:
    """L = 1 linf-SAM, three examples: g_1 reaches 0 at tau ~ 0.151 with both sides pushing in."""
    X = [[0.6747172923257772, 1.6637239913911968, 0.659147749832255],
         [2.141397294584647, -0.005203264171931977, -0.6234637409883934],
         [0.6486315232520263, -1.608187784186389, 0.2417718768768513]]
    return Problem(depth=1, algorithm="linf-sam", rho=0.5511075398579942, X=X, y=[1, 1, 1],
                   init=Init(layers=[[-0.04569295232158743, -0.13900744454117375, 0.5778934350886589]]))


@pytest.mark.slow
def test_sliding_on_g_zero_is_equivalent_control_in_both_precisions():
    # several examples: mp slides on g_j = 0 by equivalent control as float64 does (it used to
    # stop with "chattering"); same events at the same tau, same weights
    a, b = both(g_sliding_problem(), "0.5", time="rescaled")
    assert a.ok and b.ok, (a.status, b.status)
    ev = [[(e["kind"], e["mode"]["g_sliding"], e["tau"]) for e in tr.stats["event_log"]] for tr in (a, b)]
    assert [e[:2] for e in ev[0]] == [e[:2] for e in ev[1]] == [("g", []), ("g", [1])]
    for (_, _, ta), (_, _, tb) in zip(*ev):
        assert ta == pytest.approx(tb, rel=1e-8)
    np.testing.assert_allclose(a.weights[-1], b.weights[-1], rtol=1e-7)
    assert [s.index for s in a.dominant] == [s.index for s in b.dominant] == [2, 0]
    # float64's log-time clock follows the equivalent control's motion while sliding (it used to
    # hold it fixed in d log S/dW and drift 1.1e-4 in log10 t from mp by tau = 0.2)
    assert a.log10_t_final == pytest.approx(b.log10_t_final, abs=TOL_LOG10_T)
    c, d = both(g_sliding_problem(), "0.2", time="rescaled")
    assert compare(c, d) == []


def test_a_huge_initial_margin_gives_the_same_tau_in_both_precisions():
    # L = 1, one example: W hardly moves while t runs to 1e400, so tau = T e^{-phi(0)} with
    # phi(0) = x w - rho |x| = 1000.5.  mp used to be 0.8% off (its tau had only an absolute
    # tolerance, 1e-26, against tau ~ 3e-35); each precision must now hit it.
    p = Problem(depth=1, algorithm="l2-sam", rho=0.5, X=[[1.0]], y=[1], init=Init(scale=1001.0))
    expected = math.exp(400 * math.log(10) - 1000.5)
    a, b = both(p, "1e400")
    assert a.status == b.status == "ok" and a.log10_t_final == b.log10_t_final == 400.0
    assert [s.index for s in a.dominant] == [s.index for s in b.dominant] == [0]
    assert a.tau_final == pytest.approx(expected, rel=1e-9)
    assert b.tau_final == pytest.approx(expected, rel=1e-9)


# --- one Filippov model in two arithmetics (issue 9) ------------------------------------------------
#: the model's mode decisions, switches, flow and release values, float64 vs mp:30 at one state
TOL_MODEL = 1e-12


def depth3_pin_problem() -> Problem:
    """L = 3, one example: coordinate (1, 0) reaches 0 at tau ~ 0.458 and slides (the control is
    a root of a quadratic, not the convex weight), then the column's corner at tau ~ 0.501."""
    return Problem(depth=3, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0]], y=[1],
                   init=Init(layers=[[0.3, 0.6], [0.2, 0.5], [0.9, 0.4]]))


def single_pin_problem() -> Problem:
    """L = 2: v_0 = 0.05 reaches 0 first and slides while u_0 is driven to 0 (then the corner)."""
    return Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1],
                   init=Init(layers=[[0.9, 1.0, 1.0, 1.0], [0.05, 1.0, 1.0, 1.0]]))


FILIPPOV_RUNS = {
    "single-pin": (single_pin_problem, "1e20", "physical"),
    "depth3-pin": (depth3_pin_problem, "3", "rescaled"),     # float64's clock was 3.5e-3 off mp's here
    "g-slide": (g_sliding_problem, "0.2", "rescaled"),        # several examples: G_1 by equivalent control
}


@pytest.mark.parametrize("name", sorted(FILIPPOV_RUNS))
def test_linf_sam_sliding_cases_agree_in_both_precisions(name):
    make, horizon, kind = FILIPPOV_RUNS[name]
    a, b = both(make(), horizon, time=kind)
    assert a.ok and b.ok, (a.status, b.status)
    assert compare(a, b) == []
    # the same mode sequence: one settle rule decides in both precisions
    modes = [[(e["kind"], e["mode"]) for e in tr.stats["event_log"] if "mode" in e] for tr in (a, b)]
    assert modes[0] == modes[1] and any(m["pinned"] or m["g_sliding"] for _, m in modes[0])


MODEL_STATES = ["L2 single pin", "L2 corner", "L3 pin", "g slide"]


def model_state(name: str):
    """``(problem, w, coordinate candidates, g candidates)`` on each kind of surface."""
    if name.startswith("L2"):
        w = np.array([0.0, 0.2, 0.2, 0.2, 0.3 if name == "L2 single pin" else 0.0, 0.2, 0.2, 0.2])
        return single_pin_problem(), w, [0] if name == "L2 single pin" else [0, 4], []
    if name == "L3 pin":     # (the first event of the depth-3 run)
        return depth3_pin_problem(), np.array([0.0527864, 0.60042078, 0.0, 0.49081675, 1.06568543, 0.39957922]), [2], []
    p = g_sliding_problem()
    tr = simulate(p, "0.2", time="rescaled")
    at = tr.stats["event_log"][1]["tau"]        # g_1 reaches 0 and slides
    return p, tr.weights[int(np.argmin(np.abs(tr.tau - at)))].ravel(), [], [1]


def model_disagreements(p, w, cand, gcand, mp_model=None) -> list[str]:
    """Where the float64 and mp Filippov models differ at ``w`` beyond ``TOL_MODEL`` (empty: agree)."""
    from sambias.flows.filippov import FilippovModel, MpFilippovModel
    from sambias.flows.mp_field import mp_field

    def far(x, y) -> bool:
        x, y = np.asarray(x, float), np.asarray([float(v) for v in np.ravel(y)])
        return bool(np.any(np.abs(x.ravel() - y) > TOL_MODEL * np.maximum(1.0, np.abs(x.ravel()))))

    m64 = FilippovModel(p)
    c = np.zeros(p.depth * p.dim, bool)
    c[cand] = True
    gc = np.zeros(p.dim, bool)
    gc[gcand] = True
    mode64, dec64 = m64.settle(w, m64.initial_mode(w), c, gc, tol=m64.settle_tol(w, m64.initial_mode(w)))
    bad = []
    with mpmath.workdps(30):
        mf = mp_field(p)
        mmp = (mp_model or MpFilippovModel)(p, mf.rescaled_mp, mf, mpmath.mpf("1e-26"), 30)
        wm = mf.to_mp(w)
        start = mmp.initial_mode(wm)
        modemp, decmp = mmp.settle(wm, start, c, gc, tol=mmp.settle_tol(wm, start))
        if dec64 != decmp:
            bad.append(f"decisions {dec64} vs {decmp}")
            return bad
        if far(m64.sigma(w, mode64), mmp.sigma(wm, modemp)):
            bad.append("switches (equivalent controls)")
        f64, l64 = m64.flow(w, mode64)
        fmp, lmp = mmp.flow(wm, modemp)
        if far(f64, fmp) or far([l64], [lmp]):
            bad.append("Filippov flow or clock")
        if mode64.gslide.any() and far(mode64.cg[mode64.gslide], modemp.cg[modemp.gslide]):
            bad.append("g controls")
        r64 = [m64.pin_release(w, mode64, q) for q in m64.single_pins(mode64)]
        if m64.single_pins(mode64) != mmp.single_pins(modemp) or far(r64, [mmp.pin_release(wm, modemp, q)
                                                                           for q in mmp.single_pins(modemp)]):
            bad.append("release values")
    return bad


@pytest.mark.parametrize("name", MODEL_STATES)
def test_filippov_model_decides_the_same_in_float64_and_mp(name):
    # one implementation, two arithmetics: mode decisions, controls, flow, clock and release
    # values at the same state agree to round-off (the old duplicated copies differed: the
    # g-sliding residual, the release value while sliding, odd-depth corners, sign(g) = 0)
    assert model_disagreements(*model_state(name)) == []


def test_model_comparison_rejects_a_diverged_copy():
    """Negative control: an mp copy with another control root (largest |c|) or another
    tangency tolerance is caught by the comparison above."""
    from sambias.flows.filippov import MpFilippovModel

    class LargestRoot(MpFilippovModel):
        def pin_control(self, W, Pi, G, k, j):
            roots = [-W[m, j] / (self.rho * G[j] * np.prod(np.delete(Pi[:, j], [m, k])))
                     for m in range(self.L) if m != k]
            return max(roots, key=abs)

    class NoTolerance(MpFilippovModel):
        def settle_tol(self, w, mode):
            return 1e6           # everything tangent: every candidate slides

    assert "switches (equivalent controls)" in model_disagreements(*model_state("L3 pin"), mp_model=LargestRoot)
    # |v_0| = 0.8 > rho: u_0 crosses (both sides push it the same way) unless all is "tangent"
    crossing = (single_pin_problem(), np.array([0.0, 0.2, 0.2, 0.2, 0.8, 0.2, 0.2, 0.2]), [0], [])
    assert model_disagreements(*crossing) == []
    assert any(b.startswith("decisions") for b in model_disagreements(*crossing, mp_model=NoTolerance))
