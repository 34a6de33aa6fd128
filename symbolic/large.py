"""Large problems: the data couplings of a :class:`~sambias.symbolic.GeneratedField` without
``n x n`` or ``(L*d)^2`` arrays.

The kernels are derived once for the generic coordinate; the data enter only through
``z = A beta`` and ``g = -A^T q`` (``A = y[:, None] * X``, ``q = softmax(phi(z))``).  The one
place a Jacobian needs more is ``M = dg/dbeta = -A^T (diag q - q q^T) diag(phi') A``, whose
middle factor is ``n x n``.  :class:`DataCurvature` applies ``M`` (and ``M^T``) to vectors in
``O(n d)`` time and memory, so that

* the right-hand side of the log-time system (which needs ``d log S(W~(W))/dW``, a
  vector-Jacobian product through ``M`` for the normalised perturbations) costs ``O(n d)``
  per call instead of ``O(n d^2)``;
* :func:`rescaled_jvp` / :func:`rescaled_jac_operator` give Jacobian-vector products of the
  rescaled flow in ``O(n d + L^2 d)`` memory -- per-coordinate ``L x L`` blocks plus the
  data term ``A^T diag(.) A`` applied, never formed -- for Krylov/matrix-free solvers.

Memory of one field on ``n x d`` data at depth ``L``: the data (``n d`` floats), a few
``n``- and ``(L, d)``-vectors per call; ``d x d`` only in the dense Jacobian a direct
(LU) solver asks for.

Time: an l2-SAM right-hand side makes six dependent passes over ``A`` (``A beta``, ``A^T q``
at ``W`` and at ``W~``, then one ``u @ M``: every product with ``M`` is folded into one row
vector); on data of :data:`SINGLE_THREAD_ND` entries or more they run on one BLAS thread
(:class:`blas_threads`; ``SAMBIAS_BLAS_THREADS=all`` leaves BLAS as configured) -- threads
only wait for each other on memory-bound products when other processes share the cores.

>>> import numpy as np
>>> A = np.array([[1.0, 2.0], [2.0, -1.0], [0.5, 0.5]]); q = np.array([0.5, 0.3, 0.2])
>>> M = DataCurvature(A, q, -q)          # exp loss: phi' = -1
>>> bool(np.allclose(M @ np.ones(2), M.todense() @ np.ones(2)))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class DataCurvature:
    """``M = dg/dbeta = (A^T q)(A^T c)^T - A^T diag(c) A`` with ``c = q * phi'(z)``, as an
    operator: ``M @ v`` and ``u @ M`` cost ``O(n d)`` and form nothing of size ``n x n`` or
    ``d x d``.  (``g = -A^T q``; ``dq/dz = (diag q - q q^T) diag phi'``.)

    Evaluated in the centred form ``M = -B^T diag(c) B - e a^T`` with ``B = A - 1 a^T`` (rows
    centred at ``a = A^T q``) and ``e = B^T c = B^T (q (phi' - <phi'>_q))``.  Late in a run the
    softmax saturates (``q`` nearly one-hot) and ``M`` is tiny next to ``|A|^2``: the raw form
    ``a b^T - A^T diag(c) A`` then cancels two ``|A|^2``-sized terms and, times the huge
    vectors of the normalised perturbations, returns rounding noise larger than the true
    product by many orders; centring cancels before multiplying (``e`` is exactly 0 for
    the exponential loss).

    >>> A = np.eye(2); q = np.array([0.25, 0.75])
    >>> DataCurvature(A, q, -q).todense().tolist()     # covariance of e_i under q
    [[0.1875, -0.1875], [-0.1875, 0.1875]]
    """

    A: np.ndarray
    q: np.ndarray
    c: np.ndarray
    #: ``A^T q`` when the caller has it (one pass over ``A`` saved)
    a: np.ndarray | None = None
    #: ``B^T c`` (computed)
    e: np.ndarray | None = None

    # numpy operators defer to __rmatmul__ (``u @ M`` with ``u`` an ndarray)
    __array_ufunc__ = None

    def __post_init__(self) -> None:
        # computed once: every product below reuses them (a frozen dataclass, hence setattr)
        if self.a is None:
            object.__setattr__(self, "a", self.q @ self.A)
        if self.e is None:
            # c - <c> q has the same product with B (q^T B = 0) and is exactly 0 when phi' is
            # constant: e carries no rounding noise from the uncentred a
            total = float(np.sum(self.c))
            r = self.c - total * self.q
            object.__setattr__(self, "e", r @ self.A - float(np.sum(r)) * self.a)

    @property
    def shape(self) -> tuple[int, int]:
        d = self.A.shape[1]
        return d, d

    @property
    def dtype(self):
        return np.result_type(self.A, self.q, self.c)

    def _weighted(self, t: np.ndarray) -> np.ndarray:
        """``B^T t`` for ``t`` of shape ``(n,)`` or ``(n, k)`` (without forming ``B``)."""
        if t.ndim == 1:
            return t @ self.A - float(np.sum(t)) * self.a
        return self.A.T @ t - np.outer(self.a, np.sum(t, axis=0))

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``M v`` for ``v`` of shape ``(d,)`` or ``(d, k)``."""
        Bv = self.A @ v - self.a @ v                       # rows of B times v
        if np.ndim(v) == 1:
            return -self._weighted(self.c * Bv) - self.e * float(self.a @ v)
        return -self._weighted(self.c[:, None] * Bv) - np.outer(self.e, self.a @ v)

    def rmatvec(self, u: np.ndarray) -> np.ndarray:
        """``u M`` (``= M^T u``) for ``u`` of shape ``(d,)`` or ``(k, d)``."""
        if np.ndim(u) == 1:
            uB = self.A @ u - float(u @ self.a)
            return -self._weighted(self.c * uB) - float(u @ self.e) * self.a
        uB = u @ self.A.T - (u @ self.a)[:, None]          # (k, n)
        return -(self._weighted((self.c[None, :] * uB).T)).T - np.outer(u @ self.e, self.a)

    def __matmul__(self, v):
        return self.matvec(np.asarray(v))

    def __rmatmul__(self, u):
        return self.rmatvec(np.asarray(u))

    def todense(self) -> np.ndarray:
        """The ``d x d`` matrix (``O(n d^2)`` time, an ``n x d`` temporary).

        Up to :data:`SINGLE_THREAD_FLOPS` the product runs on one BLAS thread, above it on the
        threads BLAS was configured with: OpenBLAS splits even a 360 x 64 GEMM over its threads,
        and on a busy machine (other processes on the cores) the threads wait for each other --
        4.4 ms per call instead of 0.1 ms on the digits (n = 360, d = 64), 73 % of an l2-SAM
        run's time in one profile.
        """
        B = self.A - self.a[None, :]
        with blas_threads(1 if B.shape[0] * B.shape[1] ** 2 <= SINGLE_THREAD_FLOPS else None):
            return -(B.T @ (self.c[:, None] * B)) - np.outer(self.e, self.a)


#: GEMMs up to this many multiply-adds run on one BLAS thread (~10 ms on one core): below it
#: the threads' synchronisation costs more than they save, the more so on a loaded machine
SINGLE_THREAD_FLOPS = 5e7
#: a float64 field on data with at least this many entries (``n d``) makes its passes over the
#: data (matrix-vector products: memory-bound) on one BLAS thread, unless ``SAMBIAS_BLAS_THREADS
#: =all``.  MNIST-sized data (1e4 x 784), two products: 17 ms on one thread against 41 ms on
#: OpenBLAS's two with other jobs on the two cores (an idle machine gains little from threads
#: on memory-bound products; a sweep runs one process per core anyway)
SINGLE_THREAD_ND = 10_000

# [(threadpoolctl controller, threads BLAS was configured with)], found at first use
_BLAS_LIBS: list | None = None


def _blas_libs() -> list:
    global _BLAS_LIBS
    if _BLAS_LIBS is None:
        try:
            from threadpoolctl import ThreadpoolController
            libs = ThreadpoolController().select(user_api="blas").lib_controllers
            _BLAS_LIBS = [(lib, lib.num_threads) for lib in libs]
        except Exception:            # threadpoolctl missing or unable to inspect: leave BLAS alone
            _BLAS_LIBS = []
    return _BLAS_LIBS


class blas_threads:
    """Context manager: the BLAS libraries of the process (numpy's and scipy's OpenBLAS, MKL,
    ...) run on ``k`` threads inside it -- ``1``, or ``None`` for the number they were
    configured with (``OPENBLAS_NUM_THREADS`` etc.); ``False`` leaves them alone.  A switch
    costs ~1 microsecond per library (threadpoolctl's controllers are found once and kept)."""

    __slots__ = ("k", "saved")

    def __init__(self, k: int | None | bool = 1) -> None:
        self.k = k
        self.saved: list = []

    def __enter__(self):
        if self.k is False:
            return self
        for lib, default in _blas_libs():
            want = default if self.k is None else self.k
            n = lib.num_threads
            if n != want:
                lib.set_num_threads(want)
                self.saved.append((lib, n))
        return self

    def __exit__(self, *exc) -> None:
        for lib, n in self.saved:
            lib.set_num_threads(n)
        self.saved.clear()


def field_blas_threads(n: int, d: int) -> int | bool:
    """What :class:`blas_threads` gets around a float64 field's evaluation on ``n x d`` data:
    ``1`` on data of :data:`SINGLE_THREAD_ND` entries or more (unless ``SAMBIAS_BLAS_THREADS``
    is ``all``), else ``False`` (small data: BLAS does not thread, and switching would cost)."""
    import os

    if n * d < SINGLE_THREAD_ND or os.environ.get("SAMBIAS_BLAS_THREADS", "1").strip().lower() == "all":
        return False
    return 1


def data_curvature(field, z: np.ndarray, q: np.ndarray | None, g: np.ndarray | None = None) -> DataCurvature | None:
    """``dg/dbeta`` of a float64 ``GeneratedField`` at margins ``z`` as an operator; ``None``
    for one example (``g`` is then constant).  ``g = -A^T q``, when known, saves a pass over ``A``."""
    if q is None:
        return None
    (dphi,) = field.kernels.dphi(z)
    # phi' constant (the exponential loss): e = B^T (q (phi' - <phi'>_q)) is exactly 0, and
    # computing it would cost a pass over A that returns rounding noise
    e = np.zeros(field.A.shape[1]) if dphi.min() == dphi.max() else None
    return DataCurvature(field.A, q, q * dphi, a=None if g is None else -np.asarray(g, dtype=float), e=e)


def _flat(v, L: int, d: int) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    if v.size != L * d:
        raise ValueError(f"expected a vector of length L*d = {L * d}, got {v.size}")
    return v.reshape(L, d)


def perturbed_jvp(field, W, sigma, V: np.ndarray):
    """``(Wt rows, dWt)``: the perturbed point and its derivative along ``V`` (``(L, d)``),
    ``dWt[l, j] = sum_{m,k} d wt[l, j] / dW[m, k] V[m, k]``, without forming ``d wt / dW``."""
    Wt, parts = field._jacobian_parts(W, sigma, operator=True)
    if parts is None:
        return Wt, V
    if parts["flat"]:
        # the general path exists only up to 48 weights: its dense parts are small
        L, d = field.depth, field.dim
        v = V.reshape(L * d)
        out = v + parts["E"] @ v
        if parts["M"] is not None:
            out = out + parts["Eg"] @ (parts["M"] @ np.sum(parts["P"] * V, axis=0))
        for Es, dX, _ in parts["globals"]:     # (the flat path's globals carry no M term)
            out = out + Es.reshape(L * d) * float(np.sum(dX * V))
        return Wt, out.reshape(L, d)
    E, Eg, P, M = parts["E"], parts["Eg"], parts["P"], parts["M"]
    out = np.einsum("lmj,mj->lj", E, V)
    # one product with M serves the g-term and every global sum: d X/dW . V has the part
    # (r @ M) . sum_m P[m] V[m] = r . (M @ p)
    Mp = M @ np.sum(P * V, axis=0) if M is not None else None
    if Mp is not None and Eg is not None:
        out = out + Eg * Mp[None, :]
    for Es, dX, r in parts["globals"]:
        dot = float(np.sum(dX * V)) + (float(r @ Mp) if r is not None else 0.0)
        out = out + Es * dot
    return Wt, out


def rescaled_jvp(field, w, v, sigma=None) -> np.ndarray:
    """``J v`` with ``J`` the Jacobian of the rescaled flow ``dW/dtau`` of a float64
    ``GeneratedField`` (``sigma`` held fixed for linf-SAM), in ``O(n d + L^2 d)`` memory.
    Equal to ``field.rescaled_jac(w, sigma) @ v`` up to rounding.

    >>> from sambias import Problem, Init
    >>> from sambias.symbolic import GeneratedField
    >>> f = GeneratedField(Problem(depth=2, algorithm="gd", X=[[2.0, 1.0], [1.0, 3.0]], y=[1, 1],
    ...                            init=Init(scale=0.5)))
    >>> w, v = np.full(4, 0.5), np.arange(4.0)
    >>> bool(np.allclose(rescaled_jvp(f, w, v), f.rescaled_jac(w) @ v, rtol=1e-13, atol=0))
    True
    """
    L, d, k = field.depth, field.dim, field.kernels
    if field._mp:
        raise ValueError("rescaled_jvp is float64 only (the mp field forms its Jacobians)")
    V = _flat(v, L, d)
    Wt, U = perturbed_jvp(field, field._rows(np.asarray(w, dtype=float)), sigma, V)
    (beta_t,) = k.beta(*Wt)
    z_t, _, q_t, g_t = field._coupling(beta_t)
    parts = k.jac_flow(*Wt, g_t)
    D = np.array(parts[:L * L]).reshape(L, L, d)              # d out_l / d wt_r (per coordinate)
    Cgt = np.array(parts[L * L:])                              # d out_l / d gt
    out = np.einsum("lrj,rj->lj", D, U)
    Mt = data_curvature(field, z_t, q_t, g_t)
    if Mt is not None:
        Pt = np.array(k.dbeta(*Wt))
        out = out + Cgt * (Mt @ np.sum(Pt * U, axis=0))[None, :]
    return out.reshape(L * d)


def rescaled_jac_operator(field, w, sigma=None):
    """The Jacobian of ``dW/dtau`` at ``w`` as a ``scipy.sparse.linalg.LinearOperator``
    (``matvec`` = :func:`rescaled_jvp`; no ``(L*d)^2`` array).

    >>> from sambias import Problem, Init
    >>> from sambias.symbolic import GeneratedField
    >>> f = GeneratedField(Problem(depth=2, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=0.5)))
    >>> rescaled_jac_operator(f, np.full(4, 0.5)).shape
    (4, 4)
    """
    from scipy.sparse.linalg import LinearOperator

    w = np.array(w, dtype=float)
    size = field.depth * field.dim
    return LinearOperator((size, size), matvec=lambda v: rescaled_jvp(field, w, v, sigma), dtype=float)
