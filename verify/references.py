"""Reference solutions the limits are compared against.

* :func:`l2_max_margin` -- the hard-margin SVM ``min |beta|_2 s.t. y_i <beta, x_i> >= 1``,
  solved *exactly* as a least-distance problem through Lawson-Hanson non-negative least
  squares (a finite active-set method), then polished on its active set;
* :func:`l1_max_margin` -- ``min |beta|_1`` under the same constraints, an LP (HiGHS),
  with a test of uniqueness: the range of every coordinate over the LP's optimal face;
* :func:`kkt_check` -- first-order KKT residual of ``min |beta|_{2/L} s.t. margins >= 1``
  at a candidate direction (for ``L >= 3`` the problem is not convex and has many KKT
  points; the report says which one: its support, its value, and whether it is global).

>>> r = l2_max_margin([[3.0, 4.0]], [1])
>>> r.beta.round(6).tolist(), round(r.margin, 6)
([0.12, 0.16], 5.0)
>>> s = l1_max_margin([[3.0, 2.0, 1.0]], [1])
>>> s.beta.round(9).tolist(), s.unique
([0.333333333, 0.0, 0.0], True)
>>> kkt_check([1.0, 0.0, 0.0], [[3.0, 2.0, 1.0]], [1], depth=3).is_kkt
True
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

# HiGHS defaults (1e-7) are too coarse for a reference that must be good to ~1e-9.
_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def _signed(X, y) -> np.ndarray:
    X = np.atleast_2d(np.asarray(X, float))
    y = np.asarray(y, float).reshape(-1)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    return y[:, None] * X


@dataclass(frozen=True)
class MaxMargin:
    """A max-margin solution.

    ``beta`` has minimum margin 1 (it is the optimiser itself), ``direction`` is
    ``beta / |beta|_2``; ``value`` is the optimal norm; ``margin`` the normalised margin
    ``1 / value`` of the direction in that norm; ``multipliers`` the dual variables
    (``lambda_i >= 0``, one per example), ``active`` the examples with margin 1.
    ``unique`` says whether the optimiser is unique; ``face`` (``d x 2``) gives, for the
    l1 problem, the range of each coordinate over the optimal face (a point when unique).
    ``residual`` is the worst KKT violation of the returned point (primal, dual,
    complementarity and stationarity, scaled to the solution).
    """

    norm: str
    beta: np.ndarray
    value: float
    multipliers: np.ndarray
    active: tuple[int, ...]
    unique: bool
    residual: float
    method: str
    face: np.ndarray | None = None

    @property
    def direction(self) -> np.ndarray:
        return self.beta / np.linalg.norm(self.beta)

    @property
    def margin(self) -> float:
        return 1.0 / self.value

    def to_dict(self) -> dict:
        return {"norm": self.norm, "beta": self.beta.tolist(), "direction": self.direction.tolist(),
                "value": self.value, "active": list(self.active), "unique": self.unique,
                "residual": self.residual, "method": self.method,
                "face": None if self.face is None else self.face.tolist()}


# --- l2 ---------------------------------------------------------------------------
def l2_max_margin(X, y) -> MaxMargin:
    """The hard-margin SVM without bias: ``argmin |beta|_2 s.t. y_i <beta, x_i> >= 1``.

    Least-distance programming (Lawson & Hanson, ch. 23): with ``G = A = y * X`` and
    ``h = 1``, solve the NNLS problem ``min |E u - f|``, ``u >= 0``, ``E = [G^T; h^T]``,
    ``f = e_{d+1}``; then ``beta = -r[:d] / r[d]`` with ``r = E u - f``.  The active set
    read off ``u`` is then solved exactly (``beta = A_S^T mu``, ``A_S A_S^T mu = 1``).

    >>> l2_max_margin([[1.0, 0.0], [0.0, 1.0]], [1, 1]).beta.tolist()
    [1.0, 1.0]
    """
    from scipy.optimize import nnls

    A = _signed(X, y)
    n, d = A.shape
    E = np.vstack([A.T, np.ones((1, n))])
    f = np.zeros(d + 1)
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * (n + d + 1))
    r = E @ u - f
    if abs(r[-1]) < 1e-14:
        raise ValueError("data not linearly separable through the origin (l2 max-margin infeasible)")
    beta = -r[:d] / r[-1]
    lam = u / abs(r[-1])  # the multipliers of min 1/2 |beta|^2: beta = A^T lam
    method = "lawson-hanson LDP"
    polished = _polish_l2(A, beta, lam)
    if polished is not None:
        beta, lam = polished
        method += " + active-set solve"
    active = tuple(int(i) for i in np.flatnonzero(lam > 1e-12 * max(1.0, lam.max())))
    res = _l2_kkt_residual(A, beta, lam)
    return MaxMargin("l2", beta, float(np.linalg.norm(beta)), lam, active, True, res, method)


def _polish_l2(A: np.ndarray, beta: np.ndarray, lam: np.ndarray):
    z = A @ beta
    scale = max(1.0, float(np.max(lam)))
    support = np.flatnonzero((lam > 1e-10 * scale) | (np.abs(z - 1.0) < 1e-9))
    if support.size == 0:
        return None
    AS = A[support]
    mu, *_ = np.linalg.lstsq(AS @ AS.T, np.ones(support.size), rcond=None)
    if np.any(mu < -1e-12 * max(1.0, np.abs(mu).max())):
        return None
    lam2 = np.zeros_like(lam)
    lam2[support] = np.maximum(mu, 0.0)
    beta2 = AS.T @ mu
    if _l2_kkt_residual(A, beta2, lam2) <= _l2_kkt_residual(A, beta, lam):
        return beta2, lam2
    return None


def _l2_kkt_residual(A: np.ndarray, beta: np.ndarray, lam: np.ndarray) -> float:
    z = A @ beta
    nb = max(float(np.linalg.norm(beta)), 1e-300)
    primal = float(np.max(np.maximum(1.0 - z, 0.0)))
    dual = float(np.max(np.maximum(-lam, 0.0))) / max(1.0, float(np.abs(lam).max()))
    station = float(np.linalg.norm(beta - A.T @ lam)) / nb
    comp = float(np.max(np.abs(lam * (z - 1.0)))) / max(1.0, float(np.abs(lam).max()))
    return max(primal, dual, station, comp)


# --- l1 ---------------------------------------------------------------------------
def l1_max_margin(X, y, *, face_tol: float = 1e-7) -> MaxMargin:
    """``argmin |beta|_1 s.t. y_i <beta, x_i> >= 1`` (HiGHS) and whether it is unique.

    The minimiser need not be unique.  Uniqueness is decided on the optimal face
    ``{A beta >= 1, |beta|_1 <= v*}``: each coordinate is minimised and maximised over it
    (``2d`` LPs); ``face[j] = (min, max)``.  The solution counts as unique when every range
    is shorter than ``face_tol * max(1, |beta|_inf)``; then it is polished on its support
    and active set by a linear solve.

    >>> r = l1_max_margin([[1.0, 1.0]], [1])      # every beta >= 0 with sum 1 is optimal
    >>> r.unique, r.face[:, 1].round(6).tolist()    # each coordinate ranges over [0, 1]
    (False, [1.0, 1.0])
    """
    from scipy.optimize import linprog

    A = _signed(X, y)
    n, d = A.shape
    A_split = np.hstack([A, -A])
    res = linprog(np.ones(2 * d), A_ub=-A_split, b_ub=-np.ones(n), bounds=[(0, None)] * (2 * d),
                  method="highs", options=_HIGHS)
    if res.status != 0:
        raise ValueError(f"l1 max-margin LP failed: {res.message}")
    beta = res.x[:d] - res.x[d:]
    value = float(np.abs(beta).sum())
    lam = np.maximum(-np.asarray(res.ineqlin.marginals, float), 0.0)
    # The optimal face: the same constraints plus sum(beta+ + beta-) <= v*.
    A_face = np.vstack([-A_split, np.ones((1, 2 * d))])
    b_face = np.concatenate([-np.ones(n), [value * (1 + 1e-10) + 1e-13]])
    face = np.zeros((d, 2))
    for j in range(d):
        c = np.zeros(2 * d)
        c[j], c[d + j] = 1.0, -1.0
        lo = linprog(c, A_ub=A_face, b_ub=b_face, bounds=[(0, None)] * (2 * d), method="highs",
                     options=_HIGHS)
        hi = linprog(-c, A_ub=A_face, b_ub=b_face, bounds=[(0, None)] * (2 * d), method="highs",
                     options=_HIGHS)
        face[j] = (lo.fun if lo.status == 0 else beta[j], -hi.fun if hi.status == 0 else beta[j])
    face = face + 0.0  # no -0.0 in reports
    width = float(np.max(face[:, 1] - face[:, 0]))
    unique = width <= face_tol * max(1.0, float(np.abs(beta).max()))
    method = "HiGHS LP"
    if unique:
        polished = _polish_l1(A, beta)
        if polished is not None:
            beta = polished
            value = float(np.abs(beta).sum())
            method += " + support solve"
    active = tuple(int(i) for i in np.flatnonzero(np.abs(A @ beta - 1.0) <= 1e-7))
    res_kkt = _l1_kkt_residual(A, beta, lam)
    return MaxMargin("l1", beta, value, lam, active, bool(unique), res_kkt, method, face)


def _polish_l1(A: np.ndarray, beta: np.ndarray) -> np.ndarray | None:
    scale = float(np.abs(beta).max())
    S = np.flatnonzero(np.abs(beta) > 1e-8 * scale)
    T = np.flatnonzero(np.abs(A @ beta - 1.0) <= 1e-7)
    if S.size == 0 or T.size < S.size:
        return None
    M = A[np.ix_(T, S)]
    if np.linalg.matrix_rank(M) < S.size:
        return None
    sol, *_ = np.linalg.lstsq(M, np.ones(T.size), rcond=None)
    out = np.zeros_like(beta)
    out[S] = sol
    if np.any(np.sign(sol) != np.sign(beta[S])) or np.min(A @ out) < 1.0 - 1e-12:
        return None
    if np.abs(out).sum() > np.abs(beta).sum() + 1e-9 * scale:
        return None
    return out


def _l1_kkt_residual(A: np.ndarray, beta: np.ndarray, lam: np.ndarray) -> float:
    z = A @ beta
    g = A.T @ lam
    scale = max(float(np.abs(beta).max()), 1e-300)
    S = np.abs(beta) > 1e-8 * scale
    primal = float(np.max(np.maximum(1.0 - z, 0.0)))
    station = float(np.max(np.abs(g[S] - np.sign(beta[S])))) if S.any() else 0.0
    off = float(np.max(np.maximum(np.abs(g[~S]) - 1.0, 0.0))) if (~S).any() else 0.0
    comp = float(np.max(np.abs(lam * (z - 1.0)))) / max(1.0, float(lam.max()))
    return max(primal, station, off, comp)


# --- KKT points of min |beta|_{2/L} -------------------------------------------------
@dataclass(frozen=True)
class KKTReport:
    """First-order KKT test of ``min |beta|_{2/L} s.t. y_i <beta, x_i> >= 1`` at a direction.

    The candidate is scaled to unit minimum margin (``beta``).  ``residual`` is the
    relative stationarity residual ``|A_T,S^T lambda - grad_S| / |grad_S|`` with
    ``lambda >= 0`` found by NNLS over the active constraints ``T`` (margins within
    ``active_tol`` of 1) on the support ``S`` of beta; for ``L = 2`` the subgradient
    condition ``|A^T lambda|_j <= 1`` off the support is added (``off_support``); for
    ``L = 1`` the whole of ``R^d`` is the support.  ``value`` is ``|beta|_{2/L}``;
    ``global_value`` the smallest value over all feasible points (exact for ``L <= 2``,
    by vertex enumeration for ``L >= 3`` and small problems, ``nan`` if too large), and
    ``is_global`` whether this KKT point attains it.
    """

    depth: int
    beta: np.ndarray
    support: tuple[int, ...]
    active: tuple[int, ...]
    multipliers: np.ndarray
    residual: float
    off_support: float
    value: float
    global_value: float
    tol: float
    feasible: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_kkt(self) -> bool:
        return self.feasible and max(self.residual, self.off_support) <= self.tol

    @property
    def is_global(self) -> bool:
        if not self.is_kkt or math.isnan(self.global_value):
            return False
        # |beta|_p with p < 1 is not Lipschitz at 0: a coordinate of size e on its way out
        # adds ~e^p to the value, so allow a few tol of slack (not more: KKT points of a
        # small problem differ in value by a few per cent, here 4 %)
        return self.value <= self.global_value * (1 + min(3 * self.tol, 1e3 * self.tol)) + 1e-12

    def describe(self) -> str:
        """One line: which KKT point this is."""
        if not self.feasible:
            return "not a feasible direction (some margin <= 0)"
        kind = "KKT point" if self.is_kkt else "not a KKT point"
        where = ("global minimiser" if self.is_global else
                 "value unknown against the global minimum" if math.isnan(self.global_value) else
                 f"not global (value {self.value:.6g} > {self.global_value:.6g})")
        return (f"{kind} of min |beta|_{{2/{self.depth}}} (residual {max(self.residual, self.off_support):.2e}), "
                f"support {list(self.support)}, {where}")

    def to_dict(self) -> dict:
        return {"depth": self.depth, "beta": self.beta.tolist(), "support": list(self.support),
                "active": list(self.active), "multipliers": self.multipliers.tolist(),
                "residual": self.residual, "off_support": self.off_support, "value": self.value,
                "global_value": self.global_value, "tol": self.tol, "is_kkt": self.is_kkt,
                "is_global": self.is_global, "feasible": self.feasible, "description": self.describe()}


def kkt_check(direction, X, y, depth: int, *, tol: float = 1e-6, active_tol: float | None = None,
              support_tol: float | None = None, complementarity: bool = False, weighted: bool = False,
              max_vertices: int = 200_000) -> KKTReport:
    """KKT residual of ``min |beta|_{2/L} s.t. margins >= 1`` at ``direction``.

    ``active_tol`` (relative margin slack counted as active) and ``support_tol``
    (relative size counted as support) default to ``10 tol``, because a direction
    measured on a trajectory is only as accurate as its horizon allows.  With
    ``complementarity=True`` no active set is fixed: every constraint may take a
    multiplier at the price ``lambda_i (z_i - 1)`` (added to the residual), the usual
    KKT residual for points that are only approximately optimal.  ``weighted=True``
    (implies complementarity) tests stationarity multiplied by ``|beta_j|`` on every
    coordinate, so no support has to be guessed on a finite-time direction; for ``L = 2``
    the condition ``|A^T lambda|_j <= 1`` off the support is still added.

    >>> kkt_check([0.6, 0.8], [[3.0, 4.0]], [1], depth=1).is_kkt       # x / |x|: the SVM
    True
    >>> kkt_check([1.0, 0.0], [[3.0, 4.0]], [1], depth=1).is_kkt
    False
    >>> r = kkt_check([1.0, 0.0, 0.0], [[3.0, 2.0, 1.0]], [1], depth=3)
    >>> r.is_kkt, r.is_global      # every e_k is a KKT point for L = 3; only e_0 is global
    (True, True)
    >>> kkt_check([0.0, 1.0, 0.0], [[3.0, 2.0, 1.0]], [1], depth=3).describe()[:40]
    'KKT point of min |beta|_{2/3} (residual '
    """
    from scipy.optimize import nnls

    if depth < 1:
        raise ValueError("depth must be >= 1")
    A = _signed(X, y)
    b = np.asarray(direction, float).reshape(-1)
    active_tol = max(10 * tol, 1e-9) if active_tol is None else active_tol
    support_tol = max(10 * tol, 1e-9) if support_tol is None else support_tol
    z = A @ b
    p = 2.0 / depth
    gval = _global_value(A, depth, max_vertices)
    if z.min() <= 0:
        return KKTReport(depth, b, (), (), np.zeros(A.shape[0]), math.inf, math.inf, math.inf, gval, tol,
                         feasible=False)
    beta = b / z.min()
    z = A @ beta
    T = np.flatnonzero(z <= 1.0 + active_tol)
    amax = float(np.abs(beta).max())
    if depth == 1:
        S = np.arange(beta.size)
    else:
        S = np.flatnonzero(np.abs(beta) > support_tol * amax)
    grad = np.zeros_like(beta)
    with np.errstate(divide="ignore"):
        grad[S] = p * np.abs(beta[S]) ** (p - 1.0) * np.sign(beta[S])
    gnorm = max(float(np.linalg.norm(grad[S])), 1e-300)
    if weighted:
        # Stationarity times |beta_j|: g_j |beta_j| = p |beta_j|^p sign(beta_j) for every j
        # (the parameter-space KKT condition of the network).  No support has to be chosen:
        # a coordinate on its way to 0 contributes its own (vanishing) size.
        D = np.abs(beta)
        target = p * D ** p * np.sign(beta)
        scale = max(float(np.linalg.norm(target)), 1e-300)
        AD = (A * D[None, :]).T
        weight = scale / max(float(np.linalg.norm(AD)), 1e-300)
        M = np.vstack([AD, np.diag(np.maximum(z - 1.0, 0.0)) * weight])
        rhs = np.concatenate([target, np.zeros(A.shape[0])])
        lam, rnorm = nnls(M, rhs, maxiter=50 * (M.shape[0] + M.shape[1] + 1))
        T = np.flatnonzero((lam > 1e-9 * max(float(lam.max()), 1e-300)) | (z <= 1.0 + active_tol))
        gnorm = scale
    elif complementarity:
        # Every constraint may carry a multiplier, at the price lambda_i (z_i - 1): the
        # combined residual is stationarity and complementarity at once, so a constraint
        # that is nearly active on a finite-time direction neither counts fully nor not at all.
        weight = gnorm / max(float(np.linalg.norm(A[:, S])), 1e-300)
        M = np.vstack([A[:, S].T, np.diag(np.maximum(z - 1.0, 0.0)) * weight])
        rhs = np.concatenate([grad[S], np.zeros(A.shape[0])])
        lam, rnorm = nnls(M, rhs, maxiter=50 * (M.shape[0] + M.shape[1] + 1))
        T = np.flatnonzero((lam > 1e-9 * max(float(lam.max()), 1e-300)) | (z <= 1.0 + active_tol))
    else:
        M = A[np.ix_(T, S)].T  # |S| x |T|
        lam_T, rnorm = nnls(M, grad[S], maxiter=50 * (M.shape[0] + M.shape[1] + 1))
        lam = np.zeros(A.shape[0])
        lam[T] = lam_T
    residual = float(rnorm / gnorm)
    off = 0.0
    if depth == 2:
        rest = np.setdiff1d(np.arange(beta.size), S)
        if rest.size:
            off = float(np.max(np.maximum(np.abs(A[:, rest].T @ lam) - 1.0, 0.0)))
    value = float(np.sum(np.abs(beta) ** p) ** (1.0 / p))
    notes = () if depth <= 2 else ("non-convex for L >= 3: several KKT points",)
    return KKTReport(depth, beta, tuple(int(j) for j in S), tuple(int(i) for i in T), lam, residual, off,
                     value, gval, tol, True, notes)


def _global_value(A: np.ndarray, depth: int, max_vertices: int) -> float:
    if depth == 1:
        return l2_max_margin(A, np.ones(A.shape[0])).value
    if depth == 2:
        return l1_max_margin(A, np.ones(A.shape[0])).value
    return quasi_norm_min(A, np.ones(A.shape[0]), depth, max_vertices=max_vertices)


def quasi_norm_min(X, y, depth: int, *, max_vertices: int = 200_000) -> float:
    """Global ``min |beta|_{2/L} s.t. margins >= 1`` for ``L >= 3`` (``nan`` if too large).

    In each orthant the objective is concave, so the minimum sits at a vertex of
    ``{A beta >= 1} ∩ orthant``; vertices are enumerated (``d`` tight constraints out of
    ``n + d``).  Exponential in ``d``: meant for the small problems of the catalogue.

    >>> round(quasi_norm_min([[3.0, 2.0, 1.0]], [1], depth=3), 9)    # e_0 / 3
    0.333333333
    """
    got = quasi_norm_argmin(X, y, depth, max_vertices=max_vertices)
    return math.nan if got is None else got[1]


def quasi_norm_argmin(X, y, depth: int, *, max_vertices: int = 200_000) -> tuple[np.ndarray, float] | None:
    """The global minimiser of ``|beta|_{2/L} s.t. margins >= 1`` and its value (the
    vertex enumeration of :func:`quasi_norm_min`; ``None`` when the problem is too large
    or infeasible).  Ties go to the first vertex found.

    >>> b, v = quasi_norm_argmin([[3.0, 2.0, 1.0]], [1], depth=3)
    >>> b.round(9).tolist(), round(v, 9)
    ([0.333333333, 0.0, 0.0], 0.333333333)
    """
    A = _signed(X, y)
    n, d = A.shape
    p = 2.0 / depth
    count = (2 ** d) * math.comb(n + d, d)
    if count > max_vertices:
        return None
    best, arg = math.inf, None
    for signs in itertools.product((1.0, -1.0), repeat=d):
        G = np.vstack([A, np.diag(signs)])
        h = np.concatenate([np.ones(n), np.zeros(d)])
        for rows in itertools.combinations(range(n + d), d):
            M = G[list(rows)]
            if abs(np.linalg.det(M)) < 1e-12:
                continue
            v = np.linalg.solve(M, h[list(rows)])
            if np.all(G @ v >= h - 1e-9):
                val = float(np.sum(np.abs(v) ** p) ** (1.0 / p))
                if val < best * (1 - 1e-12):
                    best, arg = val, v + 0.0
    return None if arg is None else (arg, best)
