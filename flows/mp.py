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

The run loop is the float64 driver's (:func:`sambias.flows.driver.advance` over
:class:`sambias.flows.steppers.MpStepper`).  Events are located inside a step by
re-stepping from the step start with a shorter step (Illinois regula falsi on the step
length), so the landing point has the integrator's full accuracy; leader changes are
dated the same way (re-taken steps, not a cubic):

* the physical horizon ``s = ln(1 + T)``;
* l2-SAM collapse: ``|F(W)|`` falls below ``collapse_rtol * |F(W(0))|`` -- the
  normalised perturbation ``rho F/|F|`` is undefined at ``F = 0``, so the run stops
  cleanly with status ``"collapse: ..."``;
* linf-SAM switching (below).

**linf-SAM: Filippov's flow with the float64 driver's conventions** (:mod:`sambias.flows.filippov`
is the reference; this is the same model in mp arithmetic).  Because
``F[l, j] = g_j prod_{k != l} W[k, j]``, the right-hand side is discontinuous across the
coordinate hyperplanes ``W[k, j] = 0`` (``L >= 2``) and across ``g_j(W) = 0`` (several
examples).  The driver keeps sign memory (``Pi = sign W`` per coordinate, ``G = sign g``
per column), freezes the switches ``sigma[l, j] = G_j prod_{m != l} Pi[m, j]`` within a step
and lands on every zero crossing exactly.  At an event the coordinates at 0 are *settled*
as float64 settles them: all pinned, then each released to a side unless both one-sided
velocities push into its surface.

* a single pinned coordinate in a column: its velocity is 0 by the convex combination
  ``mu f+ + (1 - mu) f-`` of its two sides' rescaled fields, and the clock is the same
  combination of the physical fields, ``dt/dtau = mu e^{phi+} + (1 - mu) e^{phi-}``; it is
  released (event) when the equivalent control ``Pi[k, j]`` reaches ``+-1``;
* two or more pinned coordinates in a column: the column is frozen and its clock keeps the
  sign pattern it arrived with -- the limit of discrete linf-SAM, which flips the whole
  column's signs every step (THEORY.md's "mixed" example: tests/test_flows_precisions.py
  checks the closed form in p/q variables and :func:`~sambias.flows.iterate`);
* a column on ``g_j = 0`` with both sides pushing in slides: ``G_j = c_j`` solves
  ``dg_j/dtau = 0`` (equivalent control), released when ``|c_j|`` reaches 1.

``"chattering: ..."`` remains only as a guard against events piling up at one instant.
A coordinate touching 0 tangentially inside one step (two crossings) is not seen.

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

from .collapse import collapse_status, is_filippov, is_normalised
from .dominant import dominant_switches
from .logtime import log10_t_from_s
from .mp_field import CollapseError, mp_field
from .driver import Event, Progress, advance
from .mp_integrators import default_method
from .steppers import MpStepper
from .trajectory import Trajectory

__all__ = ["simulate_mp"]

ATOL_FLOOR = 1e-100   # default atol of the weights: this times rtol times the initial weight scale
_FLOAT_LIMIT = 1e300   # states beyond this cannot be returned as float64 copies (beta too)
_MAX_EVENT_ITER = 80
_CHATTER_LIMIT = 50    # events in a row at (numerically) one instant


def simulate_mp(problem, horizon, *, time: str = "physical", digits: int = 50,
                rtol: float | None = None, atol: float | None = None, field=None,
                max_steps: int | None = None, method: str | None = None,
                collapse_rtol: float = 1e-12, progress: bool = False) -> Trajectory:
    """Integrate the SAM flow of ``problem`` in mpmath to ``horizon``.

    ``horizon`` is a :class:`~sambias.horizon.Horizon` (or anything
    :func:`~sambias.horizon.parse_horizon` reads); ``time`` is ``"physical"`` (stop at
    ``t = T``) or ``"rescaled"`` (stop at ``tau = T``).  All arithmetic runs at
    ``mp.dps = digits`` inside ``mpmath.workdps`` (the caller's context is untouched).
    ``rtol`` defaults to ``10^-(digits-4)`` (``10^-(digits/2)`` below 15 digits) and
    ``atol`` (of the weights) to ``1e-100 rtol`` times the initial weight scale -- error
    control is relative per coordinate, as in float64;
    a requested ``rtol`` below ``10^(3-digits)`` is raised to it (round-off level; the
    value used is in ``settings``).
    ``field`` may replace the vector field: any object with
    ``rescaled_mp(w_list, sigma=None) -> (dw_list, log_S)``; events and diagnostics still
    use the package's field.  ``method`` is ``"gbs"`` (extrapolation, the default above 20
    digits), ``"rkf78"`` or ``"dopri5"``.  ``progress=True`` shows a tqdm bar on stderr.

    Returns a :class:`~sambias.flows.trajectory.Trajectory` with one saved point per
    accepted step and event; ``status`` is ``"ok"`` or why the run stopped early
    (``"collapse: ..."``, ``"overflow: ..."``, ``"max_steps: ..."``, ``"underflow: ..."``,
    ``"chattering: ..."``) -- the statuses and ``stats`` keys of the float64 driver, plus
    the mp-only ``rejected`` and ``*_mp`` (full-precision final values).

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
        if progress:
            run.bar = Progress(run.s_target if time == "physical" else mpmath.log1p(run.T))
        try:
            run.integrate()
        finally:
            if run.bar is not None:
                run.bar.close()
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
        # 4 digits of headroom: the global error runs up to ~10x the local tolerance
        default_tol = 10.0 ** -(digits - 4) if digits >= 15 else 10.0 ** -(digits // 2)
        # tolerances as mpf from decimal text: 1e-45 as a float would carry a 1e-61 error,
        # harmless, but mpf('1e-45') is what the user means
        # below ~10^(3-digits) the error estimates are round-off: no step would ever pass
        floor = 10.0 ** (3 - digits)
        self.rtol_f = max(float(rtol), floor) if rtol is not None else default_tol
        w0 = problem.initial_weights().ravel()
        w_scale = max(float(np.max(np.abs(w0))) if w0.size else 0.0, 1e-6)
        # error control relative per coordinate, as in float64: the floor is far below any
        # weight, so a coordinate driven to 1e-38 keeps rtol relative accuracy (issue 11.4)
        self.atol_f = float(atol) if atol is not None else ATOL_FLOOR * self.rtol_f * w_scale
        self.rtol = mpf(repr(self.rtol_f))
        self.atol_w = mpf(repr(self.atol_f))
        # events, snapping and the clocks s = ln(1 + t), tau work on the weight scale
        self.atol = self.rtol * mpf(repr(w_scale))
        self.max_steps = int(max_steps) if max_steps is not None else 20000
        self.mf = mp_field(problem)
        self.field = field if field is not None else self.mf
        self.L, self.d = problem.depth, problem.dim
        self.N = self.L * self.d
        self.rho = self.mf.rho
        self.linf = is_filippov(problem)
        self.l2 = is_normalised(problem)
        # s needs absolute accuracy (relative accuracy of t); tau relative accuracy: a run that
        # starts with a huge margin spends all of t = 1e400 at tau ~ 1e-35 (issue 9)
        self.atol_y = [self.atol_w] * self.N + [self.rtol, self.rtol * mpf(ATOL_FLOOR)]
        self.stepper = None
        self.collapse_rtol = collapse_rtol
        self.nfev = 0
        self.steps = 0
        self.rejected = 0
        self.events: list[dict[str, Any]] = []
        self.status = "ok"
        self.stationary_tau = None
        self.frozen_from = None
        # saved points (mp tau, mp state, float derivative for dense dominance location)
        self.saved_tau: list = []
        self.saved_w: list = []
        self.saved_s: list = []
        self.saved_f: list = []
        self.saved_f_in: list = []
        self.saved_nu: list = []
        self.saved_step: list = []   # (nu0, y0, f0, column) of the step ending at each point, or None
        self.nu = mpf(0)
        self.y: list = []
        # horizon in mp: T is exact decimal text
        T = mpf(str(horizon.value))
        self.T = T
        self.s_target = mpmath.log1p(T) if time_kind == "physical" else None
        # linf-SAM mode
        self.side = [1] * self.N
        self.gsign = [1] * self.d
        self.pinned: set[int] = set()   # coordinates held at exactly 0 (Filippov sliding)
        self.base_sigma: list | None = None
        self._base_key = None
        self.settle_tol = mpf(10) ** (8 - digits)
        self.gslide: set[int] = set()    # columns sliding on g_j = 0 (several examples)
        self.cg: dict[int, Any] = {}     # their equivalent controls, last solved values
        self.g_trivial = [all(problem.signed_data[i, j] == 0 for i in range(problem.n)) for j in range(problem.dim)]
        self.near_collapse = False
        self.bar = None     # a driver.Progress when asked for

    # --- the right-hand side ------------------------------------------------------
    def _signs(self, w: list, pinned=None) -> tuple[list, list]:
        """``(Pi, G)``: primitive signs with equivalent controls substituted (as float64).

        A column with one pinned coordinate ``(k, j)`` gets ``Pi[k, j] = c``, the root of
        its own velocity of smallest ``|c|`` (``L = 2``: ``c = -W[1-k, j]/(rho G_j)``),
        clipped to ``[-1, 1]``; a column with two or more has ``Pi = 0`` at its pins.
        """
        pinned = self.pinned if pinned is None else pinned
        Pi = list(self.side)
        G = list(self.gsign)
        for j in self.gslide:
            G[j] = self.cg.get(j, mpf(0))
        if not pinned:
            return Pi, G
        L, d, rho = self.L, self.d, self.rho
        for j, ks in self._columns(pinned).items():
            if len(ks) >= 2 or G[j] == 0 or rho == 0:
                for k in ks:
                    Pi[k * d + j] = 0
                continue
            k = ks[0]
            c = self._control(w, Pi, G, k, j)
            Pi[k * d + j] = 0 if c is None else max(mpf(-1), min(mpf(1), c))
        return Pi, G

    def _control(self, w, Pi, G, k, j):
        """Unclipped equivalent control of the single pinned ``(k, j)`` (``None``: no root)."""
        best = None
        d = self.d
        for m in range(self.L):
            if m == k:
                continue
            s_m = G[j]
            for l in range(self.L):
                if l not in (m, k):
                    s_m = s_m * Pi[l * d + j]
            if s_m == 0:
                continue
            c = -w[m * d + j] / (self.rho * s_m)
            if best is None or abs(c) < abs(best):
                best = c
        return best

    def _base_sigma(self) -> list:
        """The switches off every sliding surface, cached on the sign memory they come from."""
        key = (tuple(self.side), tuple(self.gsign))
        if self._base_key != key:
            self._base_key = key
            self.base_sigma = self._sigma_from(list(self.side), list(self.gsign))
        return self.base_sigma

    def _columns(self, pinned) -> dict[int, list[int]]:
        cols: dict[int, list[int]] = {}
        for p in sorted(pinned):
            cols.setdefault(p % self.d, []).append(p // self.d)
        return cols

    def _sigma_from(self, Pi: list, G: list) -> list:
        """``sigma[l, j] = G_j prod_{m != l} Pi[m, j]``."""
        L, d = self.L, self.d
        sig = [0] * self.N
        for j in range(d):
            if L == 1:
                sig[j] = G[j]
                continue
            for l in range(L):
                prod = G[j]
                for m in range(L):
                    if m != l:
                        prod = prod * Pi[m * d + j]
                sig[l * d + j] = prod
        return sig

    def _field(self, w: list, sigma=None) -> tuple[list, Any]:
        self.nfev += 1
        try:
            if self.linf:
                return self.field.rescaled_mp(w, sigma)
            return self.field.rescaled_mp(w)
        except CollapseError:
            raise _Stop(collapse_status(_log10_t(self.s), float(self.tau))) from None

    def _eval(self, w: list, pinned=None) -> tuple[list, Any]:
        """``(dW/dtau, phi)`` in the current mode, ``phi = log(dt/dtau)``.

        Off sliding surfaces: the field with the memorised signs, ``phi = -log S(W~)``.
        With pins, float64's Filippov conventions (:meth:`FilippovModel.flow_and_grad`): a
        single pin in a column takes the convex combination ``mu f+ + (1 - mu) f-`` of its
        two sides' rescaled fields that stops it, and the clock the same combination of the
        *physical* fields, ``dt/dtau = mu e^{phi+} + (1 - mu) e^{phi-}``; a column with two
        or more pins is frozen and its clock keeps the sign pattern it arrived with -- the
        limit of discrete linf-SAM, which flips the whole column's signs every step there
        (checked against :func:`sambias.flows.iterate` in tests/test_flows_precisions.py).
        """
        if not self.linf:
            dw, log_S = self._field(w)
            return list(dw), -log_S
        pinned = self.pinned if pinned is None else pinned
        if self.gslide:
            self._g_controls(w, pinned)
        elif not pinned:
            dw, log_S = self._field(w, self._base_sigma())
            return list(dw), -log_S
        Pi, G = self._signs(w, pinned)
        dw, log_S = self._field(w, self._sigma_from(Pi, G))
        out = list(dw)
        for p in pinned:
            out[p] = mpf(0)
        cols = self._columns(pinned)
        corners = [j for j, ks in cols.items() if len(ks) >= 2]
        phi = -log_S
        Pc = Pi
        if corners:
            Pc = list(Pi)
            for j in corners:
                for k in cols[j]:
                    Pc[k * self.d + j] = self.side[k * self.d + j]
            phi = -self._field(w, self._sigma_from(Pc, G))[1]
        base_phi = phi
        base = list(out)
        for j, ks in cols.items():
            if len(ks) != 1:
                continue
            p = ks[0] * self.d + j
            sides = []
            for sd in (1, -1):
                P = list(Pi)
                P[p] = sd
                f, l = self._field(w, self._sigma_from(P, G))
                if Pc is not Pi:
                    P = list(Pc)
                    P[p] = sd
                    l = self._field(w, self._sigma_from(P, G))[1]
                sides.append((f, -l))
            (fp, php), (fm, phm) = sides
            den = fm[p] - fp[p]
            mu = min(mpf(1), max(mpf(0), fm[p] / den)) if den else mpf("0.5")
            for q in range(self.N):
                if q not in pinned:
                    out[q] += mu * fp[q] + (1 - mu) * fm[q] - base[q]
            terms = [(m_, v) for m_, v in ((mu, php), (1 - mu, phm)) if m_ > 0]
            top = max(v for _, v in terms)
            eff = top + mpmath.log(mpmath.fsum(m_ * mpmath.exp(v - top) for m_, v in terms))
            phi += eff - base_phi
        return out, phi

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
    def _events(self, y: list) -> list[Event]:
        """The event functions of the current mode, each positive before it fires (direction
        -1); ``y`` (the segment's start) sets their landing tolerances."""
        N, d = self.N, self.d
        memo: dict[str, Any] = {}

        def cached(name, fn, yy):
            if memo.get(name + "_y") is not yy:
                memo[name + "_y"], memo[name] = yy, fn(yy[:N])
            return memo[name]

        target = self.s_target if self.time_kind == "physical" else self.T
        evs = [Event("horizon", lambda t, yy: self._horizon_phi(yy), -1,
                     ftol=self.rtol * abs(target) + self.atol)]
        if self.l2:
            def collapse(t, yy):
                F = cached("F", self.mf.normalised_gradient, yy)
                nF = mpmath.sqrt(mpmath.fdot(F, F))
                return (mpmath.log(nF) - self.log_collapse) if nF > 0 else mpf("-inf")
            evs.append(Event("collapse", collapse, -1, ftol=mpf("1e-3")))
        if not self.linf:
            return evs
        if self.L >= 2:
            for k in range(N):
                if k not in self.pinned:
                    evs.append(Event(f"zero:{k}", lambda t, yy, k=k, e=self.side[k]: e * yy[k], -1,
                                     ftol=self.atol))
        if self.mf.n > 1:
            inert = self._g_inert()
            g_tol = self.atol + self.rtol * max(abs(v) for v in self.mf.g(y[:N]))
            for j in range(d):
                if j not in self.gslide and not inert[j]:
                    evs.append(Event(f"g:{j}", lambda t, yy, j=j, e=self.gsign[j]: e * cached("g", self.mf.g, yy)[j],
                                     -1, ftol=g_tol))
            for j in sorted(self.gslide):
                evs.append(Event(f"gunslide:{j}",
                                 lambda t, yy, j=j: 1 - abs(cached("cg", self._g_controls, yy)[j]), -1,
                                 ftol=self.atol))
        for p in self._single_pins():
            evs.append(Event(f"unpin:{p}", lambda t, yy, p=p: self._release_value(yy, p), -1, ftol=self.atol))
        return evs

    def _horizon_phi(self, y: list):
        if self.time_kind == "physical":
            return self.s_target - y[self.N]
        return self.T - y[self.N + 1]

    # --- linf-SAM mode changes -------------------------------------------------------------
    # --- sliding on g_j = 0 (several examples) -------------------------------------------------
    def _g_inert(self) -> list[bool]:
        """Columns whose switches do not depend on ``sign g_j``: ``g_j`` identically 0, or two
        or more coordinates pinned (every switch of the column is then 0)."""
        counts = [0] * self.d
        for p in self.pinned:
            counts[p % self.d] += 1
        return [self.g_trivial[j] or (self.L >= 2 and counts[j] >= 2) for j in range(self.d)]

    def _g_rate(self, w: list, dw: list) -> list:
        """``dg/dtau`` along ``dW/dtau = dw`` (``g = -A^T softmax(phi(z))``)."""
        return self.mf.g_rate(w, dw)

    def _g_controls(self, w: list, pinned=None) -> dict:
        """Equivalent controls ``G_j = c_j`` of the sliding columns: ``dg_j/dtau = 0``.

        One column: a bracketed root in ``[-1, 1]`` (Illinois); several: Gauss-Seidel sweeps
        of those one-dimensional solves (float64 solves the joint system by least squares).
        """
        pinned = self.pinned if pinned is None else pinned
        cols = sorted(self.gslide)
        keep = self.gslide
        for sweep in range(1 if len(cols) == 1 else 8):
            moved = mpf(0)
            for j in cols:
                def resid(v, j=j):
                    self.cg[j] = v
                    self.gslide = set()          # the trial G is set by hand below
                    try:
                        Pi, G = self._signs(w, pinned)
                        for c in cols:
                            G[c] = self.cg[c]
                        dw, _ = self._field(w, self._sigma_from(Pi, G))
                        dw = list(dw)
                        for q in pinned:
                            dw[q] = mpf(0)
                        return self._g_rate(w, dw)[j]
                    finally:
                        self.gslide = keep
                old = self.cg.get(j, mpf(0))
                lo, hi = mpf(-1), mpf(1)
                flo, fhi = resid(lo), resid(hi)
                if flo == 0:
                    c = lo
                elif fhi == 0 or (flo > 0) == (fhi > 0):
                    c = hi if abs(fhi) < abs(flo) else lo
                else:
                    c = _illinois(resid, lo, hi, flo, fhi, self.rtol)
                self.cg[j] = c
                moved = max(moved, abs(c - old))
            if moved <= self.rtol:
                break
        return dict(self.cg)

    def _settle_g(self, w: list, cand) -> list:
        """Columns at ``g_j = 0``: slide if both sides push ``g_j`` in, else cross (float64's rule)."""
        inert = self._g_inert()
        self.gslide |= {j for j in cand if not inert[j]}
        for j in cand:
            self.cg[j] = mpf(0)
        dw, _ = self._eval(w, set())
        tol = self.settle_tol * (1 + max(abs(v) for v in dw))
        decisions = []
        for _ in range(2 * self.d + 2):
            changed = False
            for j in sorted(self.gslide):
                rates = []
                for sd in (1, -1):
                    keep = set(self.gslide)
                    self.gslide.discard(j)
                    g0 = self.gsign[j]
                    self.gsign[j] = sd
                    try:
                        rates.append(self._g_rate(w, self._eval(w)[0])[j])
                    finally:
                        self.gslide, self.gsign[j] = keep, g0
                what = self._classify(rates[0], rates[1], tol)
                if what != "slide":
                    self.gslide.discard(j)
                    self.gsign[j] = 1 if what == "+" else -1
                    decisions.append(("g", int(j), what))
                    changed = True
            if not changed:
                break
        decisions += [("g", int(j), "slide") for j in sorted(self.gslide)]
        if self.gslide:
            self._g_controls(w)
        return decisions

    def _single_pins(self) -> list[int]:
        return [ks[0] * self.d + j for j, ks in self._columns(self.pinned).items() if len(ks) == 1]

    def _release_value(self, y: list, p: int):
        """``1 - |c|`` for the single pin ``p``: reaches 0 when one side stops pushing in."""
        Pi, G = list(self.side), list(self.gsign)
        c = self._control(y, Pi, G, p // self.d, p % self.d)
        return mpf(1) if c is None else 1 - abs(c)

    def _normal(self, w: list, p: int, sd: int):
        """Velocity of coordinate ``p`` with it free on side ``sd`` (the other pins held)."""
        keep = self.side[p]
        self.side[p] = sd
        try:
            return self._eval(w, self.pinned - {p})[0][p]
        finally:
            self.side[p] = keep

    def _classify(self, fp, fm, tol) -> str:
        """``"+"``/``"-"`` (leave or cross to that side) or ``"slide"`` -- float64's rule."""
        rep_p, rep_m = fp > tol, fm < -tol
        att_p = fp < -tol
        if rep_p and rep_m:
            return "+" if fp >= -fm else "-"   # repelling surface: the stronger side
        if rep_p and not att_p:
            return "+"
        if rep_m:
            return "-"
        return "slide"   # both sides push in, or tangent: held (Filippov sliding)

    def _settle(self, w: list, cand) -> list:
        """Pin every candidate (exactly 0), then release, until nothing changes, each pin
        whose two sides do not both push into its surface (as float64's ``settle``)."""
        self.pinned |= {k for k in cand if w[k] == 0}
        dw, _ = self._eval(w, set())
        tol = self.settle_tol * (1 + max(abs(v) for v in dw))
        decisions = []
        for _ in range(2 * self.N + 2):
            changed = False
            for p in sorted(self.pinned):
                what = self._classify(self._normal(w, p, 1), self._normal(w, p, -1), tol)
                if what != "slide":
                    self.pinned.discard(p)
                    self.side[p] = 1 if what == "+" else -1
                    decisions.append(("coord", int(p), what))
                    changed = True
            if not changed:
                break
        decisions += [("coord", int(p), "slide") for p in sorted(self.pinned)]
        return decisions

    def _handle_event(self, kind: str, i: int, y: list) -> None:
        N = self.N
        rec = {"kind": {"zero": "cross", "unpin": "release", "gunslide": "release"}.get(kind, kind), "index": int(i),
               "tau": float(self.tau), "log10_t": _log10_t(self.s)}
        cand = set()
        if kind == "zero":
            # the layers of a column reach 0 together up to the integration error: snap
            # every free coordinate heading to 0 within the snap tolerance onto it
            scale = max([abs(v) for v in y[:N]] + [mpf(1)])
            ztol = 100 * (self.atol + self.rtol * scale)
            dw, _ = self._eval(y[:N])
            cand = {k for k in range(N) if k not in self.pinned
                    and (k == i or (abs(y[k]) <= ztol and (y[k] * dw[k] <= 0 or self.side[k] * y[k] <= 0)))}
            for k in cand:
                y[k] = mpf(0)
        elif kind in ("g", "gunslide"):
            pass
        elif kind == "unpin":
            c = self._control(y[:N], list(self.side), list(self.gsign), i // self.d, i % self.d)
            self.pinned.discard(i)
            self.side[i] = 1 if (c is not None and c > 0) else -1
        if kind == "gunslide":
            self.gslide.discard(i)
            self.gsign[i] = 1 if self.cg.get(i, 0) > 0 else -1
        decisions = self._settle(y[:N], cand | set(self.pinned))
        if self.mf.n > 1:
            gc = set(self.gslide) | ({i} if kind == "g" else set())
            if kind == "g":
                self.gsign[i] = -self.gsign[i]   # crossed (settle decides whether it slides)
            decisions += self._settle_g(y[:N], gc)
        rec["decisions"] = decisions
        rec["mode"] = {"pinned": sorted(int(p) for p in self.pinned), "g_sliding": sorted(int(j) for j in self.gslide)}
        self.events.append(rec)

    # --- the main loop ------------------------------------------------------------------------
    @property
    def tau(self):
        return self.y[self.N + 1]

    @property
    def s(self):
        return self.y[self.N]

    def _save(self, y: list, f: list, nu=None, f_in: list | None = None, step=None) -> None:
        """Keep a point: the mp state, and float copies of ``y`` and of ``dy/dnu`` on both
        sides of it (they differ at a linf-SAM event) for the dense output of the leaders;
        ``step`` is how to re-take the step that ended here (:meth:`_step_record`)."""
        self.saved_step.append(step)
        self.saved_tau.append(y[self.N + 1])
        self.saved_w.append(list(y[:self.N]))
        self.saved_s.append(y[self.N])
        self.saved_nu.append(float(self.nu if nu is None else nu))
        self.saved_f.append([float(v) for v in f])
        self.saved_f_in.append([float(v) for v in (f if f_in is None else f_in)])

    def _where(self) -> str:
        return f"log10 t = {_log10_t(self.s):.6g} (tau = {mpmath.nstr(self.tau, 6)})"

    def _check_range(self, y: list) -> None:
        w = y[:self.N]
        big = max(abs(v) for v in w)
        bmax = max(abs(b) for b in self.mf.beta(w))
        if big > _FLOAT_LIMIT or bmax > _FLOAT_LIMIT:
            raise _Stop(f"overflow: |w| or |beta| would pass 1e300 at {self._where()}; the float64 copies "
                        "of the trajectory cannot carry them further")

    def integrate(self) -> None:
        N = self.N
        w0 = self.mf.to_mp(self.problem.initial_weights().ravel())
        self.y = w0 + [mpf(0), mpf(0)]
        try:
            if self.l2:
                F0 = self.mf.normalised_gradient(w0)
                nF0 = mpmath.sqrt(mpmath.fdot(F0, F0))
                if nF0 == 0:
                    self._save(self.y, [mpf(0)] * (N + 2))
                    raise _Stop(collapse_status(-math.inf, 0.0).replace("w reached 0", "w starts at 0"))
                self.log_collapse = mpmath.log(nF0 * mpf(repr(self.collapse_rtol)))
                self.nF0 = nF0
            if self.linf:
                for k in range(N):
                    self.side[k] = 1 if w0[k] >= 0 else -1
                self.gsign = [1 if g >= 0 else -1 for g in self.mf.g(w0)]
                zero = {k for k in range(N) if w0[k] == 0} if self.L >= 2 else set()
                if zero:
                    decisions = self._settle(w0, zero)
                    self.events.append({"kind": "start", "tau": 0.0, "log10_t": -math.inf,
                                        "decisions": decisions})
            f0 = self.rhs(self.y)
            self._save(self.y, f0)
            self._loop(f0)
        except _Stop as stop:
            self.status = stop.status

    def _initial_step(self, y: list, f0: list) -> Any:
        # (tau on the absolute scale here: it starts at 0, where its relative floor would
        # make the first step vanish)
        sc = [a + self.rtol * abs(v) for a, v in zip(self.atol_y[:-1] + [self.rtol], y)]
        d0 = max(abs(v) / c for v, c in zip(y, sc))
        d1 = max(abs(v) / c for v, c in zip(f0, sc))
        h = mpf("1e-6") if (d0 < 1e-5 or d1 < 1e-5) else mpf("0.01") * d0 / d1
        return min(h, mpf("0.01"))

    def _loop(self, f0: list) -> None:
        """Segments between events, each run by the shared loop (:func:`.driver.advance`)."""
        N = self.N
        stepper = MpStepper(self.method, self.rhs, self.nu, self.y, self._initial_step(self.y, f0),
                            rtol=self.rtol, atol=list(self.atol_y), digits=self.digits, f0=f0)
        self.stepper = stepper.integrator
        chatter = 0
        last_event_nu = None

        def on_step(t, y, dense) -> None:
            if dense is not None:      # the event's landing point: saved once the event is handled
                return
            self._check_range(y)
            if self.l2 and not self.near_collapse:
                self._watch_collapse(y)
            self.y, self.nu = y, t
            self._save(y, stepper.f, t, step=self._step_record(stepper))
            if self.bar is not None and len(self.saved_w) % 20 == 0:
                self.bar.update(y[N] if self.time_kind == "physical" else mpmath.log1p(y[N + 1]), _log10_t(y[N]))

        while True:
            if all(v == 0 for v in stepper.f[:N]):
                self._stationary()
                return
            try:
                out = advance(stepper, self._events(self.y), max_steps=self.max_steps - self.steps, on_step=on_step)
            finally:
                self.rejected = stepper.rejected      # (nfev: counted by _field, every evaluation)
            self.steps += out.steps
            if out.kind == "max_steps":
                raise _Stop(f"max_steps: {self.max_steps} steps taken, stopped at {self._where()}")
            if out.kind == "failed":
                raise _Stop(self._underflow_status(self.y))
            kind, _, idx = out.fired[0].partition(":")
            i = int(idx) if idx else -1
            nu = out.t
            self._check_range(out.y)
            self.y, self.nu = list(out.y), nu
            if kind == "horizon":
                if self.time_kind == "physical":
                    self.y[N] = self.s_target  # within the tolerance already; report T exactly
                else:
                    self.y[N + 1] = self.T
                self._save(self.y, self.rhs(self.y), nu, step=self._step_record(stepper))
                return
            if kind == "collapse":
                self.events.append({"kind": "collapse", "tau": float(self.tau), "log10_t": _log10_t(self.s)})
                self._save(self.y, [mpf(0)] * (N + 2), nu)
                raise _Stop(collapse_status(_log10_t(self.s), float(self.tau)))
            f_in = self.rhs(self.y)
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
            self._save(self.y, f0, nu, f_in)
            hs = nu - stepper.t_old
            stepper.restart(nu, self.y, f0, h=max(stepper.h, hs) if hs > 0 else stepper.h)

    def _step_record(self, stepper):
        """What re-takes the last step with another length: its start, and the extrapolation
        column it used (GBS re-steps with its last accepted one).  ``None`` for linf-SAM,
        whose field changes with the mode at every event."""
        if self.linf:
            return None
        return stepper.t_old, stepper.y_old, stepper.f_old, getattr(stepper.integrator, "k_used", None)

    def _watch_collapse(self, y: list) -> None:
        """Near an l2-SAM collapse (``|F| < 1e-4 |F(0)|``) every coordinate is heading to 0
        together and the run is about to end: per-coordinate relative control would only
        crawl into the singularity of ``F/|F|``, so the weights' floor becomes
        ``rtol max|W|`` (the float64 driver's collapse watch uses the same threshold)."""
        F = self.mf.normalised_gradient(y[:self.N])
        nF = mpmath.sqrt(mpmath.fdot(F, F))
        if nF < self.nF0 * mpf("1e-4"):
            self.near_collapse = True
            floor = self.rtol * max(abs(v) for v in y[:self.N])
            for k in range(self.N):
                self.stepper.atol[k] = max(self.stepper.atol[k], floor)

    def _underflow_status(self, y: list) -> str:
        if self.l2:
            F = self.mf.normalised_gradient(y[:self.N])
            nF = mpmath.sqrt(mpmath.fdot(F, F))
            if nF == 0 or mpmath.log(nF) - self.log_collapse < mpmath.log(mpf(10) ** 6):
                return f"collapse: step size underflow near W = 0 at {self._where()}"
        return f"step size underflow at {self._where()}"

    def _stationary(self) -> None:
        """Every dW/dtau is 0: ``e^s = 1 + t`` grows linearly in tau, ``dt/dtau = e^phi``.

        float64 calls this *frozen* and so does the record (``event_log`` kind
        ``"frozen"``, ``stats["frozen_from_log10_t"]``); in mp it is exact, not a threshold.
        """
        N = self.N
        y = list(self.y)
        _, phi = self._eval(y[:N])
        c = mpmath.exp(phi)
        one_plus_t = mpmath.exp(y[N])
        self.stationary_tau = y[N + 1]
        self.frozen_from = (_log10_t(self.s), float(self.tau))
        self.events.append({"kind": "frozen", "tau": float(self.tau), "log10_t": _log10_t(self.s),
                            "note": "dW/dtau = 0 exactly: W held fixed, clocks advanced exactly"})
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
        nu = self.nu + (y[N] - self.y[N]) + mpmath.log1p(y[N + 1]) - mpmath.log1p(self.y[N + 1])
        self.y = y
        # W constant; the clocks' derivatives in nu are not needed by anything downstream
        self._save(y, [mpf(0)] * (N + 2), nu)

    # --- output ---------------------------------------------------------------------------------
    def _dense(self, nu: np.ndarray, Y: np.ndarray):
        """Dense output in ``nu`` of the saved ``(W, s, tau)`` (float copies): the re-taken step
        where there is one, a cubic Hermite interpolant otherwise (linf-SAM, jumps)."""
        F_out = np.array(self.saved_f)
        F_in = np.array(self.saved_f_in)
        L, d, N = self.L, self.d, self.N
        integrator = self.stepper

        def exact(rec, x: float) -> np.ndarray:
            # the step re-taken from its start with the length that ends at x: leader changes
            # are dated with the integrator's accuracy, not a cubic's (1e-4 in log10 t)
            nu0, y0, f0, column = rec
            keep = getattr(integrator, "k_used", None)
            if column is not None:
                integrator.k_used = column
            try:
                y, _ = integrator.redo(self.rhs, y0, f0, mpf(x) - nu0)
            finally:
                if column is not None:
                    integrator.k_used = keep
            return np.array([float(v) for v in y])

        def at(i: int, x: float) -> np.ndarray:
            rec = self.saved_step[i + 1] if i + 1 < len(self.saved_step) else None
            if rec is not None:
                return exact(rec, x)
            h = nu[i + 1] - nu[i]
            if not h > 0:
                return Y[i + 1]
            th = min(max((x - nu[i]) / h, 0.0), 1.0)
            t2, t3 = th * th, th ** 3
            return ((2 * t3 - 3 * t2 + 1) * Y[i] + (t3 - 2 * t2 + th) * h * F_out[i]
                    + (-2 * t3 + 3 * t2) * Y[i + 1] + (t3 - t2) * h * F_in[i + 1])

        def dense(i: int, x: float) -> np.ndarray:
            return at(i, x)[:N].reshape(L, d)

        def clock(i: int, x: float) -> tuple[float, float]:
            v = at(i, x)
            return float(v[N + 1]), float(log10_t_from_s(max(float(v[N]), 0.0)))
        return dense, clock

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
        nu = np.array(self.saved_nu, float)
        Y = np.array([[float(v) for v in w] + [float(s), float(tv)]
                      for w, s, tv in zip(self.saved_w, self.saved_s, self.saved_tau)]).reshape(m, N + 2)
        dense, clock = self._dense(nu, Y)
        # one leader implementation for every precision (flows/dominant.py)
        dominant = dominant_switches(nu, weights, dense, clock) if m > 1 else \
            dominant_switches(nu, weights, tau=tau, log10_t=log10_t)
        wN, sN = self.saved_w[-1], self.saved_s[-1]
        digits = self.digits
        r_fin = mpmath.log1p(self.saved_tau[-1])
        stats = {
            "steps": self.steps, "nfev": self.nfev, "njev": 0, "nlu": 0, "wall_s": round(wall, 6),
            "events": len(self.events), "event_log": self.events[:200],
            "segments": 1 + sum(1 for e in self.events if e["kind"] in ("cross", "g", "release", "frozen")),
            "saved_points": m,
            "log10_tau_final": float(mpmath.log10(self.saved_tau[-1])) if self.saved_tau[-1] > 0 else -math.inf,
            "rejected": self.rejected,
            "w_final_mp": [mpmath.nstr(v, digits) for v in wN],
            "s_final_mp": mpmath.nstr(sN, digits),
            "tau_final_mp": mpmath.nstr(self.saved_tau[-1], digits),
            "log10_t_final_mp": mpmath.nstr(_log10_t_mp(sN), digits),
            "log10_loss_final_mp": mpmath.nstr(self.mf.log_loss(wN) / ln10, digits),
        }
        del r_fin
        if self.frozen_from is not None:
            stats["frozen_from_log10_t"], stats["frozen_from_tau"] = self.frozen_from
        if self.linf and self.events:
            stats["zero_final"] = [i for i in range(N) if wN[i] == 0]
        settings = {"time": self.time_kind, "precision": f"mp:{digits}", "method": self.method,
                    "rtol": self.rtol_f, "atol": self.atol_f, "horizon": str(self.horizon),
                    "clock": "ln(1+t) + ln(1+tau); state (W, ln(1+t), tau)",
                    "max_steps": self.max_steps}
        return Trajectory(problem=self.problem, tau=tau, log10_t=log10_t, weights=weights,
                          log10_loss=log10_loss, status=self.status, dominant=tuple(dominant),
                          settings=settings, stats=stats)


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


def _log10_t_mp(s):
    if s <= 0:
        return mpf("-inf")
    return mpmath.log10(mpmath.expm1(s))


def _log10_t(s) -> float:
    return float(_log10_t_mp(s))
