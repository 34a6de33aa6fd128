"""symbolic/codegen + generated: the generated fields against NumpyField, finite
differences and each other (float64 vs mpmath), on seeded random separable instances."""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest

from sambias import Init, Problem
try:  # the hand-written field lives on as an independent oracle in tests/ (issue 9)
    from tests.oracles.field import NumpyField
except ImportError:
    from sambias.flows import NumpyField
from sambias.symbolic import CollapseError, GeneratedField, derive, generate_kernels

ALGORITHMS = ["gd", "l2-sam", "linf-sam", "usam"]
LOSSES = ["exp", "logistic"]


def separable_problem(rng, L, d, n, algorithm, loss, rho=0.3):
    X = rng.normal(size=(n, d))
    y = np.sign(X @ rng.normal(size=d))
    y[y == 0] = 1.0
    return Problem(depth=L, algorithm=algorithm, rho=rho, loss=loss, X=X, y=y, init=Init(scale=0.5))


def cases():
    """(L, d, n, algorithm, loss, seed): every algorithm and loss at L = 1..5, with d, n drawn."""
    rng = np.random.default_rng(20260308)
    out = []
    for L in range(1, 6):
        for algorithm in ALGORITHMS:
            for loss in LOSSES:
                out.append((L, int(rng.integers(1, 9)), int(rng.integers(1, 6)), algorithm, loss,
                            int(rng.integers(2**31))))
    return out


CASES = cases()
IDS = [f"L{c[0]}-d{c[1]}-n{c[2]}-{c[3]}-{c[4]}" for c in CASES]


def close(a, b, rtol):
    """Relative agreement at the scale of the reference (entries near 0 are judged on that scale)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
    return np.max(np.abs(a - b), initial=0.0) <= rtol * scale


def point(rng, p):
    # weights of order 1 keep USAM's rho*S*F and the exponential loss in a moderate range
    return rng.normal(scale=0.7, size=p.depth * p.dim)


@pytest.mark.parametrize("L,d,n,algorithm,loss,seed", CASES, ids=IDS)
def test_generated_equals_numpy_field(L, d, n, algorithm, loss, seed):
    rng = np.random.default_rng(seed)
    p = separable_problem(rng, L, d, n, algorithm, loss)
    ref, gen = NumpyField(p), derive(p).compile()
    for _ in range(3):
        w = point(rng, p)
        dw_ref, ls_ref = ref.rescaled(w)
        dw_gen, ls_gen = gen.rescaled(w)
        assert close(dw_gen, dw_ref, 1e-10)
        assert ls_gen == pytest.approx(ls_ref, rel=1e-10, abs=1e-12)
        assert close(gen.physical(w), ref.physical(w), 1e-10)
        assert close(gen.perturbation(w), ref.perturbation(w), 1e-10)
        assert close(gen.normalised_gradient(w), ref.normalised_gradient(w), 1e-10)
        assert close(gen.switching(w), ref.switching(w), 1e-10)
        assert close(gen.rescaled_jac(w), ref.rescaled_jac(w), 1e-9)
        assert close(gen.physical_jac(w), ref.physical_jac(w), 1e-9)
        assert close(gen.rescaled_log_speed_grad(w), ref.rescaled_log_speed_grad(w), 1e-9)
        a, b, c = gen.rescaled_with_grad(w)
        a0, b0, c0 = ref.rescaled_with_grad(w)
        assert close(a, a0, 1e-10) and b == pytest.approx(b0, rel=1e-10, abs=1e-12) and close(c, c0, 1e-9)


def central_difference(f, w, h=1e-6):
    cols = []
    for k in range(w.size):
        e = np.zeros_like(w)
        e[k] = h * max(1.0, abs(w[k]))
        cols.append((f(w + e) - f(w - e)) / (2 * e[k]))
    return np.array(cols).T


@pytest.mark.parametrize("L,d,n,algorithm,loss,seed", CASES[::3], ids=IDS[::3])
def test_generated_jacobian_equals_finite_differences(L, d, n, algorithm, loss, seed):
    rng = np.random.default_rng(seed + 1)
    p = separable_problem(rng, L, d, n, algorithm, loss)
    gen = derive(p).compile()
    w = point(rng, p)
    # linf-SAM's Jacobian holds the signs fixed: difference at those signs, not across a switch
    sigma = np.sign(gen.normalised_gradient(w)) if algorithm == "linf-sam" else None
    J = gen.rescaled_jac(w, sigma)
    fd = central_difference(lambda v: gen.rescaled(v, sigma)[0], w)
    assert close(J, fd, 1e-6)
    g = gen.rescaled_log_speed_grad(w, sigma)
    fd_g = central_difference(lambda v: np.array([gen.rescaled(v, sigma)[1]]), w)[0]
    assert close(g, fd_g, 1e-6)


@pytest.mark.parametrize("L,d,n,algorithm,loss,seed", CASES[1::4], ids=IDS[1::4])
def test_mpmath_backend_equals_float64(L, d, n, algorithm, loss, seed):
    rng = np.random.default_rng(seed + 2)
    p = separable_problem(rng, L, d, n, algorithm, loss)
    f64, fmp = derive(p).compile(), derive(p).compile(backend="mpmath")
    w = point(rng, p)
    with mpmath.workdps(40):
        dw, log_S = fmp.rescaled(list(w))
        J = fmp.rescaled_jac(w)
        phys = fmp.physical(w)
    assert all(isinstance(v, mpmath.mpf) for v in dw) and isinstance(log_S, mpmath.mpf)
    assert J.dtype == object and isinstance(J[0, 0], mpmath.mpf)
    ref, ls = f64.rescaled(w)
    assert close([float(v) for v in dw], ref, 1e-12)
    assert float(log_S) == pytest.approx(ls, rel=1e-12, abs=1e-12)
    assert close(J.astype(float), f64.rescaled_jac(w), 1e-11)
    assert close([float(v) for v in phys], f64.physical(w), 1e-11)


def test_mpmath_backend_follows_the_precision():
    """At 60 digits the mp field resolves what float64 cannot (a difference of 1e-30)."""
    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=1.0))
    fmp = derive(p).compile(backend="mpmath")
    with mpmath.workdps(60):
        w = [mpmath.mpf(1), mpmath.mpf(1) + mpmath.mpf("1e-30"), mpmath.mpf(1), mpmath.mpf(1)]
        a = fmp.rescaled(w)[0]
        b = fmp.rescaled([mpmath.mpf(1)] * 4)[0]
        diff = abs(a[2] - b[2])
    assert mpmath.mpf("1e-31") < diff < mpmath.mpf("1e-28")


def test_linf_sigma_is_an_input():
    rng = np.random.default_rng(5)
    p = separable_problem(rng, 3, 4, 2, "linf-sam", "logistic")
    ref, gen = NumpyField(p), derive(p).compile()
    w = point(rng, p)
    sigma = rng.uniform(-1, 1, size=w.size)   # Filippov controls, not signs
    assert close(gen.rescaled(w, sigma)[0], ref.rescaled(w, sigma)[0], 1e-10)
    assert close(gen.rescaled_jac(w, sigma), ref.rescaled_jac(w, sigma), 1e-9)
    # a different sigma gives a different field: sigma is really used
    assert not close(gen.rescaled(w, -sigma)[0], gen.rescaled(w, sigma)[0], 1e-6)
    # sign(0) = 0: a weight at exactly 0 makes its gradient entries 0, no perturbation there
    w0 = w.copy()
    w0[0] = 0.0
    assert close(gen.perturbation(w0), ref.perturbation(w0), 1e-12)


@pytest.mark.parametrize("backend", ["float64", "mpmath"])
def test_l2_collapse_raises(backend):
    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=0.0))
    gen = derive(p).compile(backend=backend)
    with pytest.raises(FloatingPointError):
        gen.rescaled([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(FloatingPointError):
        NumpyField(p).rescaled(np.zeros(4))
    # rho = 0 is GD: no perturbation, hence no collapse (as NumpyField)
    g0 = derive(p.replace(rho=0.0)).compile(backend=backend)
    assert [float(v) for v in g0.rescaled([0.0] * 4)[0]] == [0.0] * 4


def test_collapse_error_is_the_mp_integrators_too():
    from sambias.flows.mp_field import CollapseError as MpCollapse
    assert issubclass(CollapseError, MpCollapse) and issubclass(CollapseError, FloatingPointError)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_huge_margins_stay_finite(algorithm, loss):
    """Margins of 1e6: e^{-z} underflows, so the kernels must work with log|l'| only."""
    rng = np.random.default_rng(7)
    X = np.array([[3.0, 2.0, 1.0], [2.5, 1.0, 2.0]])
    p = Problem(depth=2, algorithm=algorithm, rho=0.5, loss=loss, X=X, y=[1, 1], init=Init(scale=1.0))
    gen, ref = derive(p).compile(), NumpyField(p)
    w = np.concatenate([np.full(3, 600.0), np.full(3, 600.0)]) + rng.uniform(0, 1, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # no overflow/underflow/invalid warnings at all
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            dw, log_S = gen.rescaled(w)
            J = gen.rescaled_jac(w)
    assert np.all(np.isfinite(dw)) and np.isfinite(log_S) and np.all(np.isfinite(J))
    assert log_S < -1e6                       # S = e^{-z} ~ 0, yet its log is exact
    assert close(dw, ref.rescaled(w)[0], 1e-10)
    assert log_S == pytest.approx(ref.rescaled(w)[1], rel=1e-12)


def test_interface_matches_numpy_field():
    public = {n for n in dir(NumpyField) if not n.startswith("_") and callable(getattr(NumpyField, n))}
    p = Problem(depth=2, algorithm="gd", X=[[1.0, 2.0]], y=[1], init=Init(scale=1.0))
    gen = derive(p).compile()
    missing = {n for n in public if n != "parts" and not callable(getattr(gen, n, None))}
    assert not missing, missing
    for attr in ("depth", "dim", "n", "algorithm", "loss", "rho", "problem"):
        assert getattr(gen, attr) == getattr(NumpyField(p), attr)


def test_kernels_serve_every_shape_and_data_set():
    rng = np.random.default_rng(3)
    a = separable_problem(rng, 3, 2, 1, "usam", "logistic")
    b = separable_problem(rng, 3, 7, 4, "usam", "logistic")
    ka, kb = derive(a).compile().kernels, derive(b).compile().kernels
    assert ka is kb is generate_kernels(3, "usam", "logistic", "float64")
    # the data are runtime arguments: no data value is baked into the source
    for v in np.concatenate([a.X.ravel(), b.X.ravel()]):
        assert repr(float(v)) not in ka.source
    # the exponential loss is handled in log space: e^{-z} is never formed
    assert "numpy.exp" not in generate_kernels(2, "l2-sam", "exp").source
    assert "logaddexp" in generate_kernels(2, "l2-sam", "logistic").source


@pytest.mark.parametrize("algorithm,scale", [("l2-sam", 0.2), ("linf-sam", 1.0), ("usam", 0.2)])
def test_simulate_accepts_the_generated_field(algorithm, scale):
    """The integrators run on the generated field (Filippov linf-SAM included) and land where
    they land with NumpyField: same status, limit and leader changes, to t = 1e400."""
    from sambias.flows import simulate

    p = Problem(depth=2, algorithm=algorithm, rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=scale))
    ref = simulate(p, "1e400")
    gen = simulate(p, "1e400", field=derive(p).compile())
    assert gen.status == ref.status == "ok"
    np.testing.assert_allclose(gen.beta_final, ref.beta_final, rtol=1e-6)
    assert [s.index for s in gen.dominant] == [s.index for s in ref.dominant]


def test_mp_integrator_accepts_the_mpmath_field():
    from sambias.flows import simulate

    p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
    ref = simulate(p, "1e20", precision="mp:20")
    gen = simulate(p, "1e20", precision="mp:20", field=derive(p).compile(backend="mpmath"))
    assert gen.status == ref.status == "ok"
    np.testing.assert_allclose(gen.beta_final, ref.beta_final, rtol=1e-7)
    assert [s.index for s in gen.dominant] == [s.index for s in ref.dominant]


def test_compile_checks_the_problem_shape():
    p = Problem(depth=2, algorithm="gd", X=[[1.0, 2.0]], y=[1], init=Init(scale=1.0))
    q = Problem(depth=2, algorithm="gd", X=[[1.0, 2.0, 3.0]], y=[1], init=Init(scale=1.0))
    with pytest.raises(ValueError, match="does not match"):
        derive(p).compile(problem=q)
    from sambias.symbolic import derive_flow
    with pytest.raises(ValueError, match="needs a Problem"):
        derive_flow(2, 2, 1, "gd", "exp").compile()
    with pytest.raises(ValueError, match="backend"):
        GeneratedField(p, backend="float32")


def test_numba_printing_is_scalar():
    """The numba form of a kernel (symbolic/compiled.py splices it into loops) prints constant
    outputs as floats, not as arrays shaped like an argument, and evaluates like the numpy form."""
    from sambias.symbolic.codegen import kernel_source, kernel_specs
    from sambias.symbolic.coordinate import coordinate_form
    spec = next(s for s in kernel_specs(coordinate_form(1, "gd", "exp")) if s.name == "dbeta")
    numba_src = kernel_source(spec, "numba")
    assert numba_src.startswith("@_njit\ndef dbeta(") and "float(1)" in numba_src and "_full" not in numba_src
    ns = {"_njit": lambda f: f}
    exec(compile(numba_src, "<numba-form>", "exec"), ns)   # noqa: S102 - printed by the package
    assert ns["dbeta"](0.7) == (1.0,)
    assert "_full(1, w_1_j)" in kernel_source(spec, "float64")
