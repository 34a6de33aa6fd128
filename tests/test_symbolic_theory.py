"""symbolic/invariants + reductions: what SymPy proved, checked again against NumpyField."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from sambias import Init, Problem
try:  # the hand-written field lives on as an independent oracle in tests/ (issue 9)
    from tests.oracles.field import NumpyField
except ImportError:
    from sambias.flows import NumpyField
from sambias.symbolic import derive
from sambias.symbolic.coordinate import coordinate_form
from sambias.symbolic.invariants import coordinate_invariants
from sambias.symbolic.notation import RHO, coordinate_variable
from sambias.symbolic.reductions import _zero, symbolic_reductions

ALGORITHMS = ["gd", "l2-sam", "linf-sam", "usam"]


def by_name(invs, name):
    return next(i for i in invs if i.name == name)


def phi_function(inv, L):
    """``Phi(W, sigma, rho)`` on column 0 of an ``(L, d)`` state, from the invariant's expression."""
    cf = coordinate_form(L, "linf-sam", "exp")
    f = sp.lambdify(list(cf.w) + list(cf.sigma) + [sp.Symbol("rho", nonnegative=True)],
                    inv.expression, "numpy")
    return lambda W, sigma, rho: f(*W[:, 0], *sigma[:, 0], rho)


def dphi_dt(field, phi, w, rho):
    """``dPhi/dt`` along the numpy field (central difference in the flow direction, signs frozen)."""
    L, d = field.depth, field.dim
    sigma = np.sign(field.normalised_gradient(w)).reshape(L, d)
    v = field.physical(w)
    h = 1e-6 / max(1.0, float(np.max(np.abs(v))))
    up, down = phi((w + h * v).reshape(L, d), sigma, rho), phi((w - h * v).reshape(L, d), sigma, rho)
    return (up - down) / (2 * h), float(np.max(np.abs(v)))


def one_example(L, algorithm, x, rho, loss="exp"):
    return Problem(depth=L, algorithm=algorithm, rho=rho, loss=loss, X=[[x]], y=[1], init=Init(scale=1.0))


# --- statuses SymPy settled ------------------------------------------------------------------
@pytest.mark.parametrize("L", [2, 3, 4])
def test_statuses(L):
    gd = coordinate_invariants(L, "gd", "exp")
    assert all(by_name(gd, f"layer balance ({l},{l + 1})").status == "conserved" for l in range(1, L))
    assert by_name(gd, "loss").status == "monotone" and by_name(gd, "loss").direction == "non-increasing"
    linf = coordinate_invariants(L, "linf-sam", "exp")
    for l in range(1, L):
        assert by_name(linf, f"layer balance ({l},{l + 1})").status == "not conserved"
        shifted = by_name(linf, f"shifted layer balance ({l},{l + 1})")
        assert shifted.status == "conserved" and "sigma-fixed" in shifted.requires
    for alg in ("l2-sam", "usam"):
        inv = by_name(coordinate_invariants(L, alg, "logistic"), "layer balance (1,2), squared")
        assert inv.status == "monotone" and inv.direction == "non-increasing" and "n=1" in inv.requires
        assert ("ww~>=0" in inv.requires) == (L >= 3)
    assert by_name(coordinate_invariants(L, "l2-sam", "exp"), "loss").status == "not conserved"


def test_depth_one_sam_loss_is_monotone_for_one_example_only():
    for alg in ("l2-sam", "linf-sam", "usam"):
        inv = by_name(coordinate_invariants(1, alg, "exp"), "loss")
        assert inv.status == "monotone" and inv.requires == ("n=1",)
    p = Problem(depth=1, algorithm="usam", rho=0.5, X=[[1.0, 2.0], [2.0, 1.0]], y=[1, 1], init=Init(scale=1.0))
    assert "loss" not in [i.name for i in derive(p).invariants]


# --- every witness is a real point where the quantity changes ---------------------------------
@pytest.mark.parametrize("L", [2, 3])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_witnesses_are_confirmed_by_the_numpy_field(L, algorithm):
    checked = 0
    for inv in coordinate_invariants(L, algorithm, "exp"):
        if inv.status != "not conserved" or inv.witness is None or inv.name == "loss":
            continue  # the loss has its own test below
        wit = inv.witness
        x, rho = float(Fraction(wit["x"])), float(Fraction(wit["rho"]))
        w = np.array([float(Fraction(v)) for v in wit["w"]])
        field = NumpyField(one_example(L, algorithm, x, rho))
        got, scale = dphi_dt(field, phi_function(inv, L), w, rho)
        assert got == pytest.approx(wit["value"], rel=1e-5, abs=1e-9 * scale)
        assert abs(got) > 1e-8 * scale
        checked += 1
    assert checked >= (1 if algorithm == "linf-sam" else 0)


def test_loss_witness_shows_an_increase():
    inv = by_name(coordinate_invariants(2, "linf-sam", "exp"), "loss")
    wit = inv.witness
    assert inv.status == "not conserved" and wit["value"] > 0
    x, rho = float(Fraction(wit["x"])), float(Fraction(wit["rho"]))
    w = np.array([float(Fraction(v)) for v in wit["w"]])
    field = NumpyField(one_example(2, "linf-sam", x, rho))
    pt = field.parts(field.shape(w))
    dL = float(np.exp(pt.log_S) * pt.F.ravel() @ field.physical(w))
    assert dL == pytest.approx(wit["value"], rel=1e-8) and dL > 0


# --- conserved and monotone quantities along the numpy field ---------------------------------------
def test_conserved_quantities_do_not_move():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3, 4))
    y = np.sign(X @ rng.normal(size=4))
    for algorithm, name in (("gd", "layer balance (1,2)"), ("linf-sam", "shifted layer balance (1,2)"),
                            ("gd", "layer balance (2,3)"), ("linf-sam", "shifted layer balance (2,3)")):
        inv = by_name(coordinate_invariants(3, algorithm, "logistic"), name)
        field = NumpyField(Problem(depth=3, algorithm=algorithm, rho=0.3, loss="logistic", X=X, y=y,
                                   init=Init(scale=1.0)))
        for _ in range(5):
            w = rng.normal(size=12)
            got, scale = dphi_dt(field, phi_function(inv, 3), w, 0.3)
            assert abs(got) < 1e-7 * scale * (1 + np.max(np.abs(w)))
    # negative control: the unshifted balance of linf-SAM does move
    inv = by_name(coordinate_invariants(3, "linf-sam", "logistic"), "layer balance (1,2)")
    got, scale = dphi_dt(field, phi_function(inv, 3), rng.normal(size=12), 0.3)
    assert abs(got) > 1e-4 * scale


@pytest.mark.parametrize("algorithm", ["l2-sam", "usam"])
def test_balance_magnitude_is_non_increasing_where_claimed(algorithm):
    rng = np.random.default_rng(4)
    for L in (2, 3):
        # logistic loss: S <= 1 keeps USAM's rho S F finite at any margin
        inv = by_name(coordinate_invariants(L, algorithm, "logistic"), "layer balance (1,2), squared")
        phi = phi_function(inv, L)
        seen_up = False
        for _ in range(40):
            x, rho = rng.uniform(0.5, 3), rng.uniform(0.1, 1)
            field = NumpyField(one_example(L, algorithm, x, rho, loss="logistic"))
            w = rng.normal(size=L)
            wt = w + field.perturbation(w)
            got, scale = dphi_dt(field, phi, w, rho)
            if L == 2 or w[2] * wt[2] >= 0:       # the condition SymPy attached
                assert got <= 1e-7 * scale * (1 + np.max(np.abs(w))) ** 4
            elif got > 1e-6 * scale:
                seen_up = True
        if L == 3:
            assert seen_up, "the condition w3 w~3 >= 0 should be needed"


def test_layer_difference_shrinks_in_theorys_setting():
    rng = np.random.default_rng(9)
    for algorithm in ALGORITHMS:
        inv = by_name(coordinate_invariants(2, algorithm, "exp"), "layer difference (1,2), squared")
        assert "yx>0" in inv.requires
        phi = phi_function(inv, 2)
        for _ in range(10):
            x, rho = rng.uniform(0.5, 3), rng.uniform(0.1, 0.5)
            field = NumpyField(one_example(2, algorithm, x, rho))
            w = rng.uniform(0.6, 3, size=2)       # positive orthant: linf-SAM's signs agree
            got, scale = dphi_dt(field, phi, w, rho)
            assert got <= 1e-8 * scale * 10


# --- reductions ---------------------------------------------------------------------------------------
def test_reductions_match_theory():
    pq = symbolic_reductions(2, 3, "linf-sam", "exp")[0]
    p, q = pq.equations[0][0], pq.equations[1][0]
    x = sp.Symbol("xpos_j", positive=True)
    rho = sp.Symbol("rho", nonnegative=True)
    assert pq.name == "pq" and pq.verified and pq.matches_claim
    assert sp.expand(pq.equations[0][1] - x * (p - 2 * rho)) == 0
    assert sp.expand(pq.equations[1][1] + x * q) == 0
    l2 = symbolic_reductions(2, 4, "l2-sam", "logistic")[0]
    assert l2.name == "balanced" and l2.verified and l2.matches_claim
    for L in (2, 3, 5):
        r = symbolic_reductions(L, 3, "linf-sam", "exp")[-1]
        assert r.verified and r.matches_claim and r.claimed[0] == x * (sp.Symbol("a_j", positive=True) - rho) ** (L - 1)
    usam = symbolic_reductions(3, 3, "usam", "logistic")[0]
    assert usam.verified and usam.claimed is None


def test_zero_check_rejects_a_wrong_claim():
    pq = symbolic_reductions(2, 3, "linf-sam", "exp")[0]
    x, p, rho = coordinate_variable("xpos"), coordinate_variable("p"), RHO
    assert not _zero(pq.equations[0][1] - x * (p - rho))
    assert _zero(pq.equations[0][1] - x * (p - 2 * rho))


def test_reductions_agree_with_the_numpy_field():
    rng = np.random.default_rng(13)
    xs = np.array([3.0, 2.0, 1.0, 0.5])
    rho = 0.5
    # linf-SAM, L = 2: dp/dtau = x (p - 2 rho), dq/dtau = -x q in the positive orthant
    f = NumpyField(Problem(depth=2, algorithm="linf-sam", rho=rho, X=[xs], y=[1], init=Init(scale=1.0)))
    u, v = rng.uniform(0.1, 2, 4), rng.uniform(0.1, 2, 4)
    dw = f.rescaled(np.concatenate([u, v]))[0]
    np.testing.assert_allclose(dw[:4] + dw[4:], xs * (u + v - 2 * rho), rtol=1e-12)
    np.testing.assert_allclose(dw[:4] - dw[4:], -xs * (u - v), rtol=1e-12, atol=1e-14)
    # l2-SAM, L = 2, u = v = a: da/dtau = x a (1 - rho x / N), N = sqrt(2 sum x^2 a^2)
    f = NumpyField(Problem(depth=2, algorithm="l2-sam", rho=rho, X=[xs], y=[1], init=Init(scale=1.0)))
    a = rng.uniform(0.1, 2, 4)
    dw = f.rescaled(np.concatenate([a, a]))[0]
    N = np.sqrt(2 * np.sum(xs**2 * a**2))
    np.testing.assert_allclose(dw[:4], xs * a * (1 - rho * xs / N), rtol=1e-12)
    np.testing.assert_allclose(dw[4:], dw[:4], rtol=1e-12)
    # linf-SAM, L = 3, balanced: da/dtau = x (a - rho)^2
    f = NumpyField(Problem(depth=3, algorithm="linf-sam", rho=rho, X=[xs], y=[1], init=Init(scale=1.0)))
    dw = f.rescaled(np.concatenate([a, a, a]))[0]
    np.testing.assert_allclose(dw[:4], xs * (a - rho) ** 2, rtol=1e-12)


def test_reductions_apply_only_where_their_assumptions_hold():
    def sys(X, y, L=2):
        return derive(Problem(depth=L, algorithm="linf-sam", rho=0.5, X=X, y=y, init=Init(scale=1.0)))
    assert [r.name for r in sys([[3.0, 2.0]], [1]).reductions] == ["pq", "balanced"]
    assert [r.name for r in sys([[-3.0, -2.0]], [-1]).reductions] == ["pq", "balanced"]
    assert sys([[3.0, -2.0]], [1]).reductions == ()
    assert sys([[3.0, 2.0], [1.0, 1.0]], [1, 1]).reductions == ()
    assert sys([[3.0, 2.0]], [1], L=1).reductions == ()
    # numeric data with a negative y x_j also drop invariants that need y x_j > 0
    names = [i.name for i in sys([[3.0, -2.0]], [1]).invariants]
    assert "layer difference (1,2), squared" not in names and "shifted layer balance (1,2)" in names
