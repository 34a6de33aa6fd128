"""Large problems (issue 12.5): the data couplings without n x n or (L*d)^2 arrays.

The matrix-free Jacobian-vector product and the O(n d) data curvature must equal the dense
path and an independent oracle on small problems, and stay within O(n d + L d) memory on
large ones."""

from __future__ import annotations

import tracemalloc
import zlib

import numpy as np
import pytest
import sympy as sp

from sambias import Init, Problem
from sambias.errors import ProblemError
from sambias.symbolic import Algorithm, GeneratedField, register_algorithm, unregister_algorithm
from sambias.symbolic.large import DataCurvature, data_curvature, rescaled_jac_operator
from tests.oracles.field import NumpyField

ALGORITHMS = ["gd", "l2-sam", "linf-sam", "usam", "asam"]


def _problem(rng, L, d, n, algorithm, loss="exp", rho=0.3):
    X = rng.normal(size=(n, d))
    y = np.sign(X @ rng.normal(size=d))
    y[y == 0] = 1.0
    layers = rng.uniform(0.2, 1.0, size=(L, d)) * rng.choice([-1.0, 1.0], size=(L, d))
    return Problem(depth=L, algorithm=algorithm, rho=rho, loss=loss, X=X, y=y, init=Init(layers=layers.tolist()))


def _old_dg_dbeta(A, q, dphi):
    """The formula this replaces, with its n x n middle factor (the reference)."""
    return -(A.T @ ((np.diag(q) - np.outer(q, q)) * dphi[None, :]) @ A)


@pytest.mark.parametrize("loss", ["exp", "logistic"])
def test_data_curvature_equals_the_n_by_n_formula(loss):
    rng = np.random.default_rng(1)
    p = _problem(rng, 2, 6, 9, "gd", loss)
    f = GeneratedField(p)
    beta = rng.normal(size=6)
    z, _, q, _ = f._coupling(beta)
    (dphi,) = f.kernels.dphi(z)
    ref = _old_dg_dbeta(f.A, q, dphi)
    M = DataCurvature(f.A, q, q * dphi)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(M.todense(), ref, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(f._dg_dbeta(z, q), ref, rtol=0, atol=1e-13 * scale)
    v, u, V = rng.normal(size=6), rng.normal(size=6), rng.normal(size=(6, 3))
    np.testing.assert_allclose(M @ v, ref @ v, rtol=0, atol=1e-12 * np.abs(ref @ v).max())
    np.testing.assert_allclose(u @ M, u @ ref, rtol=0, atol=1e-12 * np.abs(u @ ref).max())
    np.testing.assert_allclose(M @ V, ref @ V, rtol=0, atol=1e-12 * np.abs(ref @ V).max())
    np.testing.assert_allclose(V.T @ M, V.T @ ref, rtol=0, atol=1e-12 * np.abs(V.T @ ref).max())
    # negative control: the transpose is a different operator (M is not symmetric for the
    # logistic loss; for exp it is, so use a shifted curvature there)
    wrong = DataCurvature(f.A, q, q * (dphi + 0.5))
    assert np.abs(wrong @ v - ref @ v).max() > 1e-3 * np.abs(ref @ v).max()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("loss", ["exp", "logistic"])
def test_matrix_free_jvp_equals_the_dense_jacobian_and_the_oracle(algorithm, loss):
    rng = np.random.default_rng(zlib.crc32(f"{algorithm}/{loss}".encode()))   # str hash() is salted
    for L, d, n in [(1, 4, 3), (2, 5, 1), (2, 5, 7), (3, 3, 4)]:
        p = _problem(rng, L, d, n, algorithm, loss)
        f = GeneratedField(p)
        w = p.initial_weights().ravel()
        J = f.rescaled_jac(w)
        ref = NumpyField(p).rescaled_jac(w) if algorithm != "asam" else None   # the oracle has no ASAM
        for _ in range(2):
            v = rng.normal(size=L * d)
            jv = f.rescaled_jvp(w, v)
            scale = (np.abs(J) @ np.abs(v)).max()          # the size of the terms summed: rounding's scale
            np.testing.assert_allclose(jv, J @ v, rtol=0, atol=1e-12 * scale)
            if ref is not None:
                np.testing.assert_allclose(jv, ref @ v, rtol=0, atol=1e-10 * scale)
        # the operator form is the same product; a wrong direction is told apart
        op = rescaled_jac_operator(f, w)
        np.testing.assert_allclose(op @ v, J @ v, rtol=0, atol=1e-12 * scale)
        assert np.abs(f.rescaled_jvp(w, v[::-1]) - J @ v).max() > 1e-6 * scale


def test_matrix_free_jvp_holds_linf_signs_fixed_like_the_dense_jacobian():
    rng = np.random.default_rng(5)
    p = _problem(rng, 2, 4, 5, "linf-sam")
    f = GeneratedField(p)
    w = p.initial_weights().ravel()
    sigma = -np.sign(f.normalised_gradient(w))         # the opposite pattern: a different field
    v = rng.normal(size=w.size)
    J = f.rescaled_jac(w, sigma)
    np.testing.assert_allclose(f.rescaled_jvp(w, v, sigma), J @ v, rtol=0, atol=1e-12 * np.abs(J @ v).max())
    assert np.abs(f.rescaled_jvp(w, v) - J @ v).max() > 1e-6 * np.abs(J @ v).max()


@pytest.mark.slow   # ~30 s: the flat kernels of a new algorithm are derived from scratch
def test_matrix_free_jvp_on_the_general_flat_path():
    def l2_by_pairs(g, w, rho):   # no per-coordinate structure: the general flat kernels
        n = g.shape[0]
        pairs = sp.Add(*[g[i] * g[k] for i in range(n) for k in range(i + 1, n)])
        return rho * g / sp.sqrt(sp.Add(*g) ** 2 - 2 * pairs)

    register_algorithm(Algorithm("test-large-pairs", l2_by_pairs))
    try:
        rng = np.random.default_rng(3)
        p = _problem(rng, 2, 3, 4, "test-large-pairs", "logistic")
        f = GeneratedField(p)
        assert f.flat is not None
        w = p.initial_weights().ravel()
        J = f.rescaled_jac(w)
        v = rng.normal(size=w.size)
        np.testing.assert_allclose(f.rescaled_jvp(w, v), J @ v, rtol=0, atol=1e-12 * np.abs(J @ v).max())
        # the same flow as l2-SAM: the l2-SAM field's dense Jacobian is an independent check
        J2 = GeneratedField(p.replace(algorithm="l2-sam")).rescaled_jac(w)
        np.testing.assert_allclose(f.rescaled_jvp(w, v), J2 @ v, rtol=0, atol=1e-9 * np.abs(J @ v).max())
    finally:
        unregister_algorithm("test-large-pairs")


def test_right_hand_side_with_the_operator_equals_the_oracle():
    """rescaled_with_grad now pulls d log S back through M as an operator: still the oracle's."""
    rng = np.random.default_rng(11)
    for algorithm in ("l2-sam", "usam", "linf-sam"):
        p = _problem(rng, 2, 5, 8, algorithm, "logistic")
        f, ref = GeneratedField(p), NumpyField(p)
        w = p.initial_weights().ravel()
        dw, ls, grad = f.rescaled_with_grad(w)
        dw_r, ls_r, grad_r = ref.rescaled_with_grad(w)
        np.testing.assert_allclose(dw, dw_r, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(grad, grad_r, rtol=1e-10, atol=1e-12 * np.abs(grad_r).max())
        assert ls == pytest.approx(ls_r, rel=1e-12)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_problem_kernels_stay_within_o_nd_memory():
    """n = 3000, d = 400, L = 2, l2-SAM: the right-hand side and a Jacobian-vector product
    allocate vectors only -- far below one n x d array (9.6 MB), let alone n x n (72 MB) --
    while the dense Jacobian (the negative control) allocates (L*d)^2-sized arrays."""
    rng = np.random.default_rng(0)
    n, d, L = 3000, 400, 2
    X = rng.normal(size=(n, d)) * 0.1
    y = np.sign(X[:, 0] + 1e-3)
    X[:, 0] = y * (np.abs(X[:, 0]) + 0.5)                 # separable through coordinate 0
    p = Problem(depth=L, algorithm="l2-sam", rho=0.1, X=X, y=y, init=Init(scale=0.5))
    f = GeneratedField(p)
    w = p.initial_weights().ravel()
    v = rng.normal(size=w.size)
    f.rescaled_with_grad(w), f.rescaled_jvp(w, v)         # warm caches outside the measurement
    nd_bytes = n * d * 8
    assert _peak_bytes(lambda: f.rescaled_with_grad(w)) < nd_bytes / 8
    assert _peak_bytes(lambda: f.rescaled_jvp(w, v)) < nd_bytes / 8
    assert _peak_bytes(lambda: f.rescaled_jac(w)) > (L * d) ** 2 * 8


def test_size_limits_admit_the_large_problems_and_name_the_next_ones():
    ok = Problem(depth=6, algorithm="gd", X=np.ones((1, 1000)), y=[1], init=Init(scale=0.1))
    assert ok.depth * ok.dim == 6000
    with pytest.raises(ProblemError, match=r"depth \* d = 7 \* 1000 weights is above the limit of 6000"):
        Problem(depth=7, algorithm="gd", X=np.ones((1, 1000)), y=[1], init=Init(scale=0.1))
    with pytest.raises(ProblemError, match=r"X: 10001000 numbers is above the limit of 10000000 \(n\*d\)"):
        Problem(depth=1, algorithm="gd", X=np.ones((10_001, 1000)), y=np.ones(10_001), init=Init(scale=0.1))



def _uncentred_rmatvec(self: DataCurvature, u: np.ndarray) -> np.ndarray:
    """``u @ M`` in the raw form ``(u.a) b - ((A u) c) A`` -- the form that lost the product."""
    return (self.c @ self.A) * float(u @ self.a) - ((self.A @ u) * self.c) @ self.A


def _log_speed_gradient_error(f: GeneratedField, w: np.ndarray) -> float:
    """Largest relative gap between ``d log S(W~)/dW`` and central differences at ``w``."""
    grad = f.rescaled_with_grad(w)[2]
    h = 1e-6
    fd = np.array([(f.rescaled_with_grad(w * (1 + h * e))[1] - f.rescaled_with_grad(w * (1 - h * e))[1])
                   / (2 * h * w[i]) for i, e in enumerate(np.eye(w.size))])
    return float(np.max(np.abs(grad - fd)) / np.max(np.abs(fd)))


@pytest.mark.parametrize("algorithm", ["l2-sam", "asam"])
def test_saturated_softmax_keeps_the_log_speed_gradient(algorithm, monkeypatch):
    """Late in a run q is one-hot to rounding and M is tiny next to |A|^2: d log S(W~)/dW must
    still match central differences (the uncentred operator returned noise up to 1e7 times
    the gradient; found by comparing with the compiled kernels)."""
    monkeypatch.setenv("SAMBIAS_JIT", "0")
    rng = np.random.default_rng(0)
    points = []
    for _ in range(12):
        X = rng.uniform(0.2, 3.0, size=(2, 3))
        p = Problem(depth=2, algorithm=algorithm, rho=0.5, X=X, y=[1, 1], init=Init(scale=0.2))
        w = rng.uniform(0.3, 1.5, size=6) * 10.0 ** rng.uniform(9, 40)
        points.append((GeneratedField(p), w))
    errors = [_log_speed_gradient_error(f, w) for f, w in points]
    assert max(errors) < 1e-4, errors
    # negative control: the raw (uncentred) product on the same points is far off somewhere
    monkeypatch.setattr(DataCurvature, "rmatvec", _uncentred_rmatvec)
    assert max(_log_speed_gradient_error(f, w) for f, w in points) > 1e-2


@pytest.mark.parametrize("algorithm", ["l2-sam", "asam", "usam"])
@pytest.mark.parametrize("loss", ["exp", "logistic"])
def test_right_hand_side_makes_one_product_with_m(algorithm, loss, monkeypatch):
    """d log S(W~(W))/dW folds every product with M (the g-term and each global sum's) into one
    row vector -- one ``u @ M`` per right-hand side, O(n d) each -- and still equals the oracle
    (ASAM, which the oracle lacks: central differences)."""
    monkeypatch.setenv("SAMBIAS_JIT", "0")
    rng = np.random.default_rng(zlib.crc32(f"one-pass/{algorithm}/{loss}".encode()))
    p = _problem(rng, 2, 5, 8, algorithm, loss)
    f = GeneratedField(p)
    w = p.initial_weights().ravel()
    calls = []
    rmatvec = DataCurvature.rmatvec
    monkeypatch.setattr(DataCurvature, "rmatvec", lambda self, u: calls.append(np.ndim(u)) or rmatvec(self, u))
    dw, ls, grad = f.rescaled_with_grad(w)
    assert calls == [1]
    if algorithm != "asam":
        dw_r, ls_r, grad_r = NumpyField(p).rescaled_with_grad(w)
        np.testing.assert_allclose(dw, dw_r, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(grad, grad_r, rtol=1e-10, atol=1e-12 * np.abs(grad_r).max())
    assert _log_speed_gradient_error(f, w) < 1e-6


def test_exp_loss_shortcuts_are_exact_and_conditional(monkeypatch):
    """With phi' constant (exp loss) the data curvature's e is 0 and d log S/d beta is -phi' g:
    both skip a pass over A.  Negative control: the same shortcut forced on the logistic loss
    (phi' varies) gives a wrong gradient."""
    monkeypatch.setenv("SAMBIAS_JIT", "0")
    rng = np.random.default_rng(21)
    p = _problem(rng, 2, 5, 8, "l2-sam", "exp")
    f = GeneratedField(p)
    beta = rng.normal(size=5)
    z, _, q, g = f._coupling(beta)
    (dphi,) = f.kernels.dphi(z)
    M = data_curvature(f, z, q, g)
    full = DataCurvature(f.A, q, q * dphi)                       # e computed from the data
    assert np.all(M.e == 0.0) and np.abs(full.e).max() < 1e-14 * np.abs(f.A).max()
    np.testing.assert_allclose(f._dlogS_dbeta(z, q, g), (q * dphi) @ f.A, rtol=1e-14, atol=0)

    # negative control: the logistic loss (phi' varies) -- both shortcuts would be wrong there,
    # and the field does not take them
    fl = GeneratedField(p.replace(loss="logistic"))
    z, _, q, g = fl._coupling(beta)
    (dphi,) = fl.kernels.dphi(z)
    h = (q * dphi) @ fl.A
    np.testing.assert_allclose(fl._dlogS_dbeta(z, q, g), h, rtol=1e-14, atol=0)
    assert np.abs(-dphi[0] * g - h).max() > 1e-3 * np.abs(h).max()
    full = DataCurvature(fl.A, q, q * dphi)
    np.testing.assert_allclose(data_curvature(fl, z, q, g).e, full.e, rtol=1e-12, atol=1e-15)
    assert np.abs(full.e).max() > 1e-3
    v = rng.normal(size=5)
    zero_e = DataCurvature(fl.A, q, q * dphi, e=np.zeros(5))
    assert np.abs(zero_e @ v - full @ v).max() > 1e-3 * np.abs(full @ v).max()


def test_large_data_evaluates_on_one_blas_thread_and_restores_it(monkeypatch):
    """n d >= SINGLE_THREAD_ND: the field's passes over A run on one BLAS thread (threads only
    wait for each other on memory-bound products when the cores are shared), the configured
    count is restored afterwards, and the values do not depend on it.  Negative controls:
    ``SAMBIAS_BLAS_THREADS=all`` and small data leave BLAS alone."""
    from sambias.symbolic import large

    monkeypatch.setenv("SAMBIAS_JIT", "0")
    libs = large._blas_libs()
    if not libs:
        pytest.skip("threadpoolctl finds no BLAS library to control")
    configured = [lib.num_threads for lib, _ in libs]
    rng = np.random.default_rng(2)
    p = _problem(rng, 2, 50, 400, "l2-sam")                 # n d = 20000
    seen = []
    coupling = GeneratedField._coupling

    def spy(self, *args, **kwargs):
        seen.append(max(lib.num_threads for lib, _ in libs))
        return coupling(self, *args, **kwargs)

    monkeypatch.setattr(GeneratedField, "_coupling", spy)
    w = p.initial_weights().ravel()
    f = GeneratedField(p)
    one = f.rescaled_with_grad(w)
    assert seen and set(seen) == {1}
    assert [lib.num_threads for lib, _ in libs] == configured
    monkeypatch.setenv("SAMBIAS_BLAS_THREADS", "all")
    seen.clear()
    f_all = GeneratedField(p)
    assert f_all._blas is False
    both = f_all.rescaled_with_grad(w)
    assert set(seen) == {max(configured)}
    for a, b in zip(one, both):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14 * np.abs(np.asarray(b)).max())
    monkeypatch.delenv("SAMBIAS_BLAS_THREADS")
    assert GeneratedField(_problem(rng, 2, 5, 8, "l2-sam"))._blas is False      # n d = 40
    # the context itself: nested, restored, None = the configured count
    with large.blas_threads(1):
        assert {lib.num_threads for lib, _ in libs} == {1}
        with large.blas_threads(None):
            assert [lib.num_threads for lib, _ in libs] == [d for _, d in libs]
        assert {lib.num_threads for lib, _ in libs} == {1}
    assert [lib.num_threads for lib, _ in libs] == configured
