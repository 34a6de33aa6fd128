"""symbolic/derive: the derivation against direct SymPy differentiation and the numpy field."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from sambias import Init, Problem
try:  # the hand-written field lives on as an independent oracle in tests/ (issue 9)
    from tests.oracles.field import NumpyField
except ImportError:
    from sambias.flows import NumpyField
from sambias.symbolic import check_gradient, derive, derive_flow
from sambias.symbolic.cache import symbolic_flow
from sambias.symbolic.derive import to_number, with_data

ALGORITHMS = ["gd", "l2-sam", "linf-sam", "usam"]
LOSSES = ["exp", "logistic"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_is_sympy_diff_of_the_loss(algorithm, loss):
    for L, d, n in [(1, 2, 2), (2, 2, 1), (3, 2, 2)]:
        assert check_gradient(derive_flow(L, d, n, algorithm, loss))


def test_check_gradient_detects_a_wrong_gradient():
    import dataclasses
    s = derive_flow(2, 2, 1, "gd", "exp")
    bad = ((s.gradient[0][0] * 2,) + s.gradient[0][1:],) + s.gradient[1:]
    assert not check_gradient(dataclasses.replace(s, gradient=bad))


def _separable(rng, L, d, n, algorithm, loss):
    X = rng.normal(size=(n, d))
    y = np.sign(X @ rng.normal(size=d))
    y[y == 0] = 1.0
    return Problem(depth=L, algorithm=algorithm, rho=0.4, loss=loss, X=X, y=y, init=Init(scale=0.5))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("loss", LOSSES)
def test_symbolic_expressions_evaluate_to_the_numpy_field(algorithm, loss):
    """Evaluating the derived expressions in SymPy arithmetic (30 digits) gives NumpyField's
    numbers: an independent check of the derivation itself, not of the generated code."""
    rng = np.random.default_rng(11)
    for L, d, n in [(1, 2, 2), (2, 3, 1), (3, 2, 2)]:
        p = _separable(rng, L, d, n, algorithm, loss)
        s, ref = derive_flow(L, d, n, algorithm, loss), NumpyField(p)
        w = rng.normal(scale=0.7, size=L * d)
        got = s.evaluate(w, X=p.X, y=p.y, rho=p.rho)
        dw, log_S = ref.rescaled(w)
        np.testing.assert_allclose([float(v) for v in got["rescaled"]], dw, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose([float(v) for v in got["flow"]], ref.physical(w), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose([float(v) for v in got["perturbation"]], ref.perturbation(w),
                                   rtol=1e-12, atol=1e-13)
        assert float(got["log_speed"]) == pytest.approx(log_S, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("loss", LOSSES)
def test_one_example_rescaled_flow_is_loss_free(algorithm, loss):
    s = derive_flow(2, 3, 1, algorithm, loss)
    for l in range(2):
        for j in range(3):
            r = s.rescaled_flow[l][j]
            assert not r.has(sp.exp) and not (r.free_symbols & set(s.perturbed_margins))
            # dw/dtau = (dw/dt) / |l'(z~)|, proved by SymPy
            assert sp.simplify(s.flow[l][j] / s.speed - r) == 0
    expected = sp.exp(s.perturbed_margins[0]) if loss == "exp" else 1 + sp.exp(s.perturbed_margins[0])
    assert sp.simplify(s.time_change - expected) == 0


@pytest.mark.parametrize("loss", LOSSES)
def test_several_examples_rescaled_flow_is_the_softmax_weighted_form(loss):
    """dw/dt = S~ dw/dtau with q~_i = |l'(z~_i)| / S~ (the generalisation flows integrate)."""
    s = derive_flow(2, 2, 3, "l2-sam", loss)
    lam = [-s.loss_derivative.xreplace({sp.Symbol("z", real=True): z}) for z in s.perturbed_margins]
    sub = {q: l_ / s.speed for q, l_ in zip(s.perturbed_softmax_weights, lam)}
    for l in range(2):
        for j in range(2):
            assert sp.simplify(s.flow[l][j] - s.speed * s.rescaled_flow[l][j].xreplace(sub)) == 0


def test_l2_perturbation_is_loss_free():
    """THEORY: l2-SAM's normalisation cancels l' -- rho grad L/|grad L| = rho F/|F|."""
    s = derive_flow(2, 2, 1, "l2-sam", "logistic")
    G = [g for row in s.gradient for g in row]
    norm_G = sp.sqrt(sp.Add(*[g**2 for g in G]))
    for e, g in zip((e for row in s.perturbation for e in row), G):
        assert sp.simplify(s.rho * g / norm_G - e) == 0
        assert not e.has(sp.exp)


def test_derivation_covers_depth_one_to_ten():
    for L in (1, 5, 10):
        s = derive_flow(L, 2, 1, "linf-sam", "logistic")
        assert len(s.flow) == L and len(s.flow[0]) == 2
        # every layer's gradient is the product of the other layers
        for l in range(L):
            others = sp.Mul(*[s.weights[k][0] for k in range(L) if k != l])
            assert sp.simplify(s.rescaled_flow[l][0] / others.xreplace(
                {s.weights[k][0]: s.perturbed[k][0] for k in range(L)}) - s.X[0][0] * s.y[0]) == 0


def test_symbolic_derivation_is_cached_per_shape_not_per_data():
    symbolic_flow.cache_clear()
    a = derive_flow(2, 3, 2, "usam", "exp")
    assert derive_flow(2, 3, 2, "usam", "exp") is a
    d1 = derive_flow(2, 3, 2, "usam", "exp", data=([[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]], [1, -1]))
    d2 = derive_flow(2, 3, 2, "usam", "exp", data=([[7.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [1, 1]))
    assert symbolic_flow.cache_info().misses == 1 and symbolic_flow.cache_info().hits >= 2
    assert d1.margin_exprs != d2.margin_exprs and not d1.symbolic_data


def test_numeric_data_enter_as_numbers():
    s = derive_flow(2, 2, 1, "gd", "exp", data=([[3.0, 0.5]], [1]))
    assert s.rescaled_flow[0][0] == 3 * s.perturbed[1][0]
    assert s.rescaled_flow[0][1] == sp.Float(0.5) * s.perturbed[1][1]
    assert not any(sym.name.startswith(("x_", "y_")) for sym in s.loss_expr.free_symbols)


def test_bad_input_is_refused_without_parsing():
    with pytest.raises(TypeError):
        to_number("1 + 1")            # a string never reaches SymPy
    with pytest.raises(TypeError):
        derive_flow(1, 1, 1, "gd", "exp", data=([["__import__('os')"]], [1]))
    with pytest.raises(ValueError):
        derive_flow(1, 1, 1, "gd", "exp", data=([[float("nan")]], [1]))
    with pytest.raises(ValueError):
        derive_flow(1, 2, 1, "gd", "exp", data=([[1.0]], [1]))
    with pytest.raises(ValueError):
        derive_flow(0, 1, 1, "gd", "exp")
    with pytest.raises(ValueError):
        derive_flow(1, 1, 1, "sgd", "exp")
    with pytest.raises(ValueError):
        derive_flow(1, 1, 1, "gd", "hinge")
    with pytest.raises(ValueError):
        with_data(derive_flow(1, 1, 1, "gd", "exp", data=([[1.0]], [1])), [[1.0]], [1])


def test_derive_of_a_problem_keeps_rho_and_problem():
    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=0.2))
    s = derive(p)
    assert s.problem is p and s.rho_value == 0.5 and not s.symbolic_data
    assert s.key == (2, 2, 1, "l2-sam", "exp")


def test_large_problem_derivation_works():
    # its wall time is tracked in benchmarks/bench_symbolic.py (derive_s), not asserted here:
    # a timed unit test fails on a loaded machine without any regression
    symbolic_flow.cache_clear()
    s = derive_flow(8, 16, 8, "l2-sam", "logistic", data=(np.ones((8, 16)), np.ones(8)))
    assert len(s.perturbation) == 8 and len(s.perturbation[0]) == 16 and s.norm is not None
    assert not s.perturbation[7][15].free_symbols - set(s.state) - {s.rho} - set(s.softmax_weights)


def test_evaluate_agrees_with_mpmath_field_at_high_precision():
    """The derived expressions and the generated mpmath kernels agree to 25 digits."""
    p = Problem(depth=3, algorithm="usam", rho=0.25, loss="logistic", X=[[1.5, -0.5], [0.5, 2.0]],
                y=[1, 1], init=Init(scale=0.5))
    s = derive(p)
    w = [0.3, -0.7, 0.9, 1.1, 0.2, -0.4]
    got = s.evaluate(w, dps=40)
    with mpmath.workdps(40):
        dw, _ = s.compile(backend="mpmath").rescaled(w)
        for a, b in zip(got["rescaled"], dw):
            assert abs(mpmath.mpf(str(a)) - b) < mpmath.mpf("1e-25") * (1 + abs(b))
