"""The log-time system: the rescaled flow with both clocks carried as logarithms.

Physical time ``t`` leaves float64's range at 1e308 and the loss ``e^{-z}`` underflows at
``z ~ 745``, so no integrator here ever holds ``t``, ``tau`` or the loss itself.  The
clocks are

* ``s = ln(1 + t)``   (``0`` at ``t = 0``; ``s ~ ln t`` for large ``t``),
* ``r = ln(1 + tau)`` (``tau`` the rescaled time, ``dtau = S(W~) dt``, ``S = sum_i |l'(z~_i)|``),

and the integrated state is ``y = (W, delta, r)`` with ``delta = s - phi(W)``,
``phi = -log S(W~) = log(dt/dtau)``, in a clock ``nu`` that advances with the arc length
of the weights' path (in units of the initial weight norm) and with ``ln(1 + tau)``::

    dnu/dtau = D = b + A,   b = 1/(1 + tau) = e^{-r},   A = |f| / w_scale,
    dW/dnu = f / D,   dr/dnu = b / D,   ddelta/dnu = (e^{-delta} - dphi/dtau) / D,
    f = dW/dtau = -F(W~),   dphi/dtau = grad phi . f,   s = phi(W) + delta.

(``ds/dtau = e^{phi - s} = e^{-delta}`` is ``dt/dtau / (1 + t)``.)

Why ``tau`` is exact: for one example ``S = |l'(z~)|`` and this is THEORY.md's loss-free
flow; for several examples ``dtau = sum_i |l'(z~_i)| dt`` is the same kind of change of
clock -- a reparametrisation of the *same* curve ``W``, valid as long as ``int S dt``
diverges (it does whenever the loss does not vanish in finite time), so every ``t`` maps
to a finite ``tau`` and back.

Why this form -- float64 has 16 digits and ``ln t`` may be 1e9 or 1e300:

* ``W`` never depends on ``t``.  With a clock built from ``s`` (``nu = s + r``, the
  mpmath integrator's choice, natural at 50 digits) the weights' speed depends on
  ``phi - s``, a difference of two numbers of size ``ln t``; the relative tolerance on
  ``s`` becomes an absolute error ``rtol * ln t`` in an exponent and past ``ln t ~ 1e5``
  the steps collapse.
* ``s`` itself is not integrated: it is slaved to ``phi`` (``s ~ phi - ln dphi/dtau``) by a
  relaxation of rate ``e^{-delta}/D ~ 2 ln t``, and its right-hand side ``e^{phi - s}``
  would be the exponential of a cancellation of two huge numbers -- rounding noise that
  no step-size control can get under.  ``delta`` is of the size of ``ln ln t``: it is
  accurate to ``rtol`` absolutely, ``e^{-delta}`` has no cancellation, and
  ``s = phi(W) + delta`` is as accurate as ``W`` makes ``phi`` (relative ``rtol``).  The
  relaxation stays stiff; the implicit methods (LSODA switches to BDF by itself) take it
  with the analytic Jacobian.
* ``W`` is close to linear in ``nu`` in every regime, so steps grow with ``nu`` and a run
  to ``|w| ~ 1e150`` (``log10 t ~ 1e300``) takes a few thousand of them: exponential growth
  (``L = 2``, ``w ~ e^{x tau}``) and finite-``tau`` blow-up (``L >= 3``) are straight lines
  in arc length; a collapse to ``W = 0`` has finite length; at an (asymptotic)
  equilibrium ``A -> 0`` and ``nu ~ ln tau``, so ``t = 1e400`` is reached even when ``t``
  grows only linearly in ``tau`` (linf-SAM with every coordinate held at 0 needs
  ``tau ~ 1e400``).  (A clock ``ln |W|`` would make growth exponential in ``nu``: ~25
  steps per unit at ``rtol = 1e-9``.)

Horizons are events: ``s = ln(1 + T)`` (physical) or ``r = ln(1 + tau_T)`` (rescaled).

>>> import math
>>> round(log10_t_from_s(400 * math.log(10)), 9), log10_t_from_s(0.0)
(400.0, -inf)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

LN10 = math.log(10.0)
# Largest log of ds/dnu used (it would overflow at the start of a run whose margins are
# already huge; s then catches up with phi within a step either way).
_LOG_C_MAX = 690.0
_DELTA_MIN = -650.0


def _norm(v: np.ndarray) -> float:
    """Euclidean norm without overflow (weights may reach 1e150, their squares 1e300+)."""
    n2 = float(v @ v) if v.ndim == 1 else math.inf
    if 1e-280 < n2 < 1e280:
        return math.sqrt(n2)          # the common case, one reduction (called every step)
    m = float(np.abs(v).max()) if v.size else 0.0
    if m == 0.0 or not math.isfinite(m):
        return m
    return m * math.sqrt(float(np.dot(v / m, v / m)))


def _logaddexp(a: float, b: float) -> float:
    """``log(e^a + e^b)`` of two floats (numpy's ufunc costs a microsecond per scalar call)."""
    hi, lo = (a, b) if a >= b else (b, a)
    return hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))


def log10_t_from_s(s: float | np.ndarray) -> float | np.ndarray:
    """``log10 t`` from ``s = ln(1 + t)``, stable at both ends (``-inf`` at ``t = 0``)."""
    s_arr = np.asarray(s, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        small = np.log10(np.expm1(np.minimum(s_arr, 50.0)))
        big = s_arr / LN10 + np.log10(-np.expm1(-np.maximum(s_arr, 50.0)))
        out = np.where(s_arr > 50.0, big, small)
        out = np.where(s_arr <= 0.0, -np.inf, out)
    return float(out) if np.ndim(s) == 0 else out


def tau_from_r(r: float | np.ndarray) -> float | np.ndarray:
    """``tau = expm1(r)`` (``inf`` once it passes float64's range)."""
    with np.errstate(over="ignore"):
        out = np.expm1(np.asarray(r, float))
    return float(out) if np.ndim(r) == 0 else out


def where(s: float, r: float) -> str:
    """``"log10 t = ... (tau = ...)"``: where a status message says a run stopped."""
    return f"log10 t = {log10_t_from_s(s):.6g} (tau = {tau_from_r(r):.6g})"


def frozen_clocks(time: str, s: float, r: float, phi: float, s_target: float, r_target: float) -> tuple[float, float]:
    """``(s, r)`` at the horizon for ``W`` held fixed from ``(s, r)``: ``dt/dtau = e^phi`` is then
    constant, so ``t`` grows linearly in ``tau`` (both float64 drivers stop integrating there)."""
    if time == "physical":
        # tau_T = tau + (T - t) e^{-phi}; T - t = e^{s1} - e^{s} (as logs, T past 1e308)
        log_gap = s_target + math.log(-math.expm1(s - s_target)) if s_target > s else -math.inf
        return s_target, _logaddexp(r, log_gap - phi)
    log_gap = r_target + math.log(-math.expm1(r - r_target)) if r_target > r else -math.inf
    return _logaddexp(s, log_gap + phi), r_target


def ln1p_of_horizon(horizon) -> float:
    """``ln(1 + T)`` of a :class:`~sambias.horizon.Horizon` (``ln T`` once ``1`` is negligible)."""
    if horizon.log10 < 15.0:
        return math.log1p(float(horizon.value))
    return horizon.ln + math.log1p(10.0 ** -horizon.log10)


class LogTimeSystem:
    """The ``(W, delta, r)`` system in the clock ``nu`` for a given rescaled vector field.

    ``flow(w) -> (dW/dtau, log S)``, ``grad(w) -> d log S(W~(W))/dW`` and
    ``flow_jac(w) -> d(dW/dtau)/dW`` act on full-length (``L*d``) weights (optionally
    ``flow_and_grad(w)`` gives the first two at once); ``free``
    selects the coordinates that are integrated (the rest are held fixed at their values
    in ``w_fixed`` -- linf-SAM's pinned coordinates).  ``w_scale`` is the length unit of
    the clock (``A = |f| / w_scale``; the initial weight norm).
    ``fun``/``jac`` are what ``solve_ivp`` gets; ``nfev``/``njev`` count their calls.
    """

    def __init__(self, flow: Callable, grad: Callable, flow_jac: Callable, w_fixed: np.ndarray,
                 free: np.ndarray | None = None, *, w_scale: float = 1.0,
                 flow_and_grad: Callable | None = None, couple_clock: bool = True) -> None:
        self.flow = flow
        self.grad = grad
        # one pass for (f, log S, grad log S) when the field offers it (NumpyField does)
        self.flow_and_grad = flow_and_grad or (lambda w: (*flow(w), grad(w)))
        self.flow_jac = flow_jac
        self.w_fixed = np.array(w_fixed, float)
        self.N = self.w_fixed.size
        self.free = np.arange(self.N) if free is None else np.asarray(free, int)
        self.m = self.free.size
        self.w_scale = float(w_scale)
        self.couple_clock = couple_clock
        self.nfev = 0
        self.njev = 0
        self._memo_key: bytes | None = None
        self._memo = None

    def evaluate(self, w: np.ndarray):
        """``flow_and_grad(w)``, remembered for the last ``w``: the solver's last stage, the
        events and :meth:`unpack` all ask about the same step end (the Filippov fields cost
        several evaluations of the plain field each)."""
        w = np.asarray(w, float)
        key = w.tobytes()
        if key != self._memo_key:
            self._memo = self.flow_and_grad(w)
            self._memo_key = key
        return self._memo

    # --- state packing ------------------------------------------------------------
    def phi(self, w: np.ndarray) -> float:
        """``phi(W) = log dt/dtau = -log S(W~)``."""
        return -float(self.evaluate(w)[1])

    def pack(self, w: np.ndarray, s: float, r: float) -> np.ndarray:
        """State vector of ``(w, s, r)``.

        ``delta = s - phi`` is kept above ``_DELTA_MIN``: a run that starts with a margin
        ``phi ~ 1e200`` would begin with ``delta = -1e200`` and ``e^{-delta}`` overflowing.
        The clamp starts ``t`` at ``e^{phi - 650}`` instead of ``0``, below the time scale
        ``e^{phi}/phi'`` on which ``W`` moves by a factor ``e^{-650} phi'``.
        """
        w = np.asarray(w, float)
        return np.concatenate([w[self.free], [max(s - self.phi(w), _DELTA_MIN), r]])

    def clock_stiffness(self, y: np.ndarray) -> float:
        """``e^{-delta}/D``: the rate at which ``delta`` relaxes (``~ 2 ln t`` in a growing run)."""
        return float(self._parts(y)[7])

    def first_step(self, y: np.ndarray, default: float) -> float:
        """A first step that resolves the start of ``delta``'s relaxation.

        At ``t = 0`` with a large margin ``delta = -phi`` and ``ddelta/dnu ~ e^{phi}``: the
        solution is ``ln(e^{-phi} + tau)``, smooth in ``ln tau``, so a first step of 1% of its
        time scale lets the steps grow geometrically through it (explicit starts such as
        LSODA's Adams phase would otherwise jump far past the relaxed value).
        """
        rate = abs(float(self.fun(0.0, y)[self.m]))
        self.nfev -= 1
        return min(default, 0.01 / rate) if rate > 0.0 else default

    def weights(self, y: np.ndarray) -> np.ndarray:
        """Full flat weights from a state vector (or ``(m+2, k)`` array of them)."""
        y = np.asarray(y, float)
        if y.ndim == 1:
            if self.m == self.N:
                return y[:self.m].copy()
            w = self.w_fixed.copy()
            w[self.free] = y[:self.m]
            return w
        w = np.repeat(self.w_fixed[:, None], y.shape[1], axis=1)
        w[self.free] = y[:self.m]
        return w

    def unpack(self, y: np.ndarray) -> tuple[np.ndarray, float, float]:
        """``(w, s, r)`` of a state vector."""
        w = self.weights(y)
        return w, self.phi(w) + float(y[self.m]), float(y[self.m + 1])

    # --- the right-hand side -----------------------------------------------------------
    def _parts(self, y: np.ndarray):
        w = self.weights(y)
        dw, log_S, gl = self.evaluate(w)
        if self.m == self.N:
            f, g_log_S = np.asarray(dw, float), np.asarray(gl, float)
        else:
            f, g_log_S = np.asarray(dw, float)[self.free], np.asarray(gl, float)[self.free]
        nf = _norm(f)
        nw = self.w_scale
        r = float(y[self.m + 1])
        # D = b + A in logs: past tau ~ 1e308 (an equilibrium run to t = 1e400) b underflows
        log_D = _logaddexp(-r, math.log(nf / nw) if nf > 0.0 else -math.inf)
        inv_D = math.exp(min(-log_D, _LOG_C_MAX))
        b_over_D = math.exp(-r - log_D)
        # e^{-delta} / D; capped: a start with a huge margin makes s jump to phi at once
        E = math.exp(min(-float(y[self.m]) - log_D, _LOG_C_MAX))
        G = -float(g_log_S @ f) * inv_D     # (dphi/dtau) / D
        return w, f, g_log_S, nf, nw, b_over_D, inv_D, E, G

    def fun(self, nu: float, y: np.ndarray) -> np.ndarray:
        self.nfev += 1
        w, f, g, nf, nw, bD, iD, E, G = self._parts(y)
        out = np.empty(self.m + 2)
        out[:self.m] = f * iD
        out[self.m] = E - G
        out[self.m + 1] = bD
        return out

    def jac(self, nu: float, y: np.ndarray) -> np.ndarray:
        """Analytic Jacobian of :meth:`fun` (``(m+2, m+2)``), up to the terms below.

        With ``A = |f|/n`` (``n`` the constant ``w_scale``): ``dA/dW = J_f^T f/(|f| n)``;
        ``d(f/D)/dW = J_f/D - f (dA/dW)^T/D^2``, ``d(f/D)/dr = b f/D^2``;
        ``E = e^{-delta}/D``: ``dE/dW = -E dA/dW/D``, ``dE/ddelta = -E``, ``dE/dr = E b/D``;
        ``G = (grad phi . f)/D``: ``dG/dW = (J_f^T grad phi + H_phi f)/D - G dA/dW/D``,
        ``dG/dr = G b/D``; ``d(b/D)/dW = -b dA/dW/D^2``, ``d(b/D)/dr = -b A/D^2``.
        The Hessian term ``H_phi f`` of the ``delta`` row is left out (no field provides it).
        With ``couple_clock=False`` the ``delta`` row's ``W`` entries are left out altogether:
        no other row depends on ``delta``, so Newton still converges, whereas in linf-SAM's
        Filippov modes (a column held at 0, or columns growing at very different rates) the entries -- ``h G/|W|`` against a ``W`` block entry
        of ``1`` -- make LU's partial pivoting choose the ``delta`` row and lose every digit
        of the ``W`` solve once ``E h`` passes ~1e20 (issue 10.1: steps collapsed to
        ``1e-7 nu``, the run crawled for minutes and crashed).  Smooth fields keep them:
        there, without them, LSODA stalls on starts with huge margins.
        """
        self.njev += 1
        m = self.m
        w, f, g, nf, nw, bD, iD, E, G = self._parts(y)
        Jf = np.asarray(self.flow_jac(w), float)[np.ix_(self.free, self.free)]
        dA = np.zeros(m)
        if nf > 0.0:
            dA += (Jf.T @ (f / nf)) / nw
        AD = 1.0 - bD          # A / D
        J = np.zeros((m + 2, m + 2))
        J[:m, :m] = Jf * iD - np.outer(f, dA) * iD * iD
        J[:m, m + 1] = bD * iD * f
        if self.couple_clock:
            J[m, :m] = -(E - G) * dA * iD + (Jf.T @ g) * iD
        J[m, m] = -E
        J[m, m + 1] = (E - G) * bD
        J[m + 1, :m] = -bD * iD * dA
        J[m + 1, m + 1] = -bD * AD
        return J
