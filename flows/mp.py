"""High-precision (mpmath) simulation of the SAM flows to any horizon.

:func:`simulate_mp` integrates the *log-time system* -- the rescaled flow
``dW/dtau = -F(W~)`` together with ``s = ln(1 + t)`` (``ds/dtau = exp(-log S(W~) - s)``)
and ``tau`` -- with an adaptive high-order integrator in mpmath
(:mod:`sambias.flows.mp_integrators`).  The independent variable is the clock
``nu`` with ``dnu = ds + d ln(1 + tau)`` (the same curve, reparametrised; see
:class:`_MpRun` for why not ``tau``).  mpmath has no exponent range limit, so a physical
horizon such as ``t = 1e400`` or a loss of ``1e-400`` is reached and reported exactly;
the run stops when ``s`` reaches ``ln(1 + T)`` (``time="physical"``) or ``tau`` reaches
``T`` (``time="rescaled"``).  Weights are returned as float64 copies; the final state is
also kept as decimal strings at full precision (``stats["w_final_mp"]``, and
``s``/``tau``/``log10 t``/``log10 loss`` likewise) for cross-checks finer than float64.

Events are located inside a step by re-stepping from the step start with a shorter step
(Illinois/regula-falsi on the step length, first guess from a cubic Hermite
interpolant), so the landing point has the integrator's full accuracy:

* the physical horizon ``s = ln(1 + T)``;
* l2-SAM collapse: ``|F(W)|`` falls below ``collapse_rtol * |F(W(0))|`` -- the
  normalised perturbation ``rho F/|F|`` is undefined at ``F = 0``, so the run stops
  cleanly with status ``"collapse: ..."``;
* linf-SAM switching (below).

**linf-SAM: a simple, consistent Filippov treatment.**  Because
``F[l, j] = g_j prod_{k != l} W[k, j]``, ``sign F[l, j] = sign(g_j) prod_{k != l}
sign W[k, j]``: the right-hand side is discontinuous across the coordinate hyperplanes
``W[k, j] = 0`` (``L >= 2``) and across ``g_j(W) = 0``.  The integrator keeps *sign
memory* (a side for every coordinate, a sign for every ``g_j``), freezes the switching
vector ``sigma`` within a step (so every step integrates a smooth field) and treats
each zero crossing as an event it lands on exactly.  At a coordinate ``p = (m, j)``
reaching 0 it evaluates the two one-sided velocities ``v+`` and ``v-`` of ``W_p``
(memory side of ``p`` set to +1 / -1):

* ``v+ <= 0 <= v-`` (both sides push inward) -- *sliding*: ``W_p`` is pinned at exactly 0
  and the switching entries that flip across ``W_p = 0`` take their *equivalent
  control* values: in a column with one pinned coordinate the partner ``k``
  (``L = 2``: the other layer; ``L >= 3``: the smallest ``|W[k, j]|``) gets
  ``sigma_k = -W[k, j]/rho``, so ``W~[k, j] = 0`` and ``dW_p/dtau = 0``; a column
  with two or more pinned coordinates has ``sigma = 0`` there, ``W~ = 0``, and is frozen
  (``beta_j = 0``).  For ``L = 2`` the field is affine in that ``sigma`` entry, so this
  *is* Filippov's convex combination of the two one-sided fields (clock included);
  for ``L >= 3`` it is one admissible selection of the Filippov set.  The pin is
  released (event) when the equivalent control leaves ``[-1, 1]``
  (``|W[k, j]| = rho``); the coordinate then leaves to the side of ``v+ + v-``.
  Frozen columns are never released: for one example they are invariant (both one-sided
  velocities point inward whatever the other signs).
* otherwise the coordinate crosses (or leaves 0) to the side its velocity points to;
  if both sides repel, to the side with the larger speed.

``g_j = 0`` crossings (several examples only -- one example has ``g = -A[0]`` fixed)
are treated as transversal; sliding along ``g_j = 0`` is not modelled and is reported
as ``"chattering: ..."`` if events pile up at one instant.  A coordinate touching 0
tangentially inside one step (two crossings) is not seen.

When the flow is exactly stationary (every ``dW/dtau`` is 0 -- all coordinates pinned,
or GD at ``W = 0`` for ``L >= 2``) the clock is integrated in closed form
(``t`` grows linearly in ``tau``) and the run jumps to the horizon.

>>> from sambias import Problem, Init
>>> from sambias.horizon import parse_horizon
>>> p = Problem(depth=1, algorithm="gd", X=[[1.0]], y=[1], init=Init(scale=0.0))
>>> tr = simulate_mp(p, parse_horizon("1e400"), digits=30)
>>> round(tr.log10_t_final, 9), round(tr.log10_loss_final, 3)   # z = ln(1 + t): loss = 1/(1+t)
(400.0, -400.0)
"""

from __future__ import annotations

import math
import time as _time
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf
from mpmath.libmp import mpf_mul

from .mp_field import CollapseError, MpField
from .mp_integrators import default_method, make_stepper
from .trajectory import DominantSwitch, Trajectory

__all__ = ["simulate_mp", "MpField", "dominant_switches"]

_FLOAT_LIMIT = 1e300   # states beyond this cannot be returned as float64 copies (beta too)
_MAX_EVENT_ITER = 80
_CHATTER_LIMIT = 50    # events in a row at (numerically) one instant


def simulate_mp(problem, horizon, *, time: str = "physical", digits: int = 50,
                rtol: float | None = None, atol: float | None = None, field=None,
                max_steps: int | None = None, method: str | None = None,
                collapse_rtol: float = 1e-12) -> Trajectory:
    """Integrate the SAM flow of ``problem`` in mpmath to ``horizon``.

    ``horizon`` is a :class:`~sambias.horizon.Horizon` (or anything
    :func:`~sambias.horizon.parse_horizon` reads); ``time`` is ``"physical"`` (stop at
    ``t = T``) or ``"rescaled"`` (stop at ``tau = T``).  All arithmetic runs at
    ``mp.dps = digits`` inside ``mpmath.workdps`` (the caller's context is untouched).
    ``rtol``/``atol`` default to ``10^-(digits-5)`` (``10^-(digits/2)`` below 15 digits);
    a requested ``rtol`` below ``10^(3-digits)`` is raised to it (round-off level; the
    value used is in ``settings``).
    ``field`` may replace the vector field: any object with
    ``rescaled_mp(w_list, sigma=None) -> (dw_list, log_S)``; events and diagnostics still
    use :class:`MpField`.  ``method`` is ``"gbs"`` (extrapolation, the default above 20
    digits), ``"rkf78"`` or ``"dopri5"``.

    Returns a :class:`~sambias.flows.trajectory.Trajectory` with one saved point per
    accepted step and event; ``status`` is ``"ok"`` or why the run stopped early
    (``"collapse: ..."``, ``"blow-up: ..."``, ``"max_steps: ..."``, ...).

    >>> from sambias import Problem, Init
    >>> p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1],
    ...             init=Init(scale=0.2))
    >>> tr = simulate_mp(p, "1e400", digits=30)
    >>> tr.status, round(tr.log10_t_final, 6), tr.settings["precision"]
    ('ok', 400.0, 'mp:30')
    """
    from sambias.horizon import Horizon, parse_horizon

    if time not in ("physical", "rescaled"):
        raise ValueError(f"time: expected 'physical' or 'rescaled', got {time!r}")
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 10:
        raise ValueError(f"digits: expected an integer >= 10, got {digits!r}")
    digits = int(digits)
    if not isinstance(horizon, Horizon):
        horizon = parse_horizon(horizon)
    method = method or default_method(digits)
    start = _time.perf_counter()
    with mpmath.workdps(digits):
        run = _MpRun(problem, horizon, time, digits, rtol, atol, field, max_steps, method,
                     collapse_rtol)
        run.integrate()
        return run.trajectory(_time.perf_counter() - start)


class _Stop(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class _MpRun:
    """One integration; all methods run inside the caller's ``workdps``.

    The state is ``y = (W, s, tau)`` with ``s = ln(1 + t)``, integrated in the clock
    ``nu`` with ``dnu = ds + d ln(1 + tau)``::

        dW/dnu = (dW/dtau) c,   ds/dnu = a c,   dtau/dnu = c,
        a = ds/dtau = exp(phi - s),  c = 1 / (a + 1/(1 + tau)),  phi = -log S(W~).

    Why not ``tau`` itself (the textbook log-time system ``ds/dtau = exp(phi - s)``):
    that equation relaxes at rate ``ds/dtau``, which grows like the margin's speed
    (~5e3 near t = 1e400 for the THEORY.md example), so every explicit method is held to
    steps ~1e-3 in ``tau`` by stability, and once ``W`` stops moving (a stationary point,
    an asymptotic equilibrium) ``t`` grows only linearly in ``tau`` and a horizon of
    1e400 is out of reach.  In ``nu`` every rate is bounded (``|d(ds/dnu)/ds| <= 1/4``,
    ``|d(dtau/dnu)/dtau| <= 1``): late in a growing run ``nu ~ s`` and ``W`` is smooth in
    log time, so a high-order step covers a long stretch; near an equilibrium
    ``nu ~ 2 s``.  The trajectory is the same curve; only its parametrisation changes.
    """

    def __init__(self, problem, horizon, time_kind, digits, rtol, atol, field, max_steps, method,
                 collapse_rtol) -> None:
        self.problem = problem
        self.horizon = horizon
        self.time_kind = time_kind
        self.digits = digits
        self.method = method
        default_tol = 10.0 ** -(digits - 5) if digits >= 15 else 10.0 ** -(digits // 2)
        # tolerances as mpf from decimal text: 1e-45 as a float would carry a 1e-61 error,
        # harmless, but mpf('1e-45') is what the user means
        # below ~10^(3-digits) the error estimates are round-off: no step would ever pass
        floor = 10.0 ** (3 - digits)
        self.rtol_f = max(float(rtol), floor) if rtol is not None else default_tol
        self.atol_f = max(float(atol), floor * 1e-3) if atol is not None else self.rtol_f
        self.rtol = mpf(repr(self.rtol_f))
        self.atol = mpf(repr(self.atol_f))
        self.max_steps = int(max_steps) if max_steps is not None else 20000
        self.mf = MpField(problem)
        self.field = field if field is not None else self.mf
        self.L, self.d = problem.depth, problem.dim
        self.N = self.L * self.d
        alg = problem.algorithm
        self.rho = self.mf.rho
        self.linf = alg == "linf-sam" and self.rho > 0
        self.l2 = alg == "l2-sam" and self.rho > 0
        self.stepper = make_stepper(method, rtol=self.rtol, atol=self.atol, digits=digits)
        self.collapse_rtol = collapse_rtol
        self.nfev = 0
        self.steps = 0
        self.rejected = 0
        self.events: list[dict[str, Any]] = []
        self.status = "ok"
        self.stationary_tau = None
        # saved points (mp tau, mp state, float derivative for dense dominance location)
        self.saved_tau: list = []
        self.saved_w: list = []
        self.saved_s: list = []
        self.saved_f: list = []
        self.y: list = []
        # horizon in mp: T is exact decimal text
        T = mpf(str(horizon.value))
        self.T = T
        self.s_target = mpmath.log1p(T) if time_kind == "physical" else None
        # linf-SAM mode
        self.side = [1] * self.N
        self.gsign = [1] * self.d
        self.pinned: dict[int, int] = {}  # p -> partner index, or -1 in a frozen column
        self.base_sigma: list | None = None

    # --- the right-hand side ------------------------------------------------------
    def _sigma_from_memory(self, override: dict[int, int] | None = None) -> list:
        L, d = self.L, self.d
        side = self.side if not override else [override.get(k, s) for k, s in enumerate(self.side)]
        sig = [0] * self.N
        for j in range(d):
            gs = self.gsign[j]
            if L == 1:
                sig[j] = gs
                continue
            prod = 1
            for l in range(L):
                prod *= side[l * d + j]
            for l in range(L):
                # sides are +-1, so prod_{k != l} side_k = prod * side_l
                sig[l * d + j] = gs * prod * side[l * d + j]
        for p, partner in self.pinned.items():
            if partner < 0:
                sig[p] = 0
        return sig

    def _sigma(self, w: list, base: list) -> list:
        if not any(v >= 0 for v in self.pinned.values()):
            return base
        sig = list(base)
        rho = self.rho
        for p, partner in self.pinned.items():
            if partner >= 0:
                sig[partner] = -w[partner] / rho  # equivalent control: W~[partner] = 0
        return sig

    def _field(self, w: list, sigma=None) -> tuple[list, Any]:
        self.nfev += 1
        try:
            if self.linf:
                return self.field.rescaled_mp(w, sigma)
            return self.field.rescaled_mp(w)
        except CollapseError:
            raise _Stop("collapse: the normalised gradient vanished (W reached 0)") from None

    def _eval(self, w: list) -> tuple[list, Any]:
        """``(dW/dtau, phi)`` in the current mode, ``phi = log(dt/dtau) = -log S(W~)``."""
        if self.linf:
            dw, log_S = self._field(w, self._sigma(w, self.base_sigma))
            if self.pinned:
                dw = list(dw)
                for p in self.pinned:
                    dw[p] = mpf(0)
        else:
            dw, log_S = self._field(w)
        return list(dw), -log_S

    def rhs(self, y: list) -> list:
        """``d(W, s, tau)/dnu`` -- see the class docstring for the clock ``nu``."""
        N = self.N
        dw, phi = self._eval(y[:N])
        a = mpmath.exp(phi - y[N])      # ds/dtau
        c = 1 / (a + 1 / (1 + y[N + 1]))  # dtau/dnu
        prec, cm, mk = mpmath.mp.prec, c._mpf_, mpmath.mp.make_mpf
        out = [mk(mpf_mul(v._mpf_, cm, prec, "n")) for v in dw]
        out.append(a * c)
        out.append(c)
        return out

    # --- events -------------------------------------------------------------------------
    def _event_values(self, y: list) -> list[tuple[str, int, Any, int]]:
        """``(kind, index, phi, expected sign)`` for every active event function at ``y``."""
        N, d = self.N, self.d
        out = []
        out.append(("horizon", -1, self._horizon_phi(y), 1))
        need_parts = self.l2 or (self.linf and self.mf.n > 1)
        pt = self.mf.parts(y[:N]) if need_parts else None
        if self.l2:
            nF = mpmath.sqrt(mpmath.fdot(pt.F, pt.F))
            phi = (mpmath.log(nF) - self.log_collapse) if nF > 0 else mpf("-inf")
            out.append(("collapse", -1, phi, 1))
        if self.linf:
            if self.L >= 2:
                for k in range(N):
                    if k not in self.pinned:
                        out.append(("zero", k, y[k], self.side[k]))
            if self.mf.n > 1:
                for j in range(d):
                    out.append(("g", j, pt.g[j], self.gsign[j]))
            for p, partner in self.pinned.items():
                if partner >= 0:
                    out.append(("unpin", p, self.rho - abs(y[partner]), 1))
        return out

    def _triggered(self, y0: list, y1: list) -> list[tuple[str, int, Any, Any, int]]:
        v0 = {(k, i): (phi, e) for k, i, phi, e in self._event_values(y0)}
        trig = []
        for kind, i, phi1, e in self._event_values(y1):
            phi0 = v0[(kind, i)][0]
            if kind == "horizon":
                if phi1 <= 0:
                    trig.append((kind, i, phi0, phi1, e))
            elif phi1 * e < 0 or (kind == "collapse" and phi1 <= 0):
                trig.append((kind, i, phi0, phi1, e))
        return trig

    def _phi(self, kind: str, i: int, y: list):
        if kind == "horizon":
            return self._horizon_phi(y)
        if kind == "zero":
            return y[i]
        if kind == "unpin":
            return self.rho - abs(y[self.pinned[i]])
        pt = self.mf.parts(y[:self.N])
        if kind == "g":
            return pt.g[i]
        nF = mpmath.sqrt(mpmath.fdot(pt.F, pt.F))
        return (mpmath.log(nF) - self.log_collapse) if nF > 0 else mpf("-inf")

    def _horizon_phi(self, y: list):
        if self.time_kind == "physical":
            return self.s_target - y[self.N]
        return self.T - y[self.N + 1]

    def _ftol(self, kind: str, y: list):
        if kind == "horizon":
            target = self.s_target if self.time_kind == "physical" else self.T
            return self.rtol * abs(target) + self.atol
        if kind == "collapse":
            return mpf("1e-3")
        if kind == "g":
            return self.atol + self.rtol * max(abs(v) for v in self.mf.parts(y[:self.N]).g)
        return self.atol

    def _hermite(self, y0, f0, y1, f1, h, theta):
        t2, t3 = theta * theta, theta * theta * theta
        h00 = 2 * t3 - 3 * t2 + 1
        h10 = (t3 - 2 * t2 + theta) * h
        h01 = -2 * t3 + 3 * t2
        h11 = (t3 - t2) * h
        return [h00 * a + h10 * b + h01 * c + h11 * e for a, b, c, e in zip(y0, f0, y1, f1)]

    def _locate(self, y0, f0, y1, h, trig, depth: int = 0):
        """The first event in ``(0, h]``: ``(kind, index, h*, y*)`` landed on by re-stepping."""
        f1 = self.rhs(y1)
        # order candidate events by their root on the cubic Hermite interpolant (cheap)
        guesses = []
        for kind, i, phi0, phi1, e in trig:
            lo, hi = mpf(0), mpf(1)
            for _ in range(40):
                mid = (lo + hi) / 2
                pm = self._phi(kind, i, self._hermite(y0, f0, y1, f1, h, mid))
                if pm * e > 0:
                    lo = mid
                else:
                    hi = mid
            guesses.append((hi, kind, i, phi0, phi1, e))
        guesses.sort(key=lambda g: g[0])
        theta, kind, i, phi0, phi1, e = guesses[0]
        a, fa = mpf(0), phi0
        b, fb = h, phi1
        x = h * theta
        ftol = self._ftol(kind, y0)
        side = 0
        ys = None
        for _ in range(_MAX_EVENT_ITER):
            ys, nf = self.stepper.redo(self.rhs, y0, f0, x)
            self.nfev += nf
            fx = self._phi(kind, i, ys)
            if abs(fx) <= ftol:
                break
            if fx * e > 0:
                a, fa = x, fx
                if side == -1:
                    fb /= 2
                side = -1
            else:
                b, fb = x, fx
                if side == 1:
                    fa /= 2
                side = 1
            if not (mpmath.isfinite(fa) and mpmath.isfinite(fb)) or fa == fb:
                x = (a + b) / 2
            else:
                x = (a * fb - b * fa) / (fb - fa)
            if not (a < x < b):
                x = (a + b) / 2
            if b - a <= self.rtol * h:
                # the bracket is as tight as the step resolution allows: land past the root
                x = b
                ys, nf = self.stepper.redo(self.rhs, y0, f0, b)
                self.nfev += nf
                break
        # another event may lie before x (the Hermite ordering is only a guess); events
        # within their tolerance of 0 at x count as simultaneous, not earlier
        others = [t for t in self._triggered(y0, ys) if (t[0], t[1]) != (kind, i)
                  and abs(self._phi(t[0], t[1], ys)) > self._ftol(t[0], y0)]
        if others and x > 0 and depth < 8:
            return self._locate(y0, f0, ys, x, others + [(kind, i, phi0, self._phi(kind, i, ys), e)],
                                depth + 1)
        return kind, i, x, ys

    # --- linf-SAM mode changes -------------------------------------------------------------
    def _velocity(self, w: list, p: int, side_p: int) -> Any:
        base = self._sigma_from_memory({p: side_p})
        dw, _ = self._field(w, self._sigma(w, base))
        return dw[p]

    def _decide(self, w: list, p: int, leaving: bool = False) -> str:
        """Pin ``p`` (sitting at exactly 0) or send it to one side; returns what happened."""
        vp = self._velocity(w, p, 1)
        vm = self._velocity(w, p, -1)
        if not leaving and vp <= 0 <= vm:
            partner = self._partner(w, p)
            if partner is not None:
                self.pinned[p] = partner
                if partner == -1:  # the column is frozen: every pin in it loses its partner
                    j = p % self.d
                    for q in list(self.pinned):
                        if q % self.d == j:
                            self.pinned[q] = -1
                return "pinned"
        total = vp + vm
        if leaving or (vp > 0 and vm < 0):
            new = 1 if total > 0 else -1 if total < 0 else self.side[p]
        else:
            new = 1 if vp > 0 else -1 if vm < 0 else self.side[p]
        self.side[p] = new
        return f"side {new:+d}"

    def _partner(self, w: list, p: int) -> int | None:
        """Equivalent-control partner of a newly pinned ``p``; -1 freezes the column."""
        d, L = self.d, self.L
        j, m = p % d, p // d
        if any(q % d == j for q in self.pinned):
            return -1
        cands = [l * d + j for l in range(L) if l != m]
        k = min(cands, key=lambda c: abs(w[c]))
        if abs(w[k]) > self.rho:
            return None
        return k

    def _handle_event(self, kind: str, i: int, y: list) -> None:
        N = self.N
        rec = {"kind": kind, "index": int(i), "tau": float(self.tau),
               "log10_t": _log10_t(self.s)}
        if kind == "zero":
            scale = max([abs(v) for v in y[:N]] + [mpf(1)])
            ztol = 100 * (self.atol + self.rtol * scale)
            zs = [k for k in range(N) if k not in self.pinned and (k == i or abs(y[k]) <= ztol)]
            for k in zs:
                y[k] = mpf(0)
            actions = []
            for k in sorted(zs):
                if k in self.pinned:  # frozen together with an earlier one
                    continue
                actions.append((k, self._decide(y[:N], k)))
                self.base_sigma = self._sigma_from_memory()
            rec["actions"] = [(int(k), a) for k, a in actions]
        elif kind == "g":
            self.gsign[i] = -self.gsign[i]
        elif kind == "unpin":
            partner = self.pinned.pop(i)
            rec["partner"] = int(partner)
            self.base_sigma = self._sigma_from_memory()
            rec["actions"] = [(int(i), self._decide(y[:N], i, leaving=True))]
        self.base_sigma = self._sigma_from_memory()
        self.events.append(rec)

    # --- the main loop ------------------------------------------------------------------------
    @property
    def tau(self):
        return self.y[self.N + 1]

    @property
    def s(self):
        return self.y[self.N]

    def _save(self, y: list, f: list) -> None:
        self.saved_tau.append(y[self.N + 1])
        self.saved_w.append(list(y[:self.N]))
        self.saved_s.append(y[self.N])
        # dW/dtau for the dense location of dominance switches (f is d/dnu; c = dtau/dnu)
        c = f[self.N + 1]
        self.saved_f.append([float(v / c) if c else 0.0 for v in f[:self.N]])

    def _where(self) -> str:
        return f"tau = {mpmath.nstr(self.tau, 12)}, log10 t = {_log10_t(self.s):.6g}"

    def _check_range(self, y: list) -> None:
        w = y[:self.N]
        big = max(abs(v) for v in w)
        bmax = max(abs(b) for b in self.mf.beta(w))
        if big > _FLOAT_LIMIT or bmax > _FLOAT_LIMIT:
            raise _Stop(f"blow-up: |w| or |beta| would pass 1e300 (float64 range) after {self._where()}")

    def integrate(self) -> None:
        N = self.N
        w0 = self.mf.to_mp(self.problem.initial_weights().ravel())
        self.y = w0 + [mpf(0), mpf(0)]
        try:
            if self.l2:
                F0 = self.mf.parts(w0).F
                nF0 = mpmath.sqrt(mpmath.fdot(F0, F0))
                if nF0 == 0:
                    self._save(self.y, [mpf(0)] * (N + 2))
                    raise _Stop("collapse: the normalised gradient is 0 at the initial point")
                self.log_collapse = mpmath.log(nF0 * mpf(repr(self.collapse_rtol)))
            if self.linf:
                for k in range(N):
                    self.side[k] = 1 if w0[k] >= 0 else -1
                pt = self.mf.parts(w0)
                self.gsign = [1 if g >= 0 else -1 for g in pt.g]
                self.base_sigma = self._sigma_from_memory()
                if self.L >= 2:
                    for k in range(N):
                        if w0[k] == 0 and k not in self.pinned:
                            self._decide(w0, k)
                            self.base_sigma = self._sigma_from_memory()
            f0 = self.rhs(self.y)
            self._save(self.y, f0)
            self._loop(f0)
        except _Stop as stop:
            self.status = stop.status

    def _initial_step(self, y: list, f0: list) -> Any:
        sc = [self.atol + self.rtol * abs(v) for v in y]
        d0 = max(abs(v) / c for v, c in zip(y, sc))
        d1 = max(abs(v) / c for v, c in zip(f0, sc))
        h = mpf("1e-6") if (d0 < 1e-5 or d1 < 1e-5) else mpf("0.01") * d0 / d1
        return min(h, mpf("0.01"))

    def _loop(self, f0: list) -> None:
        N = self.N
        h = self._initial_step(self.y, f0)
        chatter = 0
        last_event_nu = None
        nu = mpf(0)
        while True:
            y = self.y
            if all(v == 0 for v in f0[:N]):
                self._stationary()
                return
            if self.steps >= self.max_steps:
                raise _Stop(f"max_steps: {self.max_steps} steps taken, stopped at {self._where()}")
            if h <= abs(nu) * mpf(10) ** (-self.digits + 3) or h < mpf(10) ** (-self.digits):
                raise _Stop(self._underflow_status(y))
            try:
                res = self.stepper.attempt(self.rhs, y, f0, h)
            except (ZeroDivisionError, ValueError, OverflowError):
                res = None
            self.nfev += res.nfev if res is not None else 0
            if res is None or not res.accepted:
                self.rejected += 1
                h = res.h_next if res is not None else h / 4
                continue
            y1 = res.y
            trig = self._triggered(y, y1)
            if not trig:
                self._check_range(y1)
                self.y, nu = y1, nu + h
                self.steps += 1
                f0 = self.rhs(y1)
                self._save(y1, f0)
                h = res.h_next
                continue
            kind, i, hs, ys = self._locate(y, f0, y1, h, trig)
            self._check_range(ys)
            self.y, nu = list(ys), nu + hs
            self.steps += 1
            if kind == "horizon":
                if self.time_kind == "physical":
                    self.y[N] = self.s_target  # within the tolerance already; report T exactly
                else:
                    self.y[N + 1] = self.T
                self._save(self.y, self.rhs(self.y))
                return
            if kind == "collapse":
                self.events.append({"kind": "collapse", "tau": float(self.tau), "log10_t": _log10_t(self.s)})
                self._save(self.y, [mpf(0)] * (N + 2))
                raise _Stop(f"collapse: |F| fell below {self.collapse_rtol:g}*|F(0)| at {self._where()} (W -> 0)")
            self._handle_event(kind, i, self.y)
            if last_event_nu is not None and nu - last_event_nu <= self.rtol * (1 + abs(nu)):
                chatter += 1
                if chatter >= _CHATTER_LIMIT:
                    raise _Stop(f"chattering: {chatter} linf-SAM switching events at {self._where()} "
                                "(sliding on a g_j = 0 surface is not modelled)")
            else:
                chatter = 0
            last_event_nu = nu
            f0 = self.rhs(self.y)
            self._save(self.y, f0)
            h = max(res.h_next, hs) if hs > 0 else res.h_next

    def _underflow_status(self, y: list) -> str:
        if self.l2:
            F = self.mf.parts(y[:self.N]).F
            nF = mpmath.sqrt(mpmath.fdot(F, F))
            if nF == 0 or mpmath.log(nF) - self.log_collapse < mpmath.log(mpf(10) ** 6):
                return f"collapse: step size underflow near W = 0 at {self._where()}"
        return f"step size underflow at {self._where()}"

    def _stationary(self) -> None:
        """Every dW/dtau is 0: ``e^s = 1 + t`` grows linearly in tau, ``dt/dtau = e^phi``."""
        N = self.N
        y = list(self.y)
        _, phi = self._eval(y[:N])
        c = mpmath.exp(phi)
        one_plus_t = mpmath.exp(y[N])
        self.stationary_tau = y[N + 1]
        self.events.append({"kind": "stationary", "tau": float(self.tau), "log10_t": _log10_t(self.s)})
        if self.time_kind == "physical":
            one_plus_T = 1 + self.T
            if one_plus_T <= one_plus_t:
                return
            y[N + 1] = y[N + 1] + (one_plus_T - one_plus_t) / c
            y[N] = self.s_target
        else:
            if y[N + 1] >= self.T:
                return
            y[N] = mpmath.log(one_plus_t + c * (self.T - y[N + 1]))
            y[N + 1] = self.T
        self.y = y
        self._save(y, [mpf(0)] * N + [mpf(0), mpf(1)])

    # --- output ---------------------------------------------------------------------------------
    def trajectory(self, wall: float) -> Trajectory:
        N, L, d = self.N, self.L, self.d
        m = len(self.saved_w)
        weights = np.empty((m, L, d))
        log10_t = np.empty(m)
        log10_loss = np.empty(m)
        tau = np.empty(m)
        ln10 = mpmath.log(10)
        for r, (tv, w, s) in enumerate(zip(self.saved_tau, self.saved_w, self.saved_s)):
            weights[r] = np.array([float(v) for v in w]).reshape(L, d)
            log10_t[r] = _log10_t(s)
            log10_loss[r] = float(self.mf.log_loss(w) / ln10)
            tau[r] = float(tv)
        dfl = np.array(self.saved_f).reshape(m, L, d) if m else np.zeros((0, L, d))
        dominant = dominant_switches(tau, log10_t, weights, dfl)
        wN, sN = self.saved_w[-1], self.saved_s[-1]
        digits = self.digits
        stats = {
            "steps": self.steps, "rejected": self.rejected, "nfev": self.nfev,
            "wall_s": round(wall, 6),
            "w_final_mp": [mpmath.nstr(v, digits) for v in wN],
            "s_final_mp": mpmath.nstr(sN, digits),
            "tau_final_mp": mpmath.nstr(self.saved_tau[-1], digits),
            "log10_t_final_mp": mpmath.nstr(_log10_t_mp(sN), digits),
            "log10_loss_final_mp": mpmath.nstr(self.mf.log_loss(wN) / ln10, digits),
            "events": self.events,
        }
        if self.linf:
            stats["pinned_final"] = sorted(int(p) for p in self.pinned)
        if self.stationary_tau is not None:
            stats["stationary_from_tau"] = float(self.stationary_tau)
        settings = {"time": self.time_kind, "precision": f"mp:{digits}", "method": self.method,
                    "rtol": self.rtol_f, "atol": self.atol_f, "horizon": str(self.horizon)}
        return Trajectory(problem=self.problem, tau=tau, log10_t=log10_t, weights=weights,
                          log10_loss=log10_loss, status=self.status, dominant=tuple(dominant),
                          settings=settings, stats=stats)


def _log10_t_mp(s):
    if s <= 0:
        return mpf("-inf")
    return mpmath.log10(mpmath.expm1(s))


def _log10_t(s) -> float:
    return float(_log10_t_mp(s))


def dominant_switches(tau: np.ndarray, log10_t: np.ndarray, weights: np.ndarray,
                      dweights: np.ndarray | None = None, *, tie_rtol: float = 1e-12) -> list[DominantSwitch]:
    """Changes of ``argmax_j |beta_j|`` along saved states (CONTRACT.md's ``dominant``).

    Between two saved points the crossing of the old and new leader is located on the
    cubic Hermite interpolant of the weights in ``tau`` (when ``dweights = dW/dtau`` is
    given; linear otherwise), and its ``log10 t`` is interpolated linearly in ``tau``.
    The first entry is the first leader, at the last time the argmax was still tied
    (``-inf`` for a uniform initialisation: the leader emerges at ``t = 0+``).

    >>> w = np.array([[[1.0, 1.0]], [[1.0, 2.0]]])
    >>> [(s.index, s.log10_t) for s in dominant_switches(np.array([0.0, 1.0]), np.array([-np.inf, 0.0]), w)]
    [(1, -inf)]
    """
    beta = np.abs(np.prod(weights, axis=1))
    out: list[DominantSwitch] = []
    leader = None
    prev = None
    for r in range(beta.shape[0]):
        b = beta[r]
        top = int(np.argmax(b))
        others = np.delete(b, top)
        unique = others.size == 0 or b[top] - others.max() > tie_rtol * max(b[top], 1e-300)
        if not unique:
            prev = r
            continue
        if leader is None:
            t0 = log10_t[prev] if prev is not None else log10_t[r]
            tau0 = tau[prev] if prev is not None else tau[r]
            out.append(DominantSwitch(top, float(t0), float(tau0)))
            leader = top
        elif top != leader:
            theta = _crossing(r - 1, r, leader, top, tau, weights, dweights)
            tt = tau[r - 1] + theta * (tau[r] - tau[r - 1])
            lt = _lerp(log10_t[r - 1], log10_t[r], theta)
            out.append(DominantSwitch(top, float(lt), float(tt)))
            leader = top
        prev = r
    return out


def _lerp(a: float, b: float, theta: float) -> float:
    if not np.isfinite(a):
        return float(b) if theta >= 1 else float(a)
    return float(a + theta * (b - a))


def _crossing(r0, r1, a, b, tau, weights, dweights) -> float:
    """theta in [0, 1] where |beta_a| = |beta_b| between saved points r0 and r1."""
    h = tau[r1] - tau[r0]

    def diff(theta: float) -> float:
        if dweights is not None and np.isfinite(h):
            t2, t3 = theta * theta, theta ** 3
            W = ((2 * t3 - 3 * t2 + 1) * weights[r0] + (t3 - 2 * t2 + theta) * h * dweights[r0]
                 + (-2 * t3 + 3 * t2) * weights[r1] + (t3 - t2) * h * dweights[r1])
        else:
            W = (1 - theta) * weights[r0] + theta * weights[r1]
        beta = np.abs(np.prod(W, axis=0))
        return beta[b] - beta[a]

    lo, hi = 0.0, 1.0
    if diff(lo) > 0 or diff(hi) < 0:
        return 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if diff(mid) > 0:
            hi = mid
        else:
            lo = mid
    return hi
