"""Hand-written, vectorised numpy vector fields of the SAM flows (a test oracle).

This is the independent implementation the generated kernels (the engine,
``sambias.symbolic.GeneratedField``) are checked against; it left the package with
issue 9 and lives on here.  It follows THEORY.md directly:

* state ``W`` of shape ``(L, d)``; flat vectors are layer-major, ``w[l*d + j] = W[l, j]``;
* ``beta = prod_l W[l]``, margins ``z = A @ beta`` with ``A = y[:, None] * X``;
* ``lambda_i = |l'(z_i)|``, ``S = sum_i lambda_i``, ``q = lambda / S`` (a softmax of
  ``log lambda``, computed in log space so that nothing underflows);
* ``grad L(W) = S * F(W)`` with the *normalised gradient*
  ``F[l, j] = g_j * prod_{k != l} W[k, j]``, ``g = -A.T @ q``;
* perturbation ``eps``: GD 0, l2-SAM ``rho F/|F|``, linf-SAM ``rho sign(F)`` (or a
  given switching vector ``sigma``), USAM ``rho S F``; ``W~ = W + eps``;
* physical flow ``dW/dt = -S(W~) F(W~)``; rescaled flow (``dtau = S(W~) dt``)
  ``dW/dtau = -F(W~)`` with ``log(dt/dtau) = -log S(W~)``.

For one example ``q = 1`` and the rescaled flow is THEORY.md's loss-free form; for
several examples ``dtau = sum_i |l'(z~_i)| dt`` is its exact generalisation (a
reparametrisation while ``int S dt`` diverges).

>>> from sambias import Problem, Init
>>> f = NumpyField(Problem(depth=2, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=1.0)))
>>> f.rescaled(np.ones(4))[0]
array([2., 1., 2., 1.])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit


def logsumexp(a: np.ndarray) -> float:
    """``log(sum(exp(a)))`` of a 1-D array, stable for any finite entries.

    scipy's ``logsumexp`` costs ~80 us per call (argument checking); every vector-field
    evaluation needs it twice, so this plain version is what keeps the integrators fast.
    """
    a = np.asarray(a, float)
    if a.size == 1:          # one example: nothing to add up
        return float(a.reshape(-1)[0])
    m = float(a.max())
    if not np.isfinite(m):
        return m
    return m + float(np.log(np.sum(np.exp(a - m))))


def log_abs_loss_derivative(z: np.ndarray, loss: str) -> np.ndarray:
    """``log |l'(z)|``: ``-z`` (exponential) or ``-log(1 + e^z)`` (logistic)."""
    if loss == "exp":
        return -z
    return -np.logaddexp(0.0, z)


def dlog_abs_loss_derivative(z: np.ndarray, loss: str) -> np.ndarray:
    """Derivative of :func:`log_abs_loss_derivative` in ``z``."""
    if loss == "exp":
        return -np.ones_like(z)
    return -expit(z)


def log_loss(z: np.ndarray, loss: str) -> float:
    """Natural log of ``sum_i l(z_i)``, finite far past float64's underflow."""
    z = np.asarray(z, float)
    if loss == "exp":
        return float(logsumexp(-z))
    # log(log1p(e^-z)): for large z, log1p(e^-z) = e^-z (1 - e^-z/2 + ...).
    with np.errstate(over="ignore", divide="ignore"):
        small = np.log(np.log1p(np.exp(-np.minimum(z, 30.0))))
    big = -z + np.log1p(-0.5 * np.exp(-np.maximum(z, 30.0)))
    return float(logsumexp(np.where(z > 30.0, big, small)))


def others_product(W: np.ndarray) -> np.ndarray:
    """``P[l, j] = prod_{k != l} W[k, j]`` without division (prefix/suffix products)."""
    L = W.shape[0]
    # L <= 2 are the common cases: same values as the general loop, a few us cheaper
    if L == 1:
        return np.ones_like(W)
    if L == 2:
        return W[::-1].copy()
    prefix = np.ones_like(W)
    suffix = np.ones_like(W)
    for l in range(1, L):
        prefix[l] = prefix[l - 1] * W[l - 1]
        suffix[L - 1 - l] = suffix[L - l] * W[L - l]
    return prefix * suffix


def pair_product(W: np.ndarray) -> np.ndarray:
    """``Q[l, k, j] = prod_{m not in {l, k}} W[m, j]`` for ``l != k`` (0 on the diagonal)."""
    L, d = W.shape
    Q = np.zeros((L, L, d))
    for l in range(L):
        for k in range(L):
            if l != k:
                keep = [m for m in range(L) if m != l and m != k]
                Q[l, k] = np.prod(W[keep], axis=0) if keep else 1.0
    return Q


@dataclass(frozen=True)
class GradientParts:
    """Everything the gradient at one point is made of (shared by RHS and Jacobian)."""

    W: np.ndarray          # (L, d) the point
    P: np.ndarray          # (L, d) products of the other layers
    z: np.ndarray          # (n,) margins
    q: np.ndarray          # (n,) |l'| weights normalised to sum 1
    log_S: float           # log sum_i |l'(z_i)|
    g: np.ndarray          # (d,) -A.T q
    F: np.ndarray          # (L, d) normalised gradient g * P


class NumpyField:
    """The SAM vector fields of one problem, evaluated with numpy.

    Methods take flat state vectors of length ``L*d`` and return flat vectors or
    ``(L*d, L*d)`` Jacobians.  ``sigma`` (linf-SAM only) replaces ``sign(F(W))`` --
    the switching function a Filippov integrator controls; it must have ``L*d``
    entries in ``[-1, 1]``.
    """

    def __init__(self, problem) -> None:
        self.problem = problem
        self.depth = problem.depth
        self.dim = problem.dim
        self.n = problem.n
        self.algorithm = problem.algorithm
        self.loss = problem.loss
        self.rho = float(problem.rho) if problem.algorithm != "gd" else 0.0
        self.A = np.ascontiguousarray(problem.signed_data, dtype=float)

    # --- building blocks ------------------------------------------------------
    def shape(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(w, dtype=float).reshape(self.depth, self.dim)

    def parts(self, W: np.ndarray) -> GradientParts:
        """Gradient ingredients at ``W`` (shape ``(L, d)``)."""
        P = others_product(W)
        beta = P[0] * W[0]
        z = self.A @ beta
        logl = log_abs_loss_derivative(z, self.loss)
        log_S = float(logsumexp(logl))
        q = np.exp(logl - log_S)
        g = -(self.A.T @ q)
        return GradientParts(W=W, P=P, z=z, q=q, log_S=log_S, g=g, F=g[None, :] * P)

    def normalised_gradient(self, w: np.ndarray) -> np.ndarray:
        """``F(W) = grad L(W) / S(W)``, flat; its signs are linf-SAM's switching functions."""
        return self.parts(self.shape(w)).F.ravel()

    def switching(self, w: np.ndarray) -> np.ndarray:
        """The switching functions of linf-SAM (``F(W)``); empty for the other algorithms."""
        if self.algorithm != "linf-sam":
            return np.zeros(0)
        return self.normalised_gradient(w)

    def perturbation(self, w: np.ndarray, sigma: np.ndarray | None = None) -> np.ndarray:
        """``eps(W)`` as a flat vector."""
        W = self.shape(w)
        if self.algorithm == "gd" or self.rho == 0.0:
            return np.zeros(W.size)
        pt = self.parts(W)
        if self.algorithm == "l2-sam":
            norm = np.linalg.norm(pt.F)
            if norm == 0.0:
                raise FloatingPointError("l2-SAM perturbation undefined: the gradient is 0 (collapse)")
            return (self.rho * pt.F / norm).ravel()
        if self.algorithm == "linf-sam":
            s = np.sign(pt.F).ravel() if sigma is None else np.asarray(sigma, float)
            return self.rho * s
        # usam
        return (self.rho * np.exp(pt.log_S) * pt.F).ravel()

    # --- flows ------------------------------------------------------------------
    def rescaled(self, w: np.ndarray, sigma: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """``(dW/dtau, log S(W~))``: the loss-free flow and the log of ``dtau/dt``."""
        Wt = self.shape(w) + self.perturbation(w, sigma).reshape(self.depth, self.dim)
        pt = self.parts(Wt)
        return -pt.F.ravel(), pt.log_S

    def physical(self, w: np.ndarray, sigma: np.ndarray | None = None) -> np.ndarray:
        """``dW/dt = -grad L(W + eps(W))``."""
        dw, log_S = self.rescaled(w, sigma)
        return np.exp(log_S) * dw

    # --- Jacobians --------------------------------------------------------------
    def _jac_F(self, pt: GradientParts) -> np.ndarray:
        """d F / d W at a point (``(L*d, L*d)``)."""
        L, d = pt.W.shape
        dphi = dlog_abs_loss_derivative(pt.z, self.loss)
        Jq = (np.diag(pt.q) - np.outer(pt.q, pt.q)) * dphi[None, :]
        M = -(self.A.T @ Jq @ self.A)  # dg_i/dbeta_j
        Q = pair_product(pt.W)
        J = np.zeros((L, d, L, d))
        # dF[l,j]/dW[k,j'] = M[j,j'] P[k,j'] P[l,j] + delta_jj' g_j Q[l,k,j]
        J += (pt.P[:, :, None, None] * M[None, :, None, :]) * pt.P[None, None, :, :]
        idx = np.arange(d)
        J[:, idx, :, idx] += (pt.g[None, None, :] * Q).transpose(2, 0, 1)
        return J.reshape(L * d, L * d)

    def _grad_log_S(self, pt: GradientParts) -> np.ndarray:
        """d log S / d W (flat)."""
        dphi = dlog_abs_loss_derivative(pt.z, self.loss)
        dz = (pt.q * dphi) @ self.A  # d logS / d beta
        return (dz[None, :] * pt.P).ravel()

    def _jac_eps(self, w: np.ndarray) -> np.ndarray:
        size = self.depth * self.dim
        if self.algorithm in ("gd", "linf-sam") or self.rho == 0.0:
            return np.zeros((size, size))
        pt = self.parts(self.shape(w))
        JF = self._jac_F(pt)
        F = pt.F.ravel()
        if self.algorithm == "l2-sam":
            norm = np.linalg.norm(F)
            u = F / norm
            return self.rho / norm * (JF - np.outer(u, u @ JF))
        S = np.exp(pt.log_S)
        return self.rho * S * (JF + np.outer(F, self._grad_log_S(pt)))

    def rescaled_jac(self, w: np.ndarray, sigma: np.ndarray | None = None) -> np.ndarray:
        """Jacobian of ``dW/dtau`` (``sigma`` held fixed for linf-SAM)."""
        wt = np.asarray(w, float) + self.perturbation(w, sigma)
        pt = self.parts(self.shape(wt))
        J = -self._jac_F(pt)
        return J + J @ self._jac_eps(w)

    def rescaled_log_speed_grad(self, w: np.ndarray, sigma: np.ndarray | None = None) -> np.ndarray:
        """Gradient in ``W`` of ``log S(W~(W))`` (for the log-time row of a Jacobian)."""
        return self.rescaled_with_grad(w, sigma)[2]

    def rescaled_with_grad(self, w: np.ndarray, sigma: np.ndarray | None = None
                           ) -> tuple[np.ndarray, float, np.ndarray]:
        """``(dW/dtau, log S(W~), d log S(W~(W))/dW)`` in one pass (what :meth:`rescaled` and
        :meth:`rescaled_log_speed_grad` give; the log-time integrator needs all three)."""
        W = self.shape(w)
        pw = None
        if self.algorithm == "linf-sam" and self.rho != 0.0 and sigma is not None:
            eps = self.rho * np.asarray(sigma, float)
        elif self.algorithm == "gd" or self.rho == 0.0:
            eps = 0.0
        else:
            pw = self.parts(W)
            F = pw.F.ravel()
            if self.algorithm == "l2-sam":
                norm = np.linalg.norm(F)
                if norm == 0.0:
                    raise FloatingPointError("l2-SAM perturbation undefined: the gradient is 0 (collapse)")
                eps = self.rho * F / norm
            elif self.algorithm == "linf-sam":
                eps = self.rho * np.sign(F)
            else:
                eps = self.rho * np.exp(pw.log_S) * F
        pt = self.parts(self.shape(np.asarray(w, float).ravel() + eps))
        gl = self._grad_log_S(pt)
        if self.algorithm in ("l2-sam", "usam") and self.rho != 0.0:
            gl = gl + self._vjp_eps(w, gl, pw)
        return -pt.F.ravel(), pt.log_S, gl

    def _vjp_F(self, pt: GradientParts, v: np.ndarray) -> np.ndarray:
        """``v @ dF/dW`` at a point without forming the Jacobian (same formula as ``_jac_F``)."""
        L, d = pt.W.shape
        V = np.asarray(v, float).reshape(L, d)
        dphi = dlog_abs_loss_derivative(pt.z, self.loss)
        u = np.sum(V * pt.P, axis=0)                 # sum_l v[l, j] P[l, j]
        Au = self.A @ u
        qd = pt.q * dphi
        uM = -(((qd * Au) - qd * np.dot(pt.q, Au)) @ self.A)  # u @ M, M = -A.T Jq A
        out = uM[None, :] * pt.P
        if L == 2:       # Q[l, k] = 1 for l != k
            out += pt.g[None, :] * V[::-1]
        elif L > 2:
            out += pt.g[None, :] * np.einsum("lj,lkj->kj", V, pair_product(pt.W))
        return out.ravel()

    def _vjp_eps(self, w: np.ndarray, v: np.ndarray, pt: GradientParts | None = None) -> np.ndarray:
        """``v @ d eps/dW`` (what ``v @ _jac_eps(w)`` gives, in O(L^2 d + n d))."""
        if self.algorithm in ("gd", "linf-sam") or self.rho == 0.0:
            return np.zeros(self.depth * self.dim)
        pt = self.parts(self.shape(w)) if pt is None else pt
        F = pt.F.ravel()
        if self.algorithm == "l2-sam":
            norm = np.linalg.norm(F)
            u = F / norm
            return self.rho / norm * self._vjp_F(pt, v - np.dot(v, u) * u)
        S = np.exp(pt.log_S)
        return self.rho * S * (self._vjp_F(pt, v) + np.dot(v, F) * self._grad_log_S(pt))

    def physical_jac(self, w: np.ndarray, sigma: np.ndarray | None = None) -> np.ndarray:
        """Jacobian of ``dW/dt``."""
        wt = np.asarray(w, float) + self.perturbation(w, sigma)
        pt = self.parts(self.shape(wt))
        S = np.exp(pt.log_S)
        F = pt.F.ravel()
        Jt = -S * (self._jac_F(pt) + np.outer(F, self._grad_log_S(pt)))
        return Jt + Jt @ self._jac_eps(w)
