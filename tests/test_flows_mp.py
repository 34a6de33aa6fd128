"""Tests of the high-precision (mpmath) vector field and integrator (flows/mp*.py)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from sambias import Init, Problem
from sambias.flows import mp_field as mp_field_module
from sambias.flows.mp_field import DerivedMpField, Unsupported, compile_raw, mp_field
from sambias.symbolic import GeneratedField
from sambias.flows.mp import simulate_mp
from tests.oracles.mp_field import MpField
from sambias.horizon import parse_horizon

X4 = [[3.0, 2.0, 1.0, 0.5]]  # THEORY.md's example


def example(alg: str, scale: float, depth: int = 2, rho: float = 0.5) -> Problem:
    return Problem(depth=depth, algorithm=alg, rho=rho, X=X4, y=[1], init=Init(scale=scale))


def mp_final(tr) -> list:
    return [mpmath.mpf(v) for v in tr.stats["w_final_mp"]]


def float64_reference(p: Problem, log10_T: float, rtol=1e-12, atol=1e-14) -> np.ndarray:
    """DOP853 on the textbook log-time system (tau, (w, s)) with the float64 generated
    field (numpy kernels, not the libmp printer under test); w at t = T."""
    f = GeneratedField(p)
    N = p.depth * p.dim
    s_T = math.log1p(10.0 ** log10_T) if log10_T < 300 else log10_T * math.log(10.0)

    def rhs(_tau, y):
        dw, log_S = f.rescaled(y[:N])
        return np.concatenate([dw, [math.exp(-log_S - y[N])]])

    def hit(_tau, y):
        return y[N] - s_T
    hit.terminal, hit.direction = True, 1
    y0 = np.concatenate([p.initial_weights().ravel(), [0.0]])
    sol = solve_ivp(rhs, (0.0, 1e3), y0, method="DOP853", rtol=rtol, atol=atol, events=hit)
    assert sol.status == 1, sol.message
    return sol.y_events[0][0][:N]


# --- (a) the derived mp field is the hand-written oracle, to mp precision --------------------
def field_gap(f, ref, rng, sigma_too: bool, digits: int = 50) -> float:
    """Largest relative difference of ``(dW/dtau, log S, g, F, log loss)`` between two fields."""
    worst = mpmath.mpf(0)
    L, d = ref.depth, ref.dim
    with mpmath.workdps(digits):
        for _ in range(3):
            w = ref.to_mp((rng.normal(size=L * d) * 1.2).tolist())
            sigmas = [None]
            if sigma_too:
                sigmas.append([int(v) for v in rng.choice([-1, 1], size=L * d)])
                sigmas.append([mpmath.mpf(float(v)) for v in rng.uniform(-1, 1, size=L * d)])
            for sg in sigmas:
                a, la = f.rescaled_mp(w, sg)
                b, lb = ref.rescaled_mp(w, sg)
                scale = max(abs(v) for v in b) or 1
                worst = max(worst, max(abs(u - v) for u, v in zip(a, b)) / scale,
                            abs(la - lb) / max(1, abs(lb)))
            pt = ref.parts(w)
            for mine, theirs in ((f.g(w), pt.g), (f.normalised_gradient(w), pt.F)):
                scale = max(abs(v) for v in theirs) or 1
                worst = max(worst, max(abs(u - v) for u, v in zip(mine, theirs)) / scale)
            worst = max(worst, abs(f.log_loss(w) - ref.log_loss(w)) / max(1, abs(ref.log_loss(w))))
    return float(worst)


@pytest.mark.parametrize("alg", ["gd", "l2-sam", "linf-sam", "usam"])
@pytest.mark.parametrize("loss", ["exp", "logistic"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_derived_mp_field_matches_hand_written_oracle(alg, loss, depth):
    rng = np.random.default_rng(depth * 31 + len(alg) * 7 + len(loss))
    for n in (1, 3):
        X = rng.normal(size=(n, 5))
        X[:, 0] = np.abs(X[:, 0]) + 1.0  # separable through coordinate 0
        p = Problem(depth=depth, algorithm=alg, rho=0.3, loss=loss, X=X, y=np.ones(n), init=Init(scale=0.5))
        f = mp_field(p)
        assert isinstance(f, DerivedMpField) and not f.uses_fallback
        # 50 digits: the two agree to rounding (a few ulps of 1e-50), not to float64
        assert field_gap(f, MpField(p), rng, sigma_too=alg == "linf-sam") < 1e-46


def test_oracle_comparison_rejects_a_wrong_field():
    # negative control: a field whose rho is off by 1e-30 must be caught by the same check
    p = Problem(depth=2, algorithm="l2-sam", rho=0.3, X=[[2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.5))
    bad = mp_field(p)
    with mpmath.workdps(50):
        bad.rho = bad.rho + mpmath.mpf("1e-30")
    bad._rho_raw = bad.rho._mpf_
    assert field_gap(bad, MpField(p), np.random.default_rng(0), sigma_too=False) > 1e-35


def test_fallback_to_generated_mp_kernels_agrees(monkeypatch):
    # an algorithm whose kernels the libmp printer cannot print runs symbolic/'s mpmath kernels
    for alg in ("l2-sam", "linf-sam", "usam"):
        p = Problem(depth=3, algorithm=alg, rho=0.3, X=[[2.0, 1.0, 0.5], [1.0, -0.5, 0.25]], y=[1, 1],
                    init=Init(scale=0.5))
        monkeypatch.setattr(mp_field_module, "raw_kernels", lambda *a: {})
        slow = mp_field(p)
        monkeypatch.undo()
        assert slow.uses_fallback
        assert field_gap(slow, MpField(p), np.random.default_rng(1), sigma_too=alg == "linf-sam", digits=30) < 1e-26


def test_libmp_printer_nodes_and_refusal():
    import sympy as sp
    from sambias.symbolic.codegen import KernelSpec

    a, b, rho = sp.symbols("w_1_j g_j rho")
    exprs = (a ** 3 / b ** 2 - sp.Rational(1, 3) * a + sp.sqrt(a * a + 1) / sp.exp(b), sp.log(sp.Abs(b)) * sp.sign(a),
             rho * a ** -1 + sp.Float("0.25") * b)
    fn = compile_raw(KernelSpec("k", (a, b, rho), exprs, a))
    with mpmath.workdps(40):
        xs, ys, r = [mpmath.mpf("0.7"), mpmath.mpf(-2)], [mpmath.mpf("1.3"), mpmath.mpf("0.4")], mpmath.mpf("0.5")
        out = fn([x._mpf_ for x in xs], [y._mpf_ for y in ys], r._mpf_, mpmath.mp.prec)
        for x, y, *got in zip(xs, ys, *out):
            want = [x ** 3 / y ** 2 - x / 3 + mpmath.sqrt(x * x + 1) / mpmath.exp(y),
                    mpmath.log(abs(y)) * mpmath.sign(x), r / x + y / 4]
            for g_, w_ in zip(got, want):
                assert abs(mpmath.mp.make_mpf(g_) - w_) < mpmath.mpf("1e-37") * max(1, abs(w_))
    with pytest.raises(Unsupported):
        compile_raw(KernelSpec("k", (a,), (sp.gamma(a),), a))
    with pytest.raises(Unsupported):
        compile_raw(KernelSpec("k", (a,), (a ** sp.Rational(1, 3),), a))


def test_mp_field_perturbation_and_sigma():
    p = example("linf-sam", 0.2)
    f, ref = mp_field(p), MpField(p)
    w = [0.3, -0.2, 0.1, 0.7, -0.4, 0.5, 0.2, 0.1]
    sigma = [0.5, -1, 1, 0, 1, 1, -0.25, 1]
    with mpmath.workdps(30):
        dm, lm = f.rescaled_mp(f.to_mp(w), [mpmath.mpf(v) if isinstance(v, float) else v for v in sigma])
        dr, lr = ref.rescaled_mp(ref.to_mp(w), sigma)
        assert max(abs(u - v) for u, v in zip(dm, dr)) < mpmath.mpf("1e-28")
        assert abs(lm - lr) < mpmath.mpf("1e-28")


# --- (b) agreement with a float64 DOP853 reference --------------------------------
@pytest.mark.parametrize("alg", ["gd", pytest.param("l2-sam", marks=pytest.mark.slow)])
def test_agrees_with_float64_reference_t1e6(alg):
    p = example(alg, 0.2)
    tr = simulate_mp(p, "1e6", digits=50)
    assert tr.ok
    ref = float64_reference(p, 6.0)
    w = np.array([float(v) for v in mp_final(tr)])
    assert np.max(np.abs(w - ref)) / np.max(np.abs(ref)) < 1e-9
    assert tr.log10_t_final == pytest.approx(6.0, abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("alg", ["gd", "l2-sam"])
def test_agrees_with_float64_reference_t1e300(alg):
    p = example(alg, 0.2)
    tr = simulate_mp(p, "1e300", digits=50)
    assert tr.ok
    ref = float64_reference(p, 300.0)
    w = tr.weights[-1].ravel()
    assert np.max(np.abs(w - ref)) / np.max(np.abs(ref)) < 1e-9


def test_agrees_with_float64_simulate_when_available():
    import sambias.flows as flows

    if not hasattr(flows, "simulate"):
        pytest.skip("the float64 sambias.flows.simulate is not there yet")
    p = example("gd", 0.2)
    H = parse_horizon("1e6")
    a = flows.simulate(p, H)
    b = flows.simulate(p, H, precision="mp:50")
    assert a.ok and b.ok
    assert b.settings["precision"] == "mp:50"
    np.testing.assert_allclose(a.weights[-1], b.weights[-1], rtol=1e-8, atol=1e-12)


# --- (c) convergence in digits, and a second integrator -------------------------------
@pytest.mark.parametrize("alg,scale", [("gd", 0.2), ("l2-sam", 1.0)])
def test_digits_convergence_30_vs_60(alg, scale):
    p = example(alg, scale)
    a = simulate_mp(p, "1e6", digits=30)
    b = simulate_mp(p, "1e6", digits=60)
    with mpmath.workdps(60):
        wa, wb = mp_final(a), mp_final(b)
        err = max(abs(u - v) for u, v in zip(wa, wb)) / max(abs(v) for v in wb)
        assert err < mpmath.mpf("1e-25")
        assert abs(mpmath.mpf(a.stats["log10_t_final_mp"]) - 6) < mpmath.mpf("1e-25")


def test_rkf78_agrees_with_extrapolation():
    p = example("gd", 0.2)
    a = simulate_mp(p, "1e3", digits=30, method="gbs")
    b = simulate_mp(p, "1e3", digits=30, method="rkf78", rtol=1e-22)
    assert b.settings["method"] == "rkf78"
    with mpmath.workdps(30):
        wa, wb = mp_final(a), mp_final(b)
        assert max(abs(u - v) for u, v in zip(wa, wb)) < mpmath.mpf("1e-19")


# --- (d) past float64: the exactly solvable L = 1 GD flow -----------------------------------
@pytest.mark.parametrize("T", ["1e400", "1e1000"])
def test_l1_gd_past_float64_matches_closed_form(T):
    # one example, w(0) = 0, exp loss: w = x tau, z = |x|^2 tau, dt/dtau = e^z,
    # so t = (e^{c tau} - 1)/c with c = |x|^2 and the loss is e^{-z} = 1/(1 + c t)
    x = [1.5, -0.5, 0.25]
    p = Problem(depth=1, algorithm="gd", X=[x], y=[1], init=Init(scale=0.0))
    tr = simulate_mp(p, T, digits=40)
    assert tr.ok
    with mpmath.workdps(40):
        Tm = mpmath.mpf(T)
        c = mpmath.fsum(mpmath.mpf(v) ** 2 for v in x)
        tau = mpmath.log1p(c * Tm) / c
        assert abs(mpmath.mpf(tr.stats["tau_final_mp"]) - tau) < mpmath.mpf("1e-32") * tau
        for wv, xv in zip(mp_final(tr), x):
            assert abs(wv - xv * tau) < mpmath.mpf("1e-32") * tau
        log10_loss = -mpmath.log10(1 + c * Tm)
        assert abs(mpmath.mpf(tr.stats["log10_loss_final_mp"]) - log10_loss) < mpmath.mpf("1e-30")
    assert tr.log10_t_final == pytest.approx(float(T[2:]), abs=1e-9)
    assert tr.log10_loss_final < -300  # below float64's smallest normal: only mp reaches it
    assert tr.tau_final == pytest.approx(float(tau))


@pytest.mark.slow
def test_l2_example_to_1e400_reaches_horizon():
    p = example("gd", 1.0)
    tr = simulate_mp(p, "1e400", digits=20)
    assert tr.ok and tr.log10_t_final == 400.0
    # exp loss: log10 loss ~ -margin/ln 10 ~ -(400 + log10 of the margin speed)
    assert -410 < tr.log10_loss_final < -400
    assert [s.index for s in tr.dominant] == [0]
    assert np.all(np.diff(tr.log10_t) > 0)


# --- rescaled clock -------------------------------------------------------------------
def test_rescaled_horizon_lands_on_tau():
    x = [2.0, 1.0]
    p = Problem(depth=1, algorithm="gd", X=[x], y=[1], init=Init(scale=0.0))
    tr = simulate_mp(p, "3.5", time="rescaled", digits=30)
    assert tr.ok and tr.settings["time"] == "rescaled"
    with mpmath.workdps(30):
        assert abs(mpmath.mpf(tr.stats["tau_final_mp"]) - mpmath.mpf("3.5")) < mpmath.mpf("1e-24")
        w = mp_final(tr)
        assert abs(w[0] - 7) < mpmath.mpf("1e-24") and abs(w[1] - mpmath.mpf("3.5")) < mpmath.mpf("1e-24")
        # t = (e^{5 tau} - 1)/5
        lt = mpmath.log10(mpmath.expm1(5 * mpmath.mpf("3.5")) / 5)
        assert abs(mpmath.mpf(tr.stats["log10_t_final_mp"]) - lt) < mpmath.mpf("1e-24")


# --- l2-SAM collapse ------------------------------------------------------------------------
def test_l2sam_collapse_stops_cleanly():
    tr = simulate_mp(example("l2-sam", 0.01), "1e6", digits=30)
    assert tr.status.startswith("collapse:")
    assert tr.beta_collapsed
    assert np.max(np.abs(tr.weights[-1])) < 1e-9
    assert np.all(np.isfinite(tr.weights)) and np.isfinite(tr.log10_t_final)
    assert any(e["kind"] == "collapse" for e in tr.stats["event_log"])


def test_l2sam_no_collapse_for_larger_init():
    tr = simulate_mp(example("l2-sam", 0.2), "1e6", digits=30)
    assert tr.ok and not tr.beta_collapsed
    # THEORY.md: for alpha = 0.2 the minor coordinate 2 leads first, then 3
    assert [s.index for s in tr.dominant][:2] == [2, 3]


# --- linf-SAM: switching and sliding ---------------------------------------------------------
def test_linf_sam_coordinates_pinned_at_analytic_times():
    # u = v = alpha < rho: u_j - rho = (alpha - rho) e^{x_j tau} hits 0 at tau_j = ln(rho/(rho-alpha))/x_j,
    # then both sides push inward (Filippov sliding): pinned; beta -> 0
    alpha, rho = 0.2, 0.5
    tr = simulate_mp(example("linf-sam", alpha), "1e400", digits=30)
    assert tr.ok and tr.log10_t_final == 400.0
    zero_events = [e for e in tr.stats["event_log"] if e["kind"] == "cross"]
    taus = sorted(e["tau"] for e in zero_events)
    expect = sorted(math.log(rho / (rho - alpha)) / x for x in X4[0])
    np.testing.assert_allclose(taus, expect, rtol=1e-14)
    for e in zero_events:
        assert all(a == "slide" for _, _, a in e["decisions"])
    assert tr.stats["zero_final"] == list(range(8))
    assert tr.beta_collapsed and tr.direction_final is None
    assert np.all(tr.weights[-1] == 0.0)


def test_linf_sam_is_shifted_gd_in_the_positive_orthant():
    # THEORY.md: while u, v > rho, linf-SAM is GD from w(0) - rho, shifted by rho (clock included)
    a = simulate_mp(example("linf-sam", 1.0), "1e6", digits=30)
    b = simulate_mp(example("gd", 0.5), "1e6", digits=30)
    with mpmath.workdps(30):
        wa, wb = mp_final(a), mp_final(b)
        assert max(abs(u - v - mpmath.mpf("0.5")) for u, v in zip(wa, wb)) < mpmath.mpf("1e-20")


def test_linf_sam_transversal_crossing_and_sliding():
    # u_0 = -0.3 < 0 < v_0 = 1.5: du_0/dtau = x_0 (v_0 -+ rho) > 0 on both sides of u_0 = 0, so
    # u_0 crosses (the switching entry sigma_{v_0} flips) and then grows; the other columns
    # start at 0.2 < rho and slide to 0 (pinned)
    p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=X4, y=[1],
                init=Init(layers=[[-0.3, 0.2, 0.2, 0.2], [1.5, 0.2, 0.2, 0.2]]))
    tr = simulate_mp(p, "1e50", digits=25)
    assert tr.ok, tr.status
    crossing = [e for e in tr.stats["event_log"] if e["kind"] == "cross" and e["index"] == 0]
    assert len(crossing) == 1 and ("coord", 0, "+") in crossing[0]["decisions"]
    assert tr.stats["zero_final"] == [1, 2, 3, 5, 6, 7]
    w = tr.weights[-1]
    assert w[0, 0] > 0 and w[1, 0] > 0 and np.all(w[:, 1:] == 0.0)
    assert tr.direction_final is not None and tr.direction_final[0] == pytest.approx(1.0)


# --- interface properties ------------------------------------------------------------------
def test_precision_context_is_restored_and_settings():
    before = mpmath.mp.dps
    tr = simulate_mp(example("gd", 0.2), parse_horizon("100"), digits=25)
    assert mpmath.mp.dps == before
    assert {k: tr.settings[k] for k in ("time", "precision", "method", "horizon")} == {
        "time": "physical", "precision": "mp:25", "method": "gbs", "horizon": "100"}
    assert tr.settings["rtol"] == pytest.approx(1e-21)
    # weights: relative control per coordinate (a floor 1e-100 rtol times the init scale 0.2)
    assert tr.settings["atol"] == pytest.approx(1e-100 * 1e-21 * 0.2)
    for key in ("steps", "rejected", "nfev", "wall_s", "w_final_mp"):
        assert key in tr.stats
    assert len(tr.stats["w_final_mp"]) == 8
    assert tr.weights.shape[1:] == (2, 4) and tr.weights.shape[0] == tr.tau.shape[0]
    assert tr.log10_t[0] == -np.inf and np.all(np.diff(tr.tau) > 0)
    doc = tr.to_json()
    assert doc["status"] == "ok" and doc["log10_t_final"] == pytest.approx(2.0)


def test_custom_field_object_is_used():
    p = example("l2-sam", 1.0)
    calls = []

    class Wrapped:
        def __init__(self):
            self.inner = mp_field(p)

        def rescaled_mp(self, w, sigma=None):
            calls.append(1)
            return self.inner.rescaled_mp(w, sigma)

    a = simulate_mp(p, "10", digits=25, field=Wrapped())
    b = simulate_mp(p, "10", digits=25)
    assert calls and a.stats["w_final_mp"] == b.stats["w_final_mp"]
    # the hand-written oracle as the field: the same run to the integration tolerance
    c = simulate_mp(p, "10", digits=25, field=MpField(p))
    with mpmath.workdps(25):
        for u, v in zip(mp_final(b), mp_final(c)):
            assert abs(u - v) <= mpmath.mpf("1e-17") * abs(v)


def test_bad_arguments():
    p = example("gd", 0.2)
    with pytest.raises(ValueError):
        simulate_mp(p, "10", time="wall")
    with pytest.raises(ValueError):
        simulate_mp(p, "10", digits=5)
    with pytest.raises(ValueError):
        simulate_mp(p, "10", method="euler")


def test_max_steps_reports_status():
    tr = simulate_mp(example("gd", 0.2), "1e100", digits=30, max_steps=5)
    assert tr.status.startswith("max_steps")
    assert tr.weights.shape[0] == 6


def test_rtol_below_roundoff_is_raised_to_the_floor():
    tr = simulate_mp(example("gd", 0.2), "10", digits=20, rtol=1e-40, atol=1e-40)
    assert tr.ok
    assert tr.settings["rtol"] == pytest.approx(1e-17) and tr.settings["atol"] == pytest.approx(1e-20)


@pytest.mark.parametrize("alg", ["gd", "l2-sam", "linf-sam"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_one_example_fast_path_matches_generic_path_to_mp_precision(alg, depth):
    rng = np.random.default_rng(depth)
    p = Problem(depth=depth, algorithm=alg, rho=0.3, X=[[1.5, -0.7, 0.4]], y=[-1], init=Init(scale=0.5))
    fast, slow = MpField(p), MpField(p)
    slow._fast = False
    assert fast._fast
    with mpmath.workdps(50):
        for _ in range(3):
            w = fast.to_mp(rng.normal(size=depth * 3))
            for sigma in (None, [1, -1, mpmath.mpf("0.25")] * depth):
                if sigma is not None and alg != "linf-sam":
                    continue
                a, la = fast.rescaled_mp(w, sigma)
                b, lb = slow.rescaled_mp(w, sigma)
                scale = max(abs(v) for v in b)
                assert max(abs(u - v) for u, v in zip(a, b)) <= mpmath.mpf("1e-47") * scale
                assert abs(la - lb) <= mpmath.mpf("1e-47") * max(1, abs(lb))


# --- issue 11.4: relative error control per coordinate ----------------------------------------
def gd_decay_problem() -> Problem:
    # L = 2 GD, one example with x = (1/8, -32): with u = v the rescaled flow is u_j' = x_j u_j,
    # so u_j(tau) = u_j(0) e^{x_j tau} exactly (dyadic data: the closed form sees the same x)
    return Problem(depth=2, algorithm="gd", X=[[0.125, -32.0]], y=[1], init=Init(scale=0.5))


def digits_against_closed_form(tr, digits: int) -> list[float]:
    """Correct decimal digits (relative) of every weight against ``u_j(0) e^{x_j tau}``."""
    with mpmath.workdps(digits + 20):
        tau = mpmath.mpf(tr.stats["tau_final_mp"])
        exact = [mpmath.mpf("0.5") * mpmath.exp(mpmath.mpf("0.125") * tau),
                 mpmath.mpf("0.5") * mpmath.exp(-32 * tau)] * 2
        return [float(-mpmath.log10(abs(w - e) / e)) if w != e else float(digits)
                for w, e in zip(mp_final(tr), exact)]


def test_mp50_keeps_all_digits_of_a_coordinate_driven_to_1e_38():
    tr = simulate_mp(gd_decay_problem(), "2.7", time="rescaled", digits=50)
    assert tr.ok
    w = mp_final(tr)
    assert 1e-39 < abs(w[1]) < 1e-37           # 0.5 e^{-86.4}
    assert min(digits_against_closed_form(tr, 50)) >= 40


def test_an_absolute_tolerance_loses_the_small_coordinate():
    # negative control: with the old absolute floor (atol = rtol) the same check fails
    tr = simulate_mp(gd_decay_problem(), "2.7", time="rescaled", digits=30, atol=1e-26)
    got = digits_against_closed_form(tr, 30)
    assert got[0] >= 20 and got[1] < 10
