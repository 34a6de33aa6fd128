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

>>> from sambias import Problem, Init
>>> p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=0.2))
>>> model = FilippovModel(p)
>>> mode = model.initial_mode(p.initial_weights().ravel())
>>> model.sigma(p.initial_weights().ravel(), mode).tolist()
[-1.0, -1.0, -1.0, -1.0]
"""

from __future__ import annotations

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
    """The frozen discrete state of a linf-SAM segment."""

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


class FilippovModel:
    """Sign patterns, equivalent controls, event functions and the settling rule."""

    def __init__(self, problem, field=None) -> None:
        self.problem = problem
        if field is None:
            from sambias.symbolic import GeneratedField
            field = GeneratedField(problem)
        self.field = field
        self.L, self.d = problem.depth, problem.dim
        self.N = self.L * self.d
        self.rho = float(problem.rho)
        self.A = np.asarray(problem.signed_data, float)
        self.loss = problem.loss
        # g = -A.T q is constant for one example; a column of zeros gives g_j = 0 always.
        self.g_varies = problem.n > 1
        self.g_trivial = np.all(self.A == 0.0, axis=0)
        self.coord_surfaces = self.L >= 2

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
        W = np.asarray(w, float).reshape(self.L, self.d)
        pw = np.where(W < 0, -1.0, 1.0)
        g = self.g(w)
        pg = np.where(g < 0, -1.0, 1.0)
        pg[self.g_trivial] = 0.0
        return Mode(pw=pw, pinned=np.zeros((self.L, self.d), bool), pg=pg,
                    gslide=np.zeros(self.d, bool), cg=np.zeros(self.d))

    def _column_controls(self, W: np.ndarray, Pi: np.ndarray, G: np.ndarray, pinned: np.ndarray) -> None:
        """Fill ``Pi`` at pinned coordinates with their equivalent controls (in place)."""
        cols = np.flatnonzero(pinned.any(axis=0))
        for j in cols:
            ks = np.flatnonzero(pinned[:, j])
            if ks.size >= 2 or G[j] == 0.0 or self.rho == 0.0:
                Pi[ks, j] = 0.0
                continue
            k = ks[0]
            best = None
            for m in range(self.L):
                if m == k:
                    continue
                # sigma[m, j] = c * s_m with s_m the product of the other fixed signs
                s_m = G[j] * np.prod(np.delete(Pi[:, j], [m, k]))
                if s_m == 0.0:
                    continue
                c = -W[m, j] / (self.rho * s_m)
                if best is None or abs(c) < abs(best):
                    best = c
            Pi[k, j] = 0.0 if best is None else float(np.clip(best, -1.0, 1.0))

    def signs(self, w: np.ndarray, mode: Mode, cg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(Pi, G)``: primitive signs with equivalent controls substituted."""
        W = np.asarray(w, float).reshape(self.L, self.d)
        Pi = mode.pw.astype(float).copy()
        G = mode.pg.astype(float).copy()
        if mode.gslide.any():
            G[mode.gslide] = (mode.cg if cg is None else cg)[mode.gslide]
        if mode.pinned.any():
            self._column_controls(W, Pi, G, mode.pinned)
        return Pi, G

    def sigma_from(self, Pi: np.ndarray, G: np.ndarray) -> np.ndarray:
        return (G[None, :] * others_product(Pi)).ravel()

    def sigma(self, w: np.ndarray, mode: Mode, cg: np.ndarray | None = None) -> np.ndarray:
        """The switch values (``L*d``, in ``[-1, 1]``) the field uses in this mode."""
        Pi, G = self.signs(w, mode, cg)
        return self.sigma_from(Pi, G)

    def solve_g_controls(self, w: np.ndarray, mode: Mode) -> np.ndarray:
        """Equivalent controls ``G_j`` of the columns sliding on ``g_j = 0``."""
        cols = np.flatnonzero(mode.gslide)
        cg = mode.cg.copy()
        if cols.size == 0:
            return cg

        def residual(vals):
            trial = cg.copy()
            trial[cols] = vals
            dw, _ = self.field.rescaled(w, self.sigma(w, mode, trial))
            return self.g_rate(w, dw)[cols]

        if cols.size == 1:
            lo, hi = residual([-1.0])[0], residual([1.0])[0]
            if lo == 0.0:
                cg[cols] = -1.0
            elif hi == 0.0 or np.sign(lo) == np.sign(hi):
                cg[cols] = 1.0 if abs(hi) < abs(lo) else -1.0
            else:
                cg[cols] = brentq(lambda v: residual([v])[0], -1.0, 1.0, xtol=1e-15)
        else:
            sol = least_squares(residual, np.clip(cg[cols], -1.0, 1.0), bounds=(-1.0, 1.0), xtol=1e-15)
            cg[cols] = sol.x
        mode.cg = cg
        return cg

    # --- the flow in a mode -----------------------------------------------------------
    def _field_all(self, w: np.ndarray, sigma: np.ndarray):
        if hasattr(self.field, "rescaled_with_grad"):
            dw, log_S, gl = self.field.rescaled_with_grad(w, sigma)
        else:
            dw, log_S = self.field.rescaled(w, sigma)
            gl = self.field.rescaled_log_speed_grad(w, sigma)
        return np.array(dw, float), float(log_S), np.asarray(gl, float)

    def _sides(self, w: np.ndarray, mode: Mode, Pi: np.ndarray, G: np.ndarray, k: int, j: int):
        """The two sides of the single pinned coordinate ``(k, j)``: ``(f+, phi+, grad+), (f-, ...)``."""
        out = []
        for side in (1.0, -1.0):
            P = Pi.copy()
            P[k, j] = side
            out.append(self._field_all(w, self.sigma_from(P, G)))
        return out

    def _mu(self, w: np.ndarray, mode: Mode, Pi: np.ndarray, G: np.ndarray, k: int, j: int) -> float:
        """Filippov weight of the ``+`` side in rescaled time: the normal velocity vanishes."""
        (fp, _, _), (fm, _, _) = self._sides(w, mode, Pi, G, k, j)
        i = k * self.d + j
        den = fm[i] - fp[i]
        return float(np.clip(fm[i] / den, 0.0, 1.0)) if den != 0.0 else 0.5

    def flow_and_grad(self, w: np.ndarray, mode: Mode):
        """``(dW/dtau, log S, g)`` in the mode: the Filippov flow and its clock.

        Off sliding surfaces this is the field with the frozen switches.  A coordinate
        ``(k, j)`` alone in its column on a surface gets the Filippov convex combination of
        the two sides' *rescaled* fields, ``f = mu f+ + (1 - mu) f-`` with ``mu`` making its
        velocity 0, and -- because the physical flow is ``S f`` and ``S`` jumps across the
        surface -- the clock ``dt/dtau = mu e^{phi+} + (1 - mu) e^{phi-}`` (the same
        combination of the physical-time fields, written in ``tau``).  A column with two or
        more coordinates held (a corner of codimension >= 2) is frozen; its Filippov set is
        not a single vector, and its clock takes the sign pattern the coordinates arrived
        with -- what discrete linf-SAM keeps doing there (its iterates flip all signs of
        the column together each step).  ``g`` is a vector with ``-g . f = dphi/dtau``
        (what the log-time system needs) that is ``d log S/dW`` off sliding surfaces.
        """
        cg = self.solve_g_controls(w, mode) if mode.gslide.any() else None
        Pi, G = self.signs(w, mode, cg)
        dw, log_S, gl = self._field_all(w, self.sigma_from(Pi, G))
        pinned = mode.pinned
        counts = pinned.sum(axis=0)
        if not pinned.any() or self.rho == 0.0:
            dw[pinned.ravel()] = 0.0
            if cg is not None:
                gl = self._with_control_motion(w, mode, dw, gl)
            return dw, log_S, gl
        corners = np.flatnonzero(counts >= 2)
        g_base = gl
        phi = -log_S
        Pc = Pi
        if corners.size:
            # clock of the corners: their arrival sign pattern (their velocity stays 0)
            Pc = Pi.copy()
            Pc[:, corners] = np.where(pinned[:, corners], mode.pw[:, corners], Pi[:, corners])
            _, log_Sc, g_base = self._field_all(w, self.sigma_from(Pc, G))
            phi = -log_Sc
        base_phi = phi
        dw_base = dw.copy()
        dw_base[pinned.ravel()] = 0.0
        dphi = -float(np.dot(g_base, dw_base))
        out = dw_base.copy()
        for j in np.flatnonzero(counts == 1):
            k = int(np.flatnonzero(pinned[:, j])[0])
            (fp, lp, gp), (fm, lm, gm) = self._sides(w, mode, Pi, G, k, j)
            if Pc is not Pi:     # velocities with the corners at 0, clocks with their pattern
                (_, lp, gp), (_, lm, gm) = self._sides(w, mode, Pc, G, k, j)
            i = k * self.d + j
            den = fm[i] - fp[i]
            mu = float(np.clip(fm[i] / den, 0.0, 1.0)) if den != 0.0 else 0.5
            comb = mu * fp + (1.0 - mu) * fm
            comb[pinned.ravel()] = 0.0
            out += comb - dw_base
            # clock of this column: log(mu e^{phi+} + (1 - mu) e^{phi-}) in place of phi
            php, phm = -lp, -lm
            terms = [(mu, php), (1.0 - mu, phm)]
            top = max(v for m_, v in terms if m_ > 0.0)
            eff = top + np.log(sum(m_ * np.exp(v - top) for m_, v in terms if m_ > 0.0))
            phi += eff - base_phi
            # d/dtau of it: the sides' own rates, weighted, plus the motion of mu
            wp = mu * np.exp(php - eff) if mu > 0.0 else 0.0
            wm = (1.0 - mu) * np.exp(phm - eff) if mu < 1.0 else 0.0
            rate_p = -float(np.dot(gp, comb))
            rate_m = -float(np.dot(gm, comb))
            h = 1e-7 / max(float(np.max(np.abs(comb))), 1e-300) * max(float(np.max(np.abs(w))), 1e-3)
            dmu = (self._mu(w + h * comb, mode, Pi, G, k, j) - self._mu(w - h * comb, mode, Pi, G, k, j)) / (2 * h)
            # replace the base clock's rate along this column's motion by the combined one
            dphi += wp * rate_p + wm * rate_m + (np.exp(php - eff) - np.exp(phm - eff)) * dmu \
                + float(np.dot(g_base, comb))
        out[pinned.ravel()] = 0.0
        nf2 = float(np.dot(out, out))
        g_eff = -dphi * out / nf2 if nf2 > 0.0 else np.zeros_like(out)
        return out, -phi, g_eff

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
            Pi, G = self.signs(x, m, self.solve_g_controls(x, m))
            return self._field_all(x, self.sigma_from(Pi, G))[1]
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

    def release_value(self, w: np.ndarray, mode: Mode) -> float:
        """``min (1 - |c|)`` over equivalent controls: reaches 0 when a side stops pushing in."""
        vals = [1.0]
        if mode.pinned.any():
            W = np.asarray(w, float).reshape(self.L, self.d)
            G = mode.pg.astype(float).copy()
            if mode.gslide.any():
                G[mode.gslide] = mode.cg[mode.gslide]
            for j in np.flatnonzero(mode.pinned.sum(axis=0) == 1):
                k = int(np.flatnonzero(mode.pinned[:, j])[0])
                best = np.inf
                for m in range(self.L):
                    if m == k:
                        continue
                    s_m = G[j] * np.prod(np.delete(mode.pw[:, j], [m, k]))
                    if s_m != 0.0:
                        best = min(best, abs(W[m, j] / (self.rho * s_m)))
                if np.isfinite(best):
                    vals.append(1.0 - best)
        if mode.gslide.any():
            vals.extend(1.0 - np.abs(mode.cg[mode.gslide]))
        return float(min(vals))

    # --- settling at an event ---------------------------------------------------------
    def _normal_coord(self, w, mode, k, j, side) -> float:
        trial = mode.copy()
        trial.pinned[k, j] = False
        trial.pw[k, j] = side
        dw, _ = self.flow(w, trial)
        return float(np.asarray(dw).reshape(self.L, self.d)[k, j])

    def _normal_g(self, w, mode, j, side) -> float:
        trial = mode.copy()
        trial.gslide[j] = False
        trial.pg[j] = side
        dw, _ = self.flow(w, trial)
        return float(self.g_rate(w, dw)[j])

    @staticmethod
    def _classify(f_plus: float, f_minus: float, tol: float) -> str:
        """``"+"``/``"-"`` (leave or cross to that side) or ``"slide"``."""
        rep_p, rep_m = f_plus > tol, f_minus < -tol
        att_p, att_m = f_plus < -tol, f_minus > tol
        if rep_p and rep_m:
            return "+" if f_plus >= -f_minus else "-"   # repelling surface: the stronger side
        if rep_p and not att_p:
            return "+"
        if rep_m:
            return "-"
        return "slide"   # both sides push in, or tangent: held (Filippov sliding)

    def _leave_corners(self, w: np.ndarray, mode: Mode, decisions: list, tol: float) -> Mode:
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
            best, best_speed = None, 0.0
            for signs in itertools.product((1.0, -1.0), repeat=ks.size):
                trial = mode.copy()
                trial.pinned[ks, j] = False
                trial.pw[ks, j] = signs
                dw = np.asarray(self.flow(w, trial)[0]).reshape(self.L, self.d)[ks, j]
                speed = float(np.min(np.asarray(signs) * dw))
                if speed > tol and speed > best_speed:
                    best, best_speed = signs, speed
            if best is not None:
                mode = mode.copy()
                mode.pinned[ks, j] = False
                mode.pw[ks, j] = best
                decisions.extend(("coord", int(k * self.d + j), "+" if sgn > 0 else "-") for k, sgn in zip(ks, best))
        return mode

    def settle(self, w: np.ndarray, mode: Mode, candidates: np.ndarray, g_candidates: np.ndarray,
               *, tol: float) -> tuple[Mode, list]:
        """New mode at an event point ``w`` (candidate coordinates already exactly 0).

        Every candidate starts pinned; then, until nothing changes, a candidate whose two
        side fields do not both point into its surface is released to the side it moves
        to.  Returns the mode and a list of the decisions taken.
        """
        mode = mode.copy()
        W = np.asarray(w, float).reshape(self.L, self.d)
        cand = np.asarray(candidates, bool).reshape(self.L, self.d) & (W == 0.0)
        mode.pinned |= cand
        gcand = np.asarray(g_candidates, bool) & ~self.g_inert(mode)
        mode.gslide &= ~self.g_inert(mode)
        mode.gslide |= gcand
        if mode.cg is None:
            mode.cg = np.zeros(self.d)
        mode.cg[gcand] = 0.0
        decisions = []
        for _ in range(2 * (self.N + self.d) + 2):
            changed = False
            for k, j in zip(*np.nonzero(mode.pinned)):
                fp = self._normal_coord(w, mode, k, j, +1.0)
                fm = self._normal_coord(w, mode, k, j, -1.0)
                what = self._classify(fp, fm, tol)
                if what != "slide":
                    mode.pinned[k, j] = False
                    mode.pw[k, j] = 1.0 if what == "+" else -1.0
                    decisions.append(("coord", int(k * self.d + j), what))
                    changed = True
            inert = mode.gslide & self.g_inert(mode)
            if inert.any():
                mode.gslide &= ~inert
                changed = True
            for j in np.flatnonzero(mode.gslide):
                fp = self._normal_g(w, mode, j, +1.0)
                fm = self._normal_g(w, mode, j, -1.0)
                what = self._classify(fp, fm, tol)
                if what != "slide":
                    mode.gslide[j] = False
                    mode.pg[j] = 1.0 if what == "+" else -1.0
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
