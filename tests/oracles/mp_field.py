"""Hand-written SAM vector fields in mpmath: an independent oracle for the derived mp kernels.

This was the mp integrator's field before ``simulate(..., precision="mp:D")`` switched to
the kernels symbolic/ derives (:mod:`sambias.flows.mp_field`); it is kept, unchanged in
its arithmetic, so tests can check the derived field against code written by hand.

Same conventions as :class:`sambias.flows.field.NumpyField` (read its docstring):
flat states of length ``L*d``, layer-major (``w[l*d + j] = W[l, j]``);
``beta = prod_l W[l]``, margins ``z = A beta`` with ``A = y[:, None] * X``;
``log |l'(z)|`` is ``-z`` (exp) or ``-log(1 + e^z)`` (logistic); ``log S`` is their
log-sum-exp and ``q`` their softmax; the normalised gradient is
``F[l, j] = g_j prod_{k != l} W[k, j]`` with ``g = -A^T q``; the perturbation is
GD ``0``, l2-SAM ``rho F/|F|``, linf-SAM ``rho sign(F)`` (or a given ``sigma``), USAM
``rho S F``; the rescaled flow is ``dW/dtau = -F(W~)`` with ``log(dt/dtau) = -log S(W~)``.

Everything is evaluated in the *current* mpmath context: callers choose the precision
with ``mpmath.workdps(...)``; nothing here changes global state.  States are plain
Python lists of ``mpf`` -- at the sizes of this toolkit (``L*d`` up to a few dozen)
list arithmetic beats numpy object arrays, whose per-element dispatch costs more than
the mpf operation itself.

>>> import mpmath
>>> from sambias import Problem, Init
>>> f = MpField(Problem(depth=2, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=1.0)))
>>> with mpmath.workdps(30):
...     dw, log_S = f.rescaled_mp(f.to_mp([1, 1, 1, 1]))
>>> [float(v) for v in dw], float(log_S)
([2.0, 1.0, 2.0, 1.0], -3.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mpmath
from mpmath import mpf
from mpmath.libmp import fzero, from_int, mpf_add, mpf_mul, mpf_neg, mpf_sqrt, mpf_div

_ZERO = mpf(0)
_ONE = mpf(1)


# the driver stops cleanly on this type, so the oracle can stand in as a field
from sambias.flows.mp_field import CollapseError  # noqa: E402


@dataclass(frozen=True)
class MpParts:
    """Gradient ingredients at one point, as lists of mpf (``P`` and ``F`` flat, layer-major)."""

    P: list
    beta: list
    z: list
    log_S: mpf
    q: list
    g: list
    F: list


def mp_sign(v) -> int:
    """``sign`` with ``sign(0) = 0`` (numpy's convention)."""
    return (v > 0) - (v < 0)


class MpField:
    """The rescaled SAM vector field of one problem, in mpmath arithmetic.

    ``rescaled_mp(w, sigma=None) -> (dw, log_S)`` is the interface the mp integrator
    uses (a generated field may replace it).  ``sigma`` (linf-SAM only) replaces
    ``sign(F(W))`` entry by entry; entries may be any numbers in ``[-1, 1]`` (the
    integrator passes sign memory and Filippov equivalent controls through it).
    """

    def __init__(self, problem) -> None:
        self.problem = problem
        self.depth = L = int(problem.depth)
        self.dim = d = int(problem.dim)
        self.n = int(problem.n)
        self.size = L * d
        self.algorithm = problem.algorithm
        self.loss = problem.loss
        # float64 -> mpf is exact, so the mp field sees exactly the data NumpyField sees.
        self.rho = mpf(float(problem.rho)) if problem.algorithm != "gd" else _ZERO
        A = problem.signed_data
        self.A = [[mpf(float(A[i, j])) for j in range(d)] for i in range(self.n)]
        # columns of A for g = -A^T q, and -A (the n = 1 shortcut: q = 1, g = -A[0])
        self.At = [[self.A[i][j] for i in range(self.n)] for j in range(d)]
        self._g_single = [-a for a in self.A[0]] if self.n == 1 else None
        # raw (sign, man, exp, bc) tuples for the one-example fast path
        self._a_raw = [a._mpf_ for a in self.A[0]]
        self._rho_raw = self.rho._mpf_
        self._fast = self.n == 1 and self.loss == "exp" and self.algorithm in ("gd", "l2-sam", "linf-sam")

    # --- conversions ------------------------------------------------------------
    @staticmethod
    def to_mp(w: Sequence) -> list:
        """A flat list of mpf from any flat sequence of numbers (floats convert exactly)."""
        out = []
        for v in w:
            out.append(v if isinstance(v, mpf) else mpf(float(v)) if not isinstance(v, str) else mpf(v))
        return out

    # --- building blocks ----------------------------------------------------------
    def others_product(self, w: list) -> list:
        """``P[l*d + j] = prod_{k != l} W[k, j]`` by prefix/suffix products (no division)."""
        L, d = self.depth, self.dim
        if L == 1:
            return [_ONE] * d
        if L == 2:
            return w[d:] + w[:d]
        P = [None] * (L * d)
        for j in range(d):
            col = w[j::d]
            pre = [_ONE] * L
            for l in range(1, L):
                pre[l] = pre[l - 1] * col[l - 1]
            suf = _ONE
            for l in range(L - 1, -1, -1):
                P[l * d + j] = pre[l] * suf
                suf = suf * col[l]
        return P

    def beta(self, w: list) -> list:
        """``beta_j = prod_l W[l, j]``."""
        d = self.dim
        b = list(w[:d])
        for l in range(1, self.depth):
            row = w[l * d:(l + 1) * d]
            b = [x * y for x, y in zip(b, row)]
        return b

    def margins(self, beta: list) -> list:
        return [mpmath.fdot(row, beta) for row in self.A]

    def log_abs_dloss(self, z: list) -> list:
        """``log |l'(z_i)|``."""
        if self.loss == "exp":
            return [-zi for zi in z]
        return [-_log1pexp(zi) for zi in z]

    def parts(self, w: list) -> MpParts:
        """Gradient ingredients at the flat state ``w``."""
        d = self.dim
        P = self.others_product(w)
        beta = [P[j] * w[j] for j in range(d)]
        z = self.margins(beta)
        logl = self.log_abs_dloss(z)
        if self.n == 1:
            # one example: q = 1 and g = -A[0] exactly, no exp/log needed
            log_S, q, g = logl[0], [_ONE], self._g_single
        else:
            log_S = _logsumexp(logl)
            q = [mpmath.exp(li - log_S) for li in logl]
            g = [-mpmath.fdot(col, q) for col in self.At]
        F = [g[k % d] * P[k] for k in range(self.size)]
        return MpParts(P=P, beta=beta, z=z, log_S=log_S, q=q, g=g, F=F)

    def normalised_gradient(self, w: list) -> list:
        """``F(W) = grad L(W) / S(W)``; its signs are linf-SAM's switching functions."""
        return self.parts(w).F

    def switching(self, w: list) -> list:
        """linf-SAM's switching functions ``F(W)``; empty for the other algorithms."""
        return self.normalised_gradient(w) if self.algorithm == "linf-sam" else []

    def perturbation(self, w: list, sigma: Sequence | None = None) -> list:
        """``eps(W)`` as a flat list (raises :class:`CollapseError` for l2-SAM at ``F = 0``)."""
        alg, rho = self.algorithm, self.rho
        if alg == "gd" or rho == 0:
            return [_ZERO] * self.size
        if alg == "linf-sam" and sigma is not None:
            return [rho * s for s in sigma]
        pt = self.parts(w)
        if alg == "l2-sam":
            norm = mpmath.sqrt(mpmath.fdot(pt.F, pt.F))
            if not norm:
                raise CollapseError("l2-SAM perturbation undefined: the gradient is 0 (collapse)")
            c = rho / norm
            return [c * f for f in pt.F]
        if alg == "linf-sam":
            return [rho * mp_sign(f) for f in pt.F]
        c = rho * mpmath.exp(pt.log_S)  # usam
        return [c * f for f in pt.F]

    # --- flows -----------------------------------------------------------------------
    def rescaled_mp(self, w: list, sigma: Sequence | None = None) -> tuple[list, mpf]:
        """``(dW/dtau, log S(W~))`` at the flat state ``w`` (lists of mpf)."""
        if self._fast:
            return self._rescaled_one_exp(w, sigma)
        if self.algorithm == "gd" or self.rho == 0:
            wt = w
        else:
            wt = [a + b for a, b in zip(w, self.perturbation(w, sigma))]
        pt = self.parts(wt)
        return [-f for f in pt.F], pt.log_S

    def _rescaled_one_exp(self, w: list, sigma) -> tuple[list, mpf]:
        """Fast path for one example and the exponential loss (THEORY.md's setting).

        Then ``q = 1``, ``g = -A[0]`` and ``log S = -z``: the field is a handful of products.
        The arithmetic runs on raw libmp tuples -- the same operations and roundings as the
        generic path (tests compare both with NumpyField), at about a third of the cost.
        """
        prec = mpmath.mp.prec
        L, d, a = self.depth, self.dim, self._a_raw
        W = [v._mpf_ for v in w]
        alg = self.algorithm
        if alg != "gd" and self.rho:
            P = _others_raw(W, L, d, prec)
            if alg == "l2-sam":
                # eps = rho F/|F| with F[k] = -a_j P[k]
                F = [mpf_neg(mpf_mul(a[k % d], P[k], prec, "n")) for k in range(L * d)]
                nrm2 = fzero
                for f in F:
                    nrm2 = mpf_add(nrm2, mpf_mul(f, f, prec, "n"), prec, "n")
                if nrm2 == fzero:
                    raise CollapseError("l2-SAM perturbation undefined: the gradient is 0 (collapse)")
                c = mpf_div(self._rho_raw, mpf_sqrt(nrm2, prec, "n"), prec, "n")
                W = [mpf_add(x, mpf_mul(c, f, prec, "n"), prec, "n") for x, f in zip(W, F)]
            else:  # linf-sam
                if sigma is None:
                    # sign(F[k]) = sign(-a_j P[k])
                    sig = [-_rsign(a[k % d]) * _rsign(P[k]) for k in range(L * d)]
                else:
                    sig = sigma
                rho = self._rho_raw
                W = [x if not s_ else mpf_add(x, _scale_raw(rho, s_, prec), prec, "n") for x, s_ in zip(W, sig)]
        P = _others_raw(W, L, d, prec)
        z = fzero
        for j in range(d):
            z = mpf_add(z, mpf_mul(a[j], mpf_mul(P[j], W[j], prec, "n"), prec, "n"), prec, "n")
        mk = mpmath.mp.make_mpf
        # dW/dtau = -F(W~) = a_j P[k]; log S = -z
        return [mk(mpf_mul(a[k % d], P[k], prec, "n")) for k in range(L * d)], mk(mpf_neg(z))

    def physical_mp(self, w: list, sigma: Sequence | None = None) -> list:
        """``dW/dt = -grad L(W + eps(W))``."""
        dw, log_S = self.rescaled_mp(w, sigma)
        S = mpmath.exp(log_S)
        return [S * v for v in dw]

    def log_loss(self, w: list) -> mpf:
        """Natural log of ``sum_i l(z_i)`` at ``w`` -- finite at any margin (no underflow in mp)."""
        z = self.margins(self.beta(w))
        if self.loss == "exp":
            return _logsumexp([-zi for zi in z])
        # log l(z) = log log1p(e^-z); log1p keeps full relative precision for large z
        return _logsumexp([mpmath.log(mpmath.log1p(mpmath.exp(-zi))) for zi in z])


def _rsign(t) -> int:
    if t == fzero:
        return 0
    return -1 if t[0] else 1


def _scale_raw(rho, s, prec):
    if s == 1:
        return rho
    if s == -1:
        return mpf_neg(rho)
    sr = s._mpf_ if isinstance(s, mpf) else from_int(s) if isinstance(s, int) else mpf(s)._mpf_
    return mpf_mul(rho, sr, prec, "n")


def _others_raw(W: list, L: int, d: int, prec: int) -> list:
    """Raw-tuple version of :meth:`MpField.others_product`."""
    if L == 1:
        return [from_int(1)] * d
    if L == 2:
        return W[d:] + W[:d]
    one = from_int(1)
    P = [None] * (L * d)
    for j in range(d):
        col = W[j::d]
        pre = [one] * L
        for l in range(1, L):
            pre[l] = mpf_mul(pre[l - 1], col[l - 1], prec, "n")
        suf = one
        for l in range(L - 1, -1, -1):
            P[l * d + j] = mpf_mul(pre[l], suf, prec, "n")
            suf = mpf_mul(suf, col[l], prec, "n")
    return P


def _log1pexp(z) -> mpf:
    """``log(1 + e^z)`` without cancellation on either side."""
    if z > 0:
        return z + mpmath.log1p(mpmath.exp(-z))
    return mpmath.log1p(mpmath.exp(z))


def _logsumexp(v: list) -> mpf:
    if len(v) == 1:
        return v[0]
    m = max(v)
    return m + mpmath.log(mpmath.fsum(mpmath.exp(x - m) for x in v))
