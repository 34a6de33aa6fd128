"""linf-SAM's discontinuous flow in the Filippov sense: frozen sign patterns, sliding, events.

linf-SAM perturbs by ``rho * sign(F(W))`` with ``F[l, j] = g_j * prod_{m != l} W[m, j]``
(``g = -A.T q``, THEORY.md; the field is ``sambias.symbolic.GeneratedField``).  A switching
function ``F[l, j]`` changes sign only where one of its factors does, so the discontinuity
surfaces are

* the coordinate hyperplanes ``W[k, j] = 0`` (for ``L >= 2``; crossing one flips the
  ``L - 1`` switches ``F[l, j]``, ``l != k``, at once), and
* ``g_j(W) = 0`` (only when ``g`` is not constant, i.e. several examples).

Between events the *primitive signs* ``pw = sign(W)`` and ``pg = sign(g)`` are frozen and
the perturbation uses ``sigma[l, j] = G_j prod_{m != l} Pi[m, j]`` with ``Pi = pw``,
``G = pg``.  On a sliding surface the frozen sign is replaced by an equivalent control in
``[-1, 1]`` (Filippov's solution: the convex combination of the two sides' fields that
keeps the state on the surface):

* a coordinate ``W[k, j]`` *pinned* at exactly 0 gets ``Pi[k, j] = c`` with ``c`` the
  root of ``dW[k, j]/dtau = -g~_j prod_{m != k} (W[m, j] + rho c s_m) = 0`` of smallest
  ``|c|`` (for ``L = 2`` the only root, ``c = -W[1-k, j] / (rho G_j)``: THEORY.md's
  "driven to 0 and held there" while ``|W[1-k, j]| < rho``); with two or more pinned
  coordinates in a column every ``Pi`` of them is 0 and the column is frozen;
* a column sliding on ``g_j = 0`` gets ``G_j = c`` solving ``dg_j/dtau = 0``.

Pinned coordinates are not integrated at all (they stay exactly ``0.0``).  Events end a
segment: a free coordinate reaching 0, ``g_j`` reaching 0, or an equivalent control
reaching ``+-1`` (one side's field stops pointing into the surface: release).  At an event
:meth:`FilippovModel.settle` decides for every coordinate at 0 whether it crosses, slides
or leaves, from the normal velocities on its two sides.

Both drivers run this one model: float64 (``simulate``) through :class:`FilippovModel`, mpmath
(``simulate_mp``) through :class:`MpFilippovModel`, which changes only the arithmetic (issue 9:
the two copies had drifted apart; tests/test_flows_precisions.py compares them state by state).

>>> from sambias import Problem, Init
>>> p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=0.2))
>>> model = FilippovModel(p)
>>> mode = model.initial_mode(p.initial_weights().ravel())
>>> model.sigma(p.initial_weights().ravel(), mode).tolist()
[-1.0, -1.0, -1.0, -1.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

import numpy as np
from scipy.optimize import brentq, least_squares

from scipy.special import expit


def _logsumexp(a: np.ndarray) -> float:
    """``log(sum(exp(a)))`` of a 1-D array (scipy's costs ~80 us of argument checks a call)."""
    a = np.asarray(a, float)
    m = float(a.max())
    return m if a.size == 1 or not np.isfinite(m) else m + float(np.log(np.sum(np.exp(a - m))))


def _log_abs_dloss(z: np.ndarray, loss: str) -> np.ndarray:
    """``log |l'(z)|`` (exponential or logistic loss), never ``e^{-z}`` itself (it underflows)."""
    return -z if loss == "exp" else -np.logaddexp(0.0, z)


def _dlog_abs_dloss(z: np.ndarray, loss: str) -> np.ndarray:
    return -np.ones_like(z) if loss == "exp" else -expit(z)


def others_product(W: np.ndarray) -> np.ndarray:
    """``P[l, j] = prod_{k != l} W[k, j]`` without division (prefix/suffix products)."""
    L = W.shape[0]
    if L <= 2:
        return np.ones_like(W) if L == 1 else W[::-1].copy()
    prefix, suffix = np.ones_like(W), np.ones_like(W)
    for l in range(1, L):
        prefix[l] = prefix[l - 1] * W[l - 1]
        suffix[L - 1 - l] = suffix[L - l] * W[L - l]
    return prefix * suffix


@dataclass
class Mode:
    """The frozen discrete state of a linf-SAM segment (the same in both precisions).

    Signs are stored in the model's sign type (``float`` ``+-1.0`` in float64, Python ``int``
    ``+-1`` in mp, which the mp field takes without a conversion)."""

    pw: np.ndarray                 # (L, d) side of every coordinate, +-1
    pinned: np.ndarray             # (L, d) bool, coordinate held at exactly 0
    pg: np.ndarray                 # (d,) sign of g_j, +-1, 0 where g_j is identically 0
    gslide: np.ndarray             # (d,) bool, column sliding on g_j = 0
    cg: np.ndarray = dc_field(default=None)  # (d,) last equivalent controls of sliding g_j

    def copy(self) -> "Mode":
        return Mode(self.pw.copy(), self.pinned.copy(), self.pg.copy(), self.gslide.copy(),
                    None if self.cg is None else self.cg.copy())

    def describe(self) -> dict:
        return {"pinned": [int(i) for i in np.flatnonzero(self.pinned.ravel())],
                "g_sliding": [int(j) for j in np.flatnonzero(self.gslide)]}


def _illinois(f, a, b, fa, fb, rtol):
    """Root of ``f`` in ``[a, b]`` (``fa``, ``fb`` of opposite signs), regula falsi, Illinois."""
    side, prev = 0, None
    x = a
    for _ in range(200):
        x = (a * fb - b * fa) / (fb - fa)
        if prev is not None and abs(x - prev) <= rtol * (1 + abs(x)):
            return x
        prev = x
        fx = f(x)
        if fx == 0:
            return x
        if (fx > 0) == (fb > 0):
            b, fb = x, fx
            if side == -1:
                fa /= 2
            side = -1
        else:
            a, fa = x, fx
            if side == 1:
                fb /= 2
            side = 1
    return x


class FilippovModel:
    """Sign patterns, equivalent controls, event functions and the settling rule.

    One implementation for both precisions: the float64 driver uses this class (numpy float
    arrays), the mp driver :class:`MpFilippovModel`, which only swaps the arithmetic -- the
    field evaluation, ``g`` and its rate, ``exp``/``log``, the scalar and sign types and the
    root solvers of the equivalent controls (issue 9: the two copies had drifted apart).
    """

    # --- the arithmetic (MpFilippovModel overrides these) ----------------------------
    _exp, _log = staticmethod(math.exp), staticmethod(math.log)
    zero, one = 0.0, 1.0
    settle_rel, settle_rho = 1e-10, 1e-12     # settle_tol = rel (1 + max |dW/dtau|) + rho_part rho

    def _weights(self, w) -> np.ndarray:
        return np.asarray(w, float)

    def _vec(self, v) -> np.ndarray:
        return np.array(v, float)

    def _signs_of(self, x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, -1.0, 1.0)

    def _side(self, positive: bool):
        return 1.0 if positive else -1.0

    def _field(self, w, sigma, grad: bool = False):
        """``(dW/dtau, log S)`` (``grad``: and ``d log S/dW``) of the field with switches ``sigma``."""
        if not grad:
            return self.field.rescaled(w, sigma)
        if hasattr(self.field, "rescaled_with_grad"):
            dw, log_S, gl = self.field.rescaled_with_grad(w, sigma)
        else:
            dw, log_S = self.field.rescaled(w, sigma)
            gl = self.field.rescaled_log_speed_grad(w, sigma)
        return np.array(dw, float), float(log_S), np.asarray(gl, float)

    def _bracketed_root(self, f, lo, hi, flo, fhi):
        return brentq(f, lo, hi, xtol=1e-15)

    def _joint_root(self, residual, x0):
        """Several sliding columns: the joint system (float64: bounded least squares)."""
        return least_squares(residual, np.clip(np.asarray(x0, float), -1.0, 1.0), bounds=(-1.0, 1.0),
                             xtol=1e-15).x

    def __init__(self, problem, field=None) -> None:
        self.problem = problem
        if field is None:
            from sambias.symbolic import GeneratedField
            field = GeneratedField(problem)
        self.field = field
        self._setup(problem, float(problem.rho))

    def _setup(self, problem, rho) -> None:
        self.L, self.d = problem.depth, problem.dim
        self.N = self.L * self.d
        self.rho = rho
        self.A = np.asarray(problem.signed_data, float)
        self.loss = problem.loss
        # g = -A.T q is constant for one example; a column of zeros gives g_j = 0 always.
        self.g_varies = problem.n > 1
        self.g_trivial = np.all(self.A == 0.0, axis=0)
        self.coord_surfaces = self.L >= 2
        self._base_key, self._base_sigma = None, None

    # --- g and its motion ---------------------------------------------------------
    def _beta_parts(self, W: np.ndarray):
        P = others_product(W)
        return P, P[0] * W[0]

    def g(self, w: np.ndarray) -> np.ndarray:
        """``g(W) = -A.T q(W)`` (the common factor of every column's switches)."""
        W = np.asarray(w, float).reshape(self.L, self.d)
        _, beta = self._beta_parts(W)
        logl = _log_abs_dloss(self.A @ beta, self.loss)
        q = np.exp(logl - _logsumexp(logl))
        return -(self.A.T @ q)

    def g_rate(self, w: np.ndarray, dw: np.ndarray) -> np.ndarray:
        """``dg/dtau`` along a velocity ``dw`` of the weights."""
        W = np.asarray(w, float).reshape(self.L, self.d)
        P, beta = self._beta_parts(W)
        z = self.A @ beta
        logl = _log_abs_dloss(z, self.loss)
        q = np.exp(logl - _logsumexp(logl))
        dphi = _dlog_abs_dloss(z, self.loss)
        dbeta = np.sum(P * np.asarray(dw, float).reshape(self.L, self.d), axis=0)
        dz = self.A @ dbeta
        dq = q * dphi * dz - q * np.dot(q, dphi * dz)
        return -(self.A.T @ dq)

    # --- modes and sigma ------------------------------------------------------------
    def initial_mode(self, w: np.ndarray) -> Mode:
        W = self._weights(w).reshape(self.L, self.d)
        g = self.g(w)
        pg = self._signs_of(g)
        pg[self.g_trivial] = 0
        cg = np.empty(self.d, dtype=pg.dtype if pg.dtype == object else float)
        cg[:] = self.zero
        return Mode(pw=self._signs_of(W), pinned=np.zeros((self.L, self.d), bool), pg=pg,
                    gslide=np.zeros(self.d, bool), cg=cg)

    def start(self, w) -> tuple[Mode, list | None]:
        """The mode at ``t = 0``: coordinates starting at exactly 0 settled (``None``: none did)."""
        mode = self.initial_mode(w)
        zero = (self._weights(w) == 0) if self.coord_surfaces else np.zeros(self.N, bool)
        if not zero.any():
            return mode, None
        return self.settle(w, mode, zero, np.zeros(self.d, bool), tol=self.settle_tol(w, mode))

    def settle_tol(self, w, mode: Mode):
        """Normal velocities within this of 0 count as tangent (the driver's precision)."""
        dw = self._flow(w, mode)[0]
        return self.settle_rel * (1 + max(abs(v) for v in dw)) + self.settle_rho * self.rho

    def pin_control(self, W: np.ndarray, Pi: np.ndarray, G: np.ndarray, k: int, j: int):
        """Unclipped equivalent control of the single pinned ``(k, j)``: the root of its own
        velocity of smallest ``|c|`` (``L = 2``: ``c = -W[1-k, j]/(rho G_j)``); ``None``: none."""
        best = None
        for m in range(self.L):
            if m == k:
                continue
            # sigma[m, j] = c * s_m with s_m the product of the other fixed signs
            s_m = G[j]
            for l in range(self.L):
                if l != m and l != k:
                    s_m = s_m * Pi[l, j]
            if s_m == 0:
                continue
            c = -W[m, j] / (self.rho * s_m)
            if best is None or abs(c) < abs(best):
                best = c
        return best

    def _column_controls(self, W: np.ndarray, Pi: np.ndarray, G: np.ndarray, pinned: np.ndarray) -> None:
        """Fill ``Pi`` at pinned coordinates with their equivalent controls (in place)."""
        for j in np.flatnonzero(pinned.any(axis=0)):
            ks = np.flatnonzero(pinned[:, j])
            if ks.size >= 2 or G[j] == 0 or self.rho == 0:
                Pi[ks, j] = self.zero
                continue
            c = self.pin_control(W, Pi, G, ks[0], j)
            Pi[ks[0], j] = self.zero if c is None else max(-self.one, min(self.one, c))

    def signs(self, w: np.ndarray, mode: Mode, cg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(Pi, G)``: primitive signs with equivalent controls substituted."""
        if mode.pw.dtype != object:
            Pi, G = mode.pw.astype(float), mode.pg.astype(float)
        else:
            Pi, G = mode.pw.copy(), mode.pg.copy()
        if mode.gslide.any():
            G[mode.gslide] = (mode.cg if cg is None else cg)[mode.gslide]
        if mode.pinned.any():
            self._column_controls(self._weights(w).reshape(self.L, self.d), Pi, G, mode.pinned)
        return Pi, G

    def sigma_from(self, Pi: np.ndarray, G: np.ndarray) -> np.ndarray:
        return (G[None, :] * others_product(Pi)).ravel()

    def sigma(self, w: np.ndarray, mode: Mode, cg: np.ndarray | None = None) -> np.ndarray:
        """The switch values (``L*d``, in ``[-1, 1]``) the field uses in this mode."""
        Pi, G = self.signs(w, mode, cg)
        return self.sigma_from(Pi, G)

    def base_sigma(self, mode: Mode) -> np.ndarray:
        """The switches off every sliding surface, cached on the signs they come from."""
        key = (mode.pw.tobytes() if mode.pw.dtype != object else tuple(mode.pw.ravel().tolist()),
               mode.pg.tobytes() if mode.pg.dtype != object else tuple(mode.pg.tolist()))
        if key != self._base_key:
            self._base_key, self._base_sigma = key, self.sigma_from(mode.pw, mode.pg)
        return self._base_sigma

    def free_sigma(self, mode: Mode) -> list | None:
        """The switches as a list when nothing slides in ``mode`` (``None`` otherwise)."""
        return None if mode.pinned.any() or mode.gslide.any() else list(self.base_sigma(mode))

    def solve_g_controls(self, w: np.ndarray, mode: Mode) -> np.ndarray:
        """Equivalent controls ``G_j`` of the columns sliding on ``g_j = 0`` (``dg_j/dtau = 0``)."""
        cols = np.flatnonzero(mode.gslide)
        cg = mode.cg.copy()
        if cols.size == 0:
            return cg
        drop = mode.pinned.ravel()

        def residual(vals):
            trial = cg.copy()
            trial[cols] = vals
            dw = self._vec(self._field(w, self.sigma(w, mode, trial))[0])
            dw[drop] = self.zero            # pinned coordinates do not move
            return self.g_rate(w, dw)[cols]

        if cols.size == 1:
            cg[cols] = self._root_in_unit(lambda v: residual([v])[0])
        else:
            cg[cols] = self._joint_root(residual, cg[cols])
        mode.cg = cg
        return cg

    def _root_in_unit(self, f):
        """A root of ``f`` in ``[-1, 1]``; without a sign change the end of smaller ``|f|``."""
        lo, hi = -self.one, self.one
        flo, fhi = f(lo), f(hi)
        if flo == 0:
            return lo
        if fhi == 0 or (flo > 0) == (fhi > 0):
            return hi if abs(fhi) < abs(flo) else lo
        return self._bracketed_root(f, lo, hi, flo, fhi)

    # --- the flow in a mode -----------------------------------------------------------
    def _sides(self, w, Pi, G, k: int, j: int, grad: bool):
        """The fields on the two sides ``+``, ``-`` of the single pinned coordinate ``(k, j)``."""
        out = []
        for side in (self.one, -self.one):
            P = Pi.copy()
            P[k, j] = side
            res = self._field(w, self.sigma_from(P, G), grad)
            out.append((self._vec(res[0]),) + tuple(res[1:]))
        return out

    def _mu(self, w, Pi, G, k: int, j: int):
        """Filippov weight of the ``+`` side in rescaled time: the normal velocity vanishes."""
        # (the kernel with the gradient, as the clock it differentiates: the two kernels'
        # round-off differs, and a central difference over 1e-7 would see it)
        (fp, *_), (fm, *_) = self._sides(w, Pi, G, k, j, True)
        i = k * self.d + j
        den = fm[i] - fp[i]
        return max(self.zero, min(self.one, fm[i] / den)) if den != 0 else self.one / 2

    def _flow(self, w, mode: Mode, grad: bool = False):
        """``(dW/dtau, log S)`` in the mode (``grad``: and ``g``, see :meth:`flow_and_grad`).

        Off sliding surfaces this is the field with the frozen switches.  A coordinate
        ``(k, j)`` alone in its column on a surface gets the Filippov convex combination of
        the two sides' *rescaled* fields, ``f = mu f+ + (1 - mu) f-`` with ``mu`` making its
        velocity 0, and -- because the physical flow is ``S f`` and ``S`` jumps across the
        surface -- the clock ``dt/dtau = mu e^{phi+} + (1 - mu) e^{phi-}`` (the same
        combination of the physical-time fields, written in ``tau``).  A column with two or
        more coordinates held (a corner of codimension >= 2) is frozen; its Filippov set is
        not a single vector, and its clock takes the sign pattern the coordinates arrived
        with -- what discrete linf-SAM keeps doing there (its iterates flip all signs of
        the column together each step; tests/test_flows_precisions.py checks the closed form).
        """
        pinned = mode.pinned
        any_pin, any_g = pinned.any(), mode.gslide.any()
        if not any_pin and not any_g:
            return self._field(w, self.base_sigma(mode), grad)
        cg = self.solve_g_controls(w, mode) if any_g else None
        Pi, G = self.signs(w, mode, cg)
        res = self._field(w, self.sigma_from(Pi, G), grad)
        dw, log_S = self._vec(res[0]), res[1]
        drop = pinned.ravel()
        if not any_pin or self.rho == 0:
            dw[drop] = self.zero
            if not grad:
                return dw, log_S
            gl = res[2] if cg is None else self._with_control_motion(w, mode, dw, res[2])
            return dw, log_S, gl
        counts = pinned.sum(axis=0)
        corners = np.flatnonzero(counts >= 2)
        g_base = res[2] if grad else None
        phi = -log_S
        Pc = Pi
        if corners.size:
            # clock of the corners: their arrival sign pattern (their velocity stays 0)
            Pc = Pi.copy()
            Pc[:, corners] = np.where(pinned[:, corners], mode.pw[:, corners], Pi[:, corners])
            resc = self._field(w, self.sigma_from(Pc, G), grad)
            phi = -resc[1]
            if grad:
                g_base = resc[2]
        base_phi = phi
        dw_base = dw.copy()
        dw_base[drop] = self.zero
        out = dw_base.copy()
        slides = []
        for j in np.flatnonzero(counts == 1):
            k = int(np.flatnonzero(pinned[:, j])[0])
            sides = self._sides(w, Pi, G, k, j, grad)
            (fp, lp, *gp), (fm, lm, *gm) = sides
            if Pc is not Pi:     # velocities with the corners at 0, clocks with their pattern
                (_, lp, *gp), (_, lm, *gm) = self._sides(w, Pc, G, k, j, grad)
            i = k * self.d + j
            den = fm[i] - fp[i]
            mu = max(self.zero, min(self.one, fm[i] / den)) if den != 0 else self.one / 2
            comb = fp * mu + fm * (1 - mu)     # (array first: mpf * array converts it via repr)
            comb[drop] = self.zero
            out += comb - dw_base
            # clock of this column: log(mu e^{phi+} + (1 - mu) e^{phi-}) in place of phi
            php, phm = -lp, -lm
            terms = [(m_, v) for m_, v in ((mu, php), (1 - mu, phm)) if m_ > 0]
            top = max(v for _, v in terms)
            eff = top + self._log(sum(m_ * self._exp(v - top) for m_, v in terms))
            phi += eff - base_phi
            if grad:
                slides.append((k, j, mu, php, phm, eff, gp[0], gm[0]))
        out[drop] = self.zero
        if not grad:
            return out, -phi
        # d phi/dtau along the velocity ``out``: each column's combined clock in place of the
        # base clock (along ``out``, not the column's own ``comb``: for L >= 3 the control's
        # and the convex combination's velocities differ, and float64's clock drifted by
        # 3.5e-3 in log10 t from mp's on a depth-3 pin)
        base_rate = -float(np.dot(g_base, out))
        dphi = base_rate + sum(self._clock_rate(w, Pi, G, *sl, out) - base_rate for sl in slides)
        nf2 = float(np.dot(out, out))
        g_eff = -dphi * out / nf2 if nf2 > 0.0 else np.zeros_like(out)
        return out, -phi, g_eff

    def _clock_rate(self, w, Pi, G, k, j, mu, php, phm, eff, gp, gm, v) -> float:
        """``d eff/dtau`` along ``v`` of a sliding column's combined clock (float64's log-time
        system needs it): the sides' own rates, weighted, plus the motion of ``mu`` (a central
        difference)."""
        wp = mu * math.exp(php - eff) if mu > 0.0 else 0.0
        wm = (1.0 - mu) * math.exp(phm - eff) if mu < 1.0 else 0.0
        rate_p, rate_m = -float(np.dot(gp, v)), -float(np.dot(gm, v))
        h = 1e-7 / max(float(np.max(np.abs(v))), 1e-300) * max(float(np.max(np.abs(w))), 1e-3)
        dmu = (self._mu(w + h * v, Pi, G, k, j) - self._mu(w - h * v, Pi, G, k, j)) / (2 * h)
        return wp * rate_p + wm * rate_m + (math.exp(php - eff) - math.exp(phm - eff)) * dmu

    def flow_and_grad(self, w: np.ndarray, mode: Mode):
        """``(dW/dtau, log S, g)`` in the mode: the Filippov flow (:meth:`_flow`) and its clock;
        ``g`` is a vector with ``-g . f = dphi/dtau`` (what the log-time system needs) that is
        ``d log S/dW`` off sliding surfaces."""
        return self._flow(w, mode, True)

    def _with_control_motion(self, w: np.ndarray, mode: Mode, dw: np.ndarray, gl: np.ndarray) -> np.ndarray:
        """``gl`` corrected along ``dw`` so that ``gl . dw`` is ``d log S/dtau`` *with* the
        equivalent controls of the ``g_j = 0`` slides following ``W`` (held fixed, the clock
        drifted by 1e-4 in log10 t against mp within tau = 0.2: issue 9).  A central
        difference along the flow, the controls re-solved at both ends."""
        nf2 = float(np.dot(dw, dw))
        if nf2 == 0.0:
            return gl
        h = 1e-7 / float(np.max(np.abs(dw))) * max(float(np.max(np.abs(w))), 1e-3)

        def log_S_at(x):
            m = mode.copy()
            return self._field(x, self.sigma(x, m, self.solve_g_controls(x, m)), True)[1]
        rate = (log_S_at(w + h * dw) - log_S_at(w - h * dw)) / (2.0 * h)
        return gl + ((rate - float(np.dot(gl, dw))) / nf2) * dw

    def flow(self, w: np.ndarray, mode: Mode) -> tuple[np.ndarray, float]:
        dw, log_S, _ = self.flow_and_grad(w, mode)
        return dw, log_S

    # sigma is held fixed in the derivatives: exact off sliding surfaces, of Newton quality on them
    def grad_log_speed(self, w: np.ndarray, mode: Mode) -> np.ndarray:
        return self.field.rescaled_log_speed_grad(w, self.sigma(w, mode))

    def flow_jac(self, w: np.ndarray, mode: Mode) -> np.ndarray:
        J = np.array(self.field.rescaled_jac(w, self.sigma(w, mode)), float)
        J[mode.pinned.ravel()] = 0.0
        return J

    # --- events ------------------------------------------------------------------------
    def cross_value(self, w: np.ndarray, mode: Mode) -> float:
        """``min pw * W`` over free coordinates: reaches 0 when one of them reaches 0."""
        if not self.coord_surfaces:
            return 1.0
        free = ~mode.pinned.ravel()
        if not free.any():
            return 1.0
        return float(np.min((mode.pw.ravel() * np.asarray(w, float))[free]))

    def g_inert(self, mode: Mode) -> np.ndarray:
        """Columns whose switches do not depend on ``sign(g_j)``: ``g_j`` identically 0, or
        two or more coordinates pinned (then every switch of the column is 0)."""
        return self.g_trivial | (mode.pinned.sum(axis=0) >= 2)

    def g_value(self, w: np.ndarray, mode: Mode) -> float:
        """``min pg * g`` over non-sliding columns whose switches depend on ``sign(g_j)``."""
        if not self.g_varies:
            return 1.0
        cols = ~mode.gslide & ~self.g_inert(mode)
        if not cols.any():
            return 1.0
        return float(np.min((mode.pg * self.g(w))[cols]))

    def single_pins(self, mode: Mode) -> list[int]:
        """Flat indices of the pinned coordinates alone in their column (those have a control)."""
        return [int(k * self.d + j) for k, j in zip(*np.nonzero(mode.pinned)) if mode.pinned[:, j].sum() == 1]

    def pin_release(self, w, mode: Mode, p: int):
        """``1 - |c|`` of the single pin ``p``: reaches 0 when one side stops pushing in."""
        G = mode.pg.copy()
        if mode.gslide.any():
            G = G.astype(mode.cg.dtype)
            G[mode.gslide] = mode.cg[mode.gslide]
        W = self._weights(w).reshape(self.L, self.d)
        c = self.pin_control(W, mode.pw, G, p // self.d, p % self.d)
        return self.one if c is None else 1 - abs(c)

    def release_value(self, w: np.ndarray, mode: Mode) -> float:
        """``min (1 - |c|)`` over equivalent controls: reaches 0 when a side stops pushing in."""
        vals = [1.0] + [float(self.pin_release(w, mode, p)) for p in self.single_pins(mode)]
        if mode.gslide.any():
            vals.extend(1.0 - np.abs(mode.cg[mode.gslide]))
        return float(min(vals))

    def release(self, w, mode: Mode, pins=None, cols=None, tol: float = 1e-6) -> Mode:
        """Leave the sliding surfaces whose equivalent control reached ``+-1``, to that side:
        the single pins ``pins`` and ``g``-columns ``cols`` (``None``: all with ``|c| >= 1 - tol``)."""
        Pi, _ = self.signs(w, mode)
        mode = mode.copy()
        for k, j in zip(*np.nonzero(mode.pinned)):
            hit = (abs(Pi[k, j]) >= 1 - tol) if pins is None else (k * self.d + j in pins)
            if mode.pinned[:, j].sum() == 1 and hit:
                mode.pinned[k, j] = False
                mode.pw[k, j] = self._side(Pi[k, j] > 0)
        for j in np.flatnonzero(mode.gslide):
            if (abs(mode.cg[j]) >= 1 - tol) if cols is None else (j in cols):
                mode.gslide[j] = False
                mode.pg[j] = self._side(mode.cg[j] > 0)
        return mode

    # --- settling at an event ---------------------------------------------------------
    def _normal_coord(self, w, mode, k, j, side):
        trial = mode.copy()
        trial.pinned[k, j] = False
        trial.pw[k, j] = side
        return self._flow(w, trial)[0][k * self.d + j]

    def _normal_g(self, w, mode, j, side):
        trial = mode.copy()
        trial.gslide[j] = False
        trial.pg[j] = side
        return self.g_rate(w, self._flow(w, trial)[0])[j]

    @staticmethod
    def _classify(f_plus, f_minus, tol) -> str:
        """``"+"``/``"-"`` (leave or cross to that side) or ``"slide"``."""
        rep_p, rep_m = f_plus > tol, f_minus < -tol
        att_p = f_plus < -tol
        if rep_p and rep_m:
            return "+" if f_plus >= -f_minus else "-"   # repelling surface: the stronger side
        if rep_p and not att_p:
            return "+"
        if rep_m:
            return "-"
        return "slide"   # both sides push in, or tangent: held (Filippov sliding)

    def _leave_corners(self, w, mode: Mode, decisions: list, tol) -> Mode:
        """Release a column held at a corner (two or more coordinates at 0) when some side
        pattern of its held coordinates carries every one of them away, each to its own side.

        A corner is frozen only if no such pattern exists.  For ``L = 2`` none does (the
        switches flip when the column crosses: THEORY's "held at 0").  For odd ``L`` a
        balanced column crossing 0 together leaves every switch ``F[l, j]`` unchanged (``L - 1``
        factors flip), so the flow goes straight through: ``w_j = -0.55`` in every layer
        grows as ``da/dtau = x (a - rho)^2`` (issue 10.2).  Patterns are tried in order of
        their smallest outgoing speed, the strongest first.
        """
        import itertools

        if self.L < 3:
            return mode      # (no pattern exists at L = 2; g-sliding columns would chatter)
        for j in np.flatnonzero((mode.pinned.sum(axis=0) >= 2) & ~mode.gslide):
            ks = np.flatnonzero(mode.pinned[:, j])
            best, best_speed = None, 0
            for pattern in itertools.product((True, False), repeat=ks.size):
                signs = [self._side(s) for s in pattern]
                trial = mode.copy()
                trial.pinned[ks, j] = False
                trial.pw[ks, j] = signs
                dw = self._flow(w, trial)[0]
                speed = min(sg * dw[k * self.d + j] for sg, k in zip(signs, ks))
                if speed > tol and speed > best_speed:
                    best, best_speed = signs, speed
            if best is not None:
                mode = mode.copy()
                mode.pinned[ks, j] = False
                mode.pw[ks, j] = best
                decisions.extend(("coord", int(k * self.d + j), "+" if sgn > 0 else "-") for k, sgn in zip(ks, best))
        return mode

    def settle(self, w: np.ndarray, mode: Mode, candidates: np.ndarray, g_candidates: np.ndarray,
               *, tol) -> tuple[Mode, list]:
        """New mode at an event point ``w`` (candidate coordinates already exactly 0).

        Every candidate starts pinned; then, until nothing changes, a candidate whose two
        side fields do not both point into its surface is released to the side it moves
        to.  Returns the mode and a list of the decisions taken.
        """
        mode = mode.copy()
        W = self._weights(w).reshape(self.L, self.d)
        cand = np.asarray(candidates, bool).reshape(self.L, self.d) & (W == 0)
        mode.pinned |= cand
        gcand = np.asarray(g_candidates, bool) & ~self.g_inert(mode)
        mode.gslide &= ~self.g_inert(mode)
        mode.gslide |= gcand
        if mode.cg is None:
            mode.cg = self.initial_mode(w).cg
        mode.cg[gcand] = self.zero
        decisions = []
        plus, minus = self._side(True), self._side(False)
        for _ in range(2 * (self.N + self.d) + 2):
            changed = False
            for k, j in zip(*np.nonzero(mode.pinned)):
                what = self._classify(self._normal_coord(w, mode, k, j, plus),
                                      self._normal_coord(w, mode, k, j, minus), tol)
                if what != "slide":
                    mode.pinned[k, j] = False
                    mode.pw[k, j] = self._side(what == "+")
                    decisions.append(("coord", int(k * self.d + j), what))
                    changed = True
            inert = mode.gslide & self.g_inert(mode)
            if inert.any():
                mode.gslide &= ~inert
                changed = True
            for j in np.flatnonzero(mode.gslide):
                what = self._classify(self._normal_g(w, mode, j, plus), self._normal_g(w, mode, j, minus), tol)
                if what != "slide":
                    mode.gslide[j] = False
                    mode.pg[j] = self._side(what == "+")
                    decisions.append(("g", int(j), what))
                    changed = True
            if not changed:
                break
        mode = self._leave_corners(w, mode, decisions, tol)
        for k, j in zip(*np.nonzero(mode.pinned)):
            decisions.append(("coord", int(k * self.d + j), "slide"))
        for j in np.flatnonzero(mode.gslide):
            decisions.append(("g", int(j), "slide"))
        if mode.gslide.any():
            self.solve_g_controls(w, mode)
        return mode, decisions


class MpFilippovModel(FilippovModel):
    """:class:`FilippovModel` in mpmath arithmetic (the mp driver's; call inside its ``workdps``).

    ``evaluate(w, sigma) -> (dW/dtau list, log S)`` is the mp field (the driver counts and
    guards the calls); ``mf`` gives ``g`` and its rate; ``rtol`` is the run's tolerance, which
    also sets the controls' root tolerance and (``10^(8 - digits)``) the settling tolerance.
    """

    settle_rho = 0

    def __init__(self, problem, evaluate, mf, rtol, digits: int) -> None:
        import mpmath

        self.problem, self.field, self.mf, self.rtol = problem, None, mf, rtol
        self._evaluate = evaluate
        self._exp, self._log = mpmath.exp, mpmath.log
        self.zero, self.one = mpmath.mpf(0), mpmath.mpf(1)
        self.settle_rel = mpmath.mpf(10) ** (8 - digits)
        self._setup(problem, mf.rho)

    def _weights(self, w) -> np.ndarray:
        return np.array(w, dtype=object)

    def _vec(self, v) -> np.ndarray:
        return np.array(v, dtype=object)

    def _signs_of(self, x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, -1, 1).astype(object)

    def _side(self, positive: bool):
        return 1 if positive else -1

    def _field(self, w, sigma, grad: bool = False):
        assert not grad, "the mp clock needs no d log S/dW"
        return self._evaluate(w if type(w) is list else list(w), sigma if type(sigma) is list else list(sigma))

    def flow(self, w, mode: Mode):
        """``(dW/dtau, log S)`` in the mode (mp integrates the clock itself: no gradient)."""
        return self._flow(w, mode)

    def g(self, w) -> np.ndarray:
        return np.array(self.mf.g(list(w)), dtype=object)

    def g_rate(self, w, dw) -> np.ndarray:
        return np.array(self.mf.g_rate(list(w), list(dw)), dtype=object)

    def _bracketed_root(self, f, lo, hi, flo, fhi):
        return _illinois(f, lo, hi, flo, fhi, self.rtol)

    def _joint_root(self, residual, x0):
        """Several sliding columns: Gauss-Seidel sweeps of the one-column solves."""
        x = list(x0)
        for _ in range(8):
            moved = self.zero
            for i in range(len(x)):
                def one(v, i=i):
                    trial = list(x)
                    trial[i] = v
                    return residual(trial)[i]
                new = self._root_in_unit(one)
                moved, x[i] = max(moved, abs(new - x[i])), new
            if moved <= self.rtol:
                break
        return x
