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
re-stepping from the step start with a shorter step, or a short controlled step from a
state already known on it (safeguarded Newton on the step length, :meth:`MpStepper.locate`),
so the landing point has the integrator's full accuracy; leader changes are dated by
controlled steps too (to 1e-24: the copies are float64), not a cubic:

* the physical horizon ``s = ln(1 + T)``;
* l2-SAM collapse: ``|F(W)|`` falls below ``collapse_rtol * |F(W(0))|`` -- the
  normalised perturbation ``rho F/|F|`` is undefined at ``F = 0``, so the run stops
  cleanly with status ``"collapse: ..."``;
* linf-SAM switching (below).

**linf-SAM: Filippov's flow, the float64 driver's model**
(:class:`~sambias.flows.filippov.MpFilippovModel` is :class:`~sambias.flows.filippov.FilippovModel`
-- one implementation -- in mp arithmetic): sign memory per coordinate and per column,
switches frozen within a step, every zero crossing landed on exactly, and at an event the
same settling rule, equivalent controls for sliding (a pinned coordinate, a column on
``g_j = 0``), corner clocks on their arrival signs and releases when a control reaches
``+-1`` -- see that module.  The driver adds one event per coordinate, ``g_j`` and control,
so it knows which one fired.

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

import gmpy2
import mpmath
import numpy as np
from mpmath import mpf
from mpmath.libmp import mpf_mul

from .collapse import collapse_status, is_filippov, is_normalised
from .dominant import dominant_switches
from .logtime import log10_t_from_s
from .filippov import MpFilippovModel
from .mp_field import CollapseError, mp_field
from .driver import Event, Progress, advance
from .mp_integrators import OutOfRange, default_method
from .steppers import MpStepper
from .trajectory import Trajectory

__all__ = ["simulate_mp"]

ATOL_FLOOR = 1e-100   # default atol of the weights: this times rtol times the initial weight scale
_FLOAT_LIMIT = 1e300   # states beyond this cannot be returned as float64 copies (beta too)
_MAX_EVENT_ITER = 80
_CHATTER_LIMIT = 50    # events in a row at (numerically) one instant
# GBS steps entirely in gmpy2 mpfr where the field allows (_MpRun.rhs_fr; issue 11.4)
MPFR_STEPS = True
# local tolerance of the steps that date leader changes (the trajectory's float64 copies);
# None: re-take the step at its full column (as before issue 11.4's speed work)
DENSE_RTOL = mpf("1e-24")


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
        # linf-SAM: the float64 driver's Filippov model in mp arithmetic, and its mode
        self.model = MpFilippovModel(problem, self._field, self.mf, self.rtol, digits) if self.linf else None
        self.mode = None
        self.near_collapse = False
        self.bar = None     # a driver.Progress when asked for

    # --- the right-hand side ------------------------------------------------------
    def _field(self, w: list, sigma=None) -> tuple[list, Any]:
        self.nfev += 1
        try:
            if self.linf:
                return self.field.rescaled_mp(w, sigma)
            return self.field.rescaled_mp(w)
        except CollapseError:
            raise _Stop(collapse_status(_log10_t(self.s), float(self.tau))) from None

    def _eval(self, w: list) -> tuple[list, Any]:
        """``(dW/dtau, phi)`` in the current mode, ``phi = log(dt/dtau)``: the field, or for
        linf-SAM the Filippov flow of :class:`~sambias.flows.filippov.FilippovModel` (sliding
        by equivalent control, a corner's clock on its arrival signs) in mp arithmetic."""
        if not self.linf:
            dw, log_S = self._field(w)
            return dw, -log_S
        if self._free is not None:      # off every sliding surface: the switches are one list
            dw, log_S = self._field(w, self._free)
        else:
            dw, log_S = self.model.flow(w, self.mode)
        return dw, -log_S

    @property
    def mode(self):
        """The linf-SAM mode (:class:`~sambias.flows.filippov.Mode`); setting it also caches
        its switches when no coordinate or column slides (most of a run: ``_eval``'s fast path)."""
        return self._mode

    @mode.setter
    def mode(self, mode) -> None:
        self._mode = mode
        self._free = self.model.free_sigma(mode) if mode is not None else None

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

    def rhs_fr(self, y: list) -> list:
        """:meth:`rhs` on gmpy2 ``mpfr`` (the integrator's context), for GBS's all-mpfr steps
        (issue 11.4: no mpf <-> mpfr conversions per evaluation).  Smooth flows only (not
        linf-SAM, whose field goes through the Filippov mode logic).  A clock outside mpfr's
        exponent range (``ds/dtau`` past e^(2^62): data near 1e308) raises the integrator's
        out-of-range signal, and that step runs on mpf instead."""
        N = self.N
        sigma = None
        if self.linf:
            sigma = self._linf_sigma_fr()
            if sigma is None:      # a sliding mode: the Filippov model's mpf path for this step
                raise OutOfRange
        self.nfev += 1
        try:
            dw, log_S = self.field.rescaled_fr(y[:N], sigma)
        except CollapseError:
            raise _Stop(collapse_status(_log10_t(self.s), float(self.tau))) from None
        a = gmpy2.exp(-log_S - y[N])
        c = 1 / (a + 1 / (1 + y[N + 1]))
        if not (gmpy2.is_finite(a) and c > 0):
            raise OutOfRange
        out = [v * c for v in dw]
        out.append(a * c)
        out.append(c)
        return out

    def _linf_sigma_fr(self):
        """linf-SAM's frozen switches as a list when nothing slides (the field alone is the
        flow: no pins, no g_j sliding), else ``None``.  Reads the Filippov model's mode
        defensively: any other state (or a model without these names) means "not here"."""
        mode = self.mode
        try:
            if mode is None or mode.pinned.any() or mode.gslide.any():
                return None
            sig = self.model.base_sigma(mode)
        except AttributeError:
            return None
        if self._sigma_fr_key is not sig:
            self._sigma_fr_key, self._sigma_fr = sig, [int(v) for v in sig]
        return self._sigma_fr

    def _rhs_for_stepper(self):
        """The right-hand side handed to the stepper: :meth:`rhs`, carrying :meth:`rhs_fr` as
        ``.fr`` where the field can run on mpfr (the package's field; linf-SAM off its sliding
        surfaces)."""
        if self.field is not self.mf or not getattr(self.mf, "fr_ok", False) or not MPFR_STEPS:
            return self.rhs
        self._sigma_fr_key = self._sigma_fr = None
        return _WithFr(self.rhs, self.rhs_fr)

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
        model, mode = self.model, self.mode
        if self.L >= 2:
            for k in np.flatnonzero(~mode.pinned.ravel()):
                evs.append(Event(f"zero:{k}", lambda t, yy, k=k, e=mode.pw.flat[k]: e * yy[k], -1, ftol=self.atol))
        if self.mf.n > 1:
            g_tol = self.atol + self.rtol * max(abs(v) for v in self.mf.g(y[:N]))
            for j in np.flatnonzero(~mode.gslide & ~model.g_inert(mode)):
                evs.append(Event(f"g:{j}", lambda t, yy, j=j, e=mode.pg[j]: e * cached("g", self.mf.g, yy)[j],
                                 -1, ftol=g_tol))
            for j in np.flatnonzero(mode.gslide):
                evs.append(Event(f"gunslide:{j}", lambda t, yy, j=j: 1 - abs(cached(
                    "cg", lambda w: model.solve_g_controls(w, mode), yy)[j]), -1, ftol=self.atol))
        for p in model.single_pins(mode):
            evs.append(Event(f"unpin:{p}", lambda t, yy, p=p: model.pin_release(yy[:N], mode, p), -1, ftol=self.atol))
        return evs

    def _horizon_phi(self, y: list):
        if self.time_kind == "physical":
            return self.s_target - y[self.N]
        return self.T - y[self.N + 1]

    # --- linf-SAM mode changes (the rules are FilippovModel's) ---------------------------------
    def _handle_event(self, kind: str, i: int, y: list) -> None:
        N, model = self.N, self.model
        rec = {"kind": {"zero": "cross", "unpin": "release", "gunslide": "release"}.get(kind, kind), "index": int(i),
               "tau": float(self.tau), "log10_t": _log10_t(self.s)}
        mode = self.mode
        cand = mode.pinned.ravel().copy()
        gcand = mode.gslide.copy()
        if kind == "zero":
            # the layers of a column reach 0 together up to the integration error: snap
            # every free coordinate heading to 0 within the snap tolerance onto it
            scale = max([abs(v) for v in y[:N]] + [mpf(1)])
            ztol = 100 * (self.atol + self.rtol * scale)
            dw, _ = self._eval(y[:N])
            side = mode.pw.ravel()
            for k in range(N):
                if not cand[k] and (k == i or (abs(y[k]) <= ztol and (y[k] * dw[k] <= 0 or side[k] * y[k] <= 0))):
                    cand[k], y[k] = True, mpf(0)
        elif kind == "unpin":
            mode = model.release(y[:N], mode, pins={i})
            cand[i] = False
        elif kind == "gunslide":
            mode = model.release(y[:N], mode, cols={i})
            gcand[i] = False
        elif kind == "g":
            mode = mode.copy()
            mode.pg[i] = -mode.pg[i]      # crossed (settle decides whether it slides)
            gcand[i] = True
        self.mode, rec["decisions"] = model.settle(y[:N], mode, cand, gcand, tol=model.settle_tol(y[:N], mode))
        rec["mode"] = self.mode.describe()
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
                self.mode, decisions = self.model.start(w0)
                if decisions is not None:
                    self.events.append({"kind": "start", "tau": 0.0, "log10_t": -math.inf, "decisions": decisions})
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
        stepper = MpStepper(self.method, self._rhs_for_stepper(), self.nu, self.y, self._initial_step(self.y, f0),
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
        fun = self._rhs_for_stepper()

        def exact(rec, x: float) -> np.ndarray:
            # the step re-taken from its start with the length that ends at x: leader changes
            # are dated with the integrator's accuracy, not a cubic's (1e-4 in log10 t)
            nu0, y0, f0, column = rec
            # the copies are float64: a step to 1e-24 (not the run's 1e-49) from the start,
            # controlled by the integrator's own estimate -- a fraction of a re-take's cost at
            # its full column (issue 11.4); the re-take where that estimate fails
            short = getattr(integrator, "short_step", None) if DENSE_RTOL is not None else None
            if short is not None:
                y, _ = short(fun, y0, f0, mpf(x) - nu0, rtol=max(integrator.rtol, DENSE_RTOL))
                if y is not None:
                    return np.array([float(v) for v in y])
            keep = getattr(integrator, "k_used", None)
            if column is not None:
                integrator.k_used = column
            try:
                y, _ = integrator.redo(fun, y0, f0, mpf(x) - nu0)
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


class _WithFr:
    """A right-hand side on mpf lists that also offers itself on mpfr lists (``.fr``)."""

    __slots__ = ("f", "fr")

    def __init__(self, f, fr) -> None:
        self.f, self.fr = f, fr

    def __call__(self, y: list) -> list:
        return self.f(y)


def _log10_t_mp(s):
    if s <= 0:
        return mpf("-inf")
    return mpmath.log10(mpmath.expm1(s))


def _log10_t(s) -> float:
    return float(_log10_t_mp(s))
