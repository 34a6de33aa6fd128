"""Reference solutions: l2 / l1 max-margin against closed forms and planted solutions,
uniqueness of the l1 optimum, and the KKT test of min |beta|_{2/L}."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sambias.verify.references import kkt_check, l1_max_margin, l2_max_margin, quasi_norm_min


def planted_l2(rng, d, k, extra):
    """Data whose l2 max-margin is a chosen beta*: k active points a_i with <a_i, b> = 1,
    sum lambda_i a_i = b (lambda > 0), plus inactive points with margin > 1."""
    b = rng.normal(size=d)
    lam = rng.uniform(0.5, 2.0, size=k)
    lam *= (b @ b) / lam.sum()                       # sum lambda_i = |b|^2
    P = np.eye(d) - np.outer(b, b) / (b @ b)
    T = (P @ rng.normal(size=(d, k))).T              # directions orthogonal to b
    T[-1] = -(lam[:-1] @ T[:-1]) / lam[-1]           # sum lambda_i t_i = 0
    A = b / (b @ b) + T
    inactive = []
    while len(inactive) < extra:
        a = rng.normal(size=d) * 2
        if a @ b > 1.5:
            inactive.append(a)
    A = np.vstack([A] + inactive) if extra else A
    signs = rng.choice([-1.0, 1.0], size=A.shape[0])
    return A * signs[:, None], signs, b, lam


def test_l2_single_point_closed_form():
    x = np.array([3.0, -4.0, 12.0])
    r = l2_max_margin([x], [-1])
    assert np.allclose(r.beta, -x / (x @ x), atol=1e-15, rtol=1e-13)
    assert r.value == pytest.approx(1 / 13, rel=1e-13) and r.margin == pytest.approx(13.0, rel=1e-13)
    assert r.residual < 1e-13 and r.active == (0,)


@pytest.mark.parametrize("seed", range(6))
def test_l2_planted_solution_to_1e_9(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 6))
    k = int(rng.integers(1, d + 1))
    X, y, b, lam = planted_l2(rng, d, k, extra=int(rng.integers(0, 5)))
    r = l2_max_margin(X, y)
    assert np.linalg.norm(r.beta - b) <= 1e-9 * np.linalg.norm(b)
    assert np.allclose(r.multipliers[:k], lam, rtol=1e-7)
    assert set(r.active) == set(range(k))
    assert r.residual < 1e-10
    # direction and margin are consistent: min margin of the direction is 1/|b|
    assert np.min((y[:, None] * X) @ r.direction) == pytest.approx(1 / np.linalg.norm(b), rel=1e-10)


def test_l2_agrees_with_slsqp():
    from scipy.optimize import minimize

    rng = np.random.default_rng(7)
    X = rng.normal(size=(8, 3))
    y = np.sign(X @ np.array([1.0, -2.0, 0.5]))
    A = y[:, None] * X
    ref = l2_max_margin(X, y)
    res = minimize(lambda b: 0.5 * b @ b, x0=ref.beta * 1.3, jac=lambda b: b, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda b: A @ b - 1, "jac": lambda b: A}],
                   options={"ftol": 1e-14, "maxiter": 500})
    assert np.allclose(res.x, ref.beta, atol=1e-6)
    assert ref.value <= np.linalg.norm(res.x) + 1e-12


def test_l2_rejects_inseparable():
    with pytest.raises(ValueError, match="separable"):
        l2_max_margin([[1.0, 0.0], [1.0, 0.0]], [1, -1])


def test_l1_single_example_is_the_major_basis_vector_in_any_order():
    x = np.array([0.5, 1.0, 3.0, 2.0])
    r = l1_max_margin([x], [1])
    assert r.unique
    assert np.allclose(r.beta, [0, 0, 1 / 3, 0], atol=1e-12)
    assert r.value == pytest.approx(1 / 3, rel=1e-12)


def test_l1_non_unique_face_is_reported():
    r = l1_max_margin([[1.0, 1.0, 0.2]], [1])
    assert not r.unique
    assert np.allclose(r.face[:2], [[0.0, 1.0], [0.0, 1.0]], atol=1e-9)
    assert np.allclose(r.face[2], [0.0, 0.0], atol=1e-9)


def brute_force_l1(A):
    """min |b|_1 over vertices of {A b >= 1} intersected with each orthant."""
    n, d = A.shape
    best, arg = np.inf, None
    for signs in itertools.product((1.0, -1.0), repeat=d):
        G = np.vstack([A, np.diag(signs)])
        h = np.concatenate([np.ones(n), np.zeros(d)])
        for rows in itertools.combinations(range(n + d), d):
            M = G[list(rows)]
            if abs(np.linalg.det(M)) < 1e-12:
                continue
            v = np.linalg.solve(M, h[list(rows)])
            if np.all(G @ v >= h - 1e-9) and np.abs(v).sum() < best - 1e-12:
                best, arg = np.abs(v).sum(), v
    return best, arg


@pytest.mark.parametrize("seed", range(8))
def test_l1_matches_vertex_enumeration_and_polishes_to_1e_9(seed):
    rng = np.random.default_rng(100 + seed)
    n, d = int(rng.integers(2, 6)), int(rng.integers(2, 4))
    w = rng.normal(size=d)
    X = rng.normal(size=(n, d))
    y = np.sign(X @ w)
    r = l1_max_margin(X, y)
    best, arg = brute_force_l1(y[:, None] * X)
    assert r.value == pytest.approx(best, rel=1e-9)
    if r.unique:
        assert np.allclose(r.beta, arg, atol=1e-9 * max(1, np.abs(arg).max()))
        assert r.residual < 1e-8


def test_kkt_depth1_is_the_svm():
    X = np.array([[2.0, 1.0], [1.0, 3.0], [-1.0, -1.0], [-2.0, 0.5]])
    y = np.array([1, 1, -1, -1])
    svm = l2_max_margin(X, y)
    good = kkt_check(svm.direction * 7.0, X, y, depth=1, tol=1e-8)
    assert good.is_kkt and good.is_global and good.residual < 1e-10
    turned = svm.direction + 1e-3 * np.array([1.0, -1.0])
    bad = kkt_check(turned, X, y, depth=1, tol=1e-6)
    assert not bad.is_kkt and bad.residual > 1e-5


def test_kkt_depth2_is_the_l1_max_margin():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4, 3))
    y = np.sign(X @ rng.normal(size=3))
    ref = l1_max_margin(X, y)
    assert ref.unique
    r = kkt_check(ref.direction, X, y, depth=2, tol=1e-7)
    assert r.is_kkt and r.is_global
    # a vertex of the feasible set that is not optimal violates |A^T lambda| <= 1 or stationarity
    other = kkt_check([0.0, -1.0, 0.0], X, y, depth=2, tol=1e-7)
    assert not other.is_kkt


def test_kkt_depth3_single_example_names_the_kkt_point():
    x = np.array([1.0, 3.0, 2.0])
    # every basis vector is a KKT point of the non-convex problem; only the major one is global
    for k in range(3):
        r = kkt_check(np.eye(3)[k], [x], [1], depth=3)
        assert r.is_kkt and r.support == (k,)
        assert r.is_global == (k == 1)
        assert r.value == pytest.approx(1 / x[k])
    # the interior critical point beta_j ~ x_j^(1/(p-1)) is KKT, with the largest value
    p = 2 / 3
    interior = kkt_check(x ** (1 / (p - 1)), [x], [1], depth=3)
    assert interior.is_kkt and not interior.is_global and interior.support == (0, 1, 2)
    assert kkt_check([1.0, 1.0, 1.0], [x], [1], depth=3).residual > 0.1
    assert quasi_norm_min([x], [1], depth=3) == pytest.approx(1 / 3)
    assert not kkt_check([-1.0, 0.0, 0.0], [x], [1], depth=3).feasible


def slsqp_quasi_norm_min(A, depth, rng, starts=3):
    """Independent oracle for min |beta|_{2/L} s.t. A beta >= 1: in each orthant s write
    beta = s * w^L (w >= 0), so |beta|_{2/L}^{2/L} = sum w^2 is smooth, and run SLSQP from
    several random starts; the best value over orthants and starts."""
    from scipy.optimize import minimize

    n, d = A.shape
    best = np.inf
    for signs in itertools.product((1.0, -1.0), repeat=d):
        s = np.array(signs)
        cons = [{"type": "ineq", "fun": lambda w, s=s: A @ (s * w ** depth) - 1.0,
                 "jac": lambda w, s=s: A * (s * depth * w ** (depth - 1))[None, :]}]
        for _ in range(starts):
            w0 = rng.uniform(0.2, 2.0, size=d)
            res = minimize(lambda w: w @ w, w0, jac=lambda w: 2 * w, constraints=cons,
                           bounds=[(0, None)] * d, method="SLSQP", options={"ftol": 1e-12, "maxiter": 500})
            if res.success and np.all(A @ (s * res.x ** depth) >= 1 - 1e-7):
                best = min(best, float(res.x @ res.x) ** (depth / 2))
    return best


@pytest.mark.parametrize("seed", range(3))
def test_quasi_norm_min_matches_multistart_slsqp_where_p_matters(seed):
    rng = np.random.default_rng(500 + seed)
    found = 0
    while found < 1:
        n, d = int(rng.integers(2, 5)), 3
        X = rng.normal(size=(n, d))
        y = np.sign(X @ rng.normal(size=d))
        A = y[:, None] * X
        q = quasi_norm_min(X, y, depth=3)
        # p matters: the l1 optimum is not the 2/3-quasi-norm optimum (its quasi-norm is larger)
        b1 = l1_max_margin(X, y).beta
        q_of_l1 = float(np.sum(np.abs(b1) ** (2 / 3)) ** 1.5)
        if q_of_l1 < q * (1 + 1e-3):
            continue
        found += 1
        oracle = slsqp_quasi_norm_min(A, 3, rng)
        assert q == pytest.approx(oracle, rel=1e-6)
        if seed == 0:  # depth 4 too (p = 1/2)
            assert quasi_norm_min(X, y, depth=4) == pytest.approx(slsqp_quasi_norm_min(A, 4, rng), rel=1e-6)
