"""The float64 integrator façade: :func:`simulate`.

One call integrates the flow of a :class:`~sambias.problem.Problem` to a horizon that may
lie far past float64's range (``t = 1e400``, ``1e1000``):

* the flow is integrated in log time (:mod:`sambias.flows.logtime`: state
  ``(W, ln(1 + t) - phi(W), ln(1 + tau))`` in a clock that follows the arc length of ``W``
  and ``ln(1 + tau)``) with scipy's solver classes stepped by the run loop shared with mp
  (:mod:`sambias.flows.steppers`, :mod:`sambias.flows.driver`) -- dense output, events,
  and the analytic Jacobian for the implicit methods (Radau, BDF, LSODA).  Physical time is never
  integrated as such, whatever ``time`` says: ``t`` passes 1e308 and the loss underflows
  long before the horizons this is for;
* the horizon is an event (``ln(1 + t) = ln(1 + T)`` for ``time="physical"``,
  ``ln(1 + tau) = ln(1 + T)`` for ``time="rescaled"``): ``time`` only says which clock
  ``T`` refers to; both clocks are always carried;
* linf-SAM runs segment by segment with frozen sign patterns (Filippov sliding,
  :mod:`sambias.flows.filippov`); l2-SAM stops cleanly at a collapse to ``W = 0``
  (:mod:`sambias.flows.collapse`); a run whose weights would leave float64's range stops
  with an ``"overflow: ..."`` status;
* leader changes are located on the dense output (:mod:`sambias.flows.dominant`).

``precision="mp:DIGITS"`` hands the run to the mpmath integrator
(``sambias.flows.mp.simulate_mp``).

>>> from sambias import Problem, Init
>>> p = Problem(depth=2, algorithm="gd", X=[[3.0, 2.0, 1.0, 0.5]], y=[1], init=Init(scale=0.2))
>>> tr = simulate(p, "1e400")
>>> tr.status, tr.log10_t_final, int(tr.direction_final.argmax())
('ok', 400.0, 0)
"""

from __future__ import annotations

import math
import time as _time
from typing import Any, Callable, Iterable

import numpy as np
from scipy.integrate import OdeSolution

from sambias.errors import ProblemError, SimulationError
from sambias.horizon import Horizon, parse_horizon
from sambias.problem import Problem

from .collapse import CollapseWatch, collapse_status, is_filippov, stationary_status
from .dominant import dominant_switches
from .driver import Event, Progress, advance
from .filippov import FilippovModel
from .steppers import Float64Stepper
from .logtime import LN10, LogTimeSystem, frozen_clocks, ln1p_of_horizon, log10_t_from_s, tau_from_r, where
from .losses import log10_loss_rows
from .trajectory import Trajectory

METHODS = ("auto", "Radau", "BDF", "LSODA", "DOP853", "RK45")
DEFAULT_RTOL = 1e-9
AUTO_METHOD = "LSODA"       # stiffness switching: Adams early, BDF once the clock is stiff (README)
AUTO_FALLBACK = "BDF"       # what "auto" retries a segment with when LSODA gives up, and uses
AUTO_STIFF = 100.0          # for segments that start with the clock's relaxation rate above this
STIFF_SWITCH = 10.0         # "auto" leaves LSODA for BDF once that rate passes this within a run
# Off: BDF stalls on THEORY.md's l2-SAM flagship (alpha = 0.2, rtol 1e-5: steps ~1e-4 in tau past
# log10 t ~ 1e27, 15000 steps short of tau = 80, also before this switch existed) where LSODA
# finishes in 4.4k steps; the 5x fewer steps it saves on GD are not worth a stalled report.
SWITCH_TO_BDF = False
ATOL_FLOOR = 1e-100
DEFAULT_MAX_STEPS = 1_000_000
MAX_SAVED = 20_000          # saved points kept in memory (to_json thins further to 300)
CHATTER_LIMIT = 50          # linf-SAM events in a row at one instant before giving up
FREEZE_RTOL = 1.0            # W is frozen once |dW/dtau| (1 + tau) < FREEZE_RTOL * rtol * scale
FREEZE_RTOL_FAILED = 1e-6   # ... or < this after the solver gave up (on rounding noise)
FIRST_STEP = 1e-4           # in nu; the solvers adapt from there
SNAP_FACTOR = 100.0         # coordinates heading to 0 and within SNAP_FACTOR*atol + max(SNAP_RTOL,
SNAP_RTOL = 1e-12           # 10 rtol)*max|w| of it at a linf-SAM event are put on it (the layers of
                            # a column reach 0 together, up to the integration error)


def simulate(problem: Problem, horizon: Horizon | str | float | int, *, time: str = "physical",
             precision: str = "float64", method: str = "auto", rtol: float | None = None,
             atol: float | None = None, field=None, events: Iterable[Callable] = (),
             max_steps: int | None = None, progress: bool = False) -> Trajectory:
    """Integrate the flow of ``problem`` up to ``horizon`` and return its :class:`Trajectory`.

    ``horizon`` is a :class:`~sambias.horizon.Horizon` or anything
    :func:`~sambias.horizon.parse_horizon` reads (``"1e400"`` is legal and is reached);
    ``time="physical"`` stops at ``t = T``, ``time="rescaled"`` at ``tau = T``.
    ``precision`` is ``"float64"`` or ``"mp:DIGITS"`` (mpmath, digits >= 10).
    ``method`` is ``"auto"`` (LSODA; BDF once the clock turns stiff, for segments LSODA gives
    up on, and for linf-SAM throughout), ``"Radau"``, ``"BDF"``, ``"LSODA"`` (all three get the analytic Jacobian),
    ``"DOP853"`` or ``"RK45"`` (explicit: fine to ``t = 1e1000``, slow far beyond, where the
    clock is stiff).  ``rtol`` defaults to 1e-9 (float64; the mp default otherwise).
    ``atol`` defaults to ``1e-100`` times the initial weight scale -- error control is
    relative per coordinate, because a coordinate driven down to 1e-36 can come back and
    lead -- and ``1e-3 rtol`` times that scale for a coordinate that starts a segment at
    exactly 0.  ``field`` replaces
    the derived ``sambias.symbolic.GeneratedField(problem)`` (any object with its methods).  ``events`` are callables
    ``event(tau, w)`` (``w`` the flat weights, ``tau`` the rescaled time, ``inf`` past
    1e308) with optional ``terminal``/``direction`` attributes as in ``solve_ivp``; their
    zeros are recorded in ``stats["event_log"]``.  ``max_steps`` caps the accepted steps
    (default 1e6).  ``progress=True`` shows a tqdm bar on stderr.

    The returned trajectory's ``status`` is ``"ok"`` or why the run stopped early
    (``"collapse: ..."``, ``"overflow: ..."``, ``"max_steps: ..."``, ``"event: ..."``,
    ``"chattering: ..."``, ``"failed: ..."``, ``"solver: ..."`` when a solver raised).  Bad arguments raise
    :class:`~sambias.errors.ProblemError` with a one-line message.

    >>> from sambias import Problem, Init
    >>> p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0, 1.0, 0.5]], y=[1],
    ...             init=Init(scale=0.06))
    >>> simulate(p, "1e400").status.startswith("collapse")
    True
    """
    h = _check(problem, horizon, time, precision, method, rtol, atol, events, max_steps)
    if precision != "float64":
        digits = int(precision.split(":", 1)[1])
        if method != "auto":
            raise ProblemError(f"method: {method!r} is a float64 solver; mp precision chooses its own")
        if tuple(events):
            raise ProblemError("events: only supported with precision 'float64'")
        try:
            from .mp import simulate_mp
        except ImportError:
            raise SimulationError("mp precision not available") from None
        mp_field = field if field is not None and hasattr(field, "rescaled_mp") else None
        return simulate_mp(problem, h, time=time, digits=digits, rtol=rtol, atol=atol, field=mp_field,
                           max_steps=max_steps, progress=progress)
    run = _Run(problem, h, time=time, method=_canonical_method(method), rtol=rtol, atol=atol,
               field=field, events=tuple(events), max_steps=max_steps, progress=progress)
    return run.run()


# --- argument checking ------------------------------------------------------------------------
def _canonical_method(method: str) -> str:
    return {m.lower(): m for m in METHODS}[method.lower()]


def _check(problem, horizon, time, precision, method, rtol, atol, events, max_steps) -> Horizon:
    if not isinstance(problem, Problem):
        raise ProblemError(f"problem: expected a sambias Problem, got {type(problem).__name__}")
    if time not in ("physical", "rescaled"):
        raise ProblemError(f"time: expected 'physical' or 'rescaled', got {time!r}")
    if not isinstance(precision, str) or not (precision == "float64" or precision.startswith("mp:")):
        raise ProblemError(f"precision: expected 'float64' or 'mp:DIGITS', got {precision!r}")
    if precision.startswith("mp:"):
        digits = precision[3:]
        if not digits.isdigit() or int(digits) < 10:
            raise ProblemError(f"precision: mp:DIGITS needs an integer DIGITS >= 10, got {precision!r}")
    if not isinstance(method, str) or method.lower() not in {m.lower() for m in METHODS}:
        raise ProblemError(f"method: unknown method {method!r}; expected one of {', '.join(METHODS)}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ProblemError(f"{name}: expected a positive number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ProblemError(f"{name}: must be a positive finite number, got {value!r}")
    if rtol is not None and rtol >= 1:
        raise ProblemError(f"rtol: must be below 1, got {rtol!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer))
                                  or max_steps < 1):
        raise ProblemError(f"max_steps: expected a positive integer, got {max_steps!r}")
    for ev in events:
        if not callable(ev):
            raise ProblemError(f"events: expected callables event(tau, w), got {type(ev).__name__}")
    return horizon if isinstance(horizon, Horizon) else parse_horizon(horizon)


# --- one float64 run ----------------------------------------------------------------------------
class _Stop(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class _Segment:
    """One stretch integrated in one mode: its system (for the coordinate map) and the
    steps' interpolants."""

    def __init__(self, system: LogTimeSystem, ts: list, interps: list, first: tuple) -> None:
        self.system = system
        self.sol = OdeSolution(ts, interps) if len(ts) > 1 else None
        self.first = first         # (w, s, r) at its start: all there is of a segment without steps

    def state(self, nu: float) -> tuple[np.ndarray, float, float]:
        return self.system.unpack(self.sol(nu)) if self.sol is not None else self.first


class _FrozenSegment:
    """The stretch after :meth:`_Run._frozen`: constant weights, clocks linear in ``nu``."""

    def __init__(self, w, nu0, s0, r0, nu1, s1, r1) -> None:
        self.w = np.array(w, float)
        self.nu0, self.s0, self.r0 = nu0, s0, r0
        self.nu1, self.s1, self.r1 = nu1, s1, r1

    def state(self, nu: float) -> tuple[np.ndarray, float, float]:
        theta = 0.0 if self.nu1 == self.nu0 else (nu - self.nu0) / (self.nu1 - self.nu0)
        return self.w.copy(), self.s0 + theta * (self.s1 - self.s0), self.r0 + theta * (self.r1 - self.r0)


class _LinearSegment:
    """The analytic start (:meth:`_Run._skip_start`): ``W`` and ``ln(1 + tau)`` linear in ``nu``,
    ``t`` linear in it too (``tau`` is tiny there)."""

    def __init__(self, w0, w1, nu0, nu1, s0, s1, r0, r1) -> None:
        self.w0, self.w1 = np.array(w0, float), np.array(w1, float)
        self.nu0, self.nu1, self.s1, self.r0, self.r1 = nu0, nu1, s1, r0, r1

    def state(self, nu: float) -> tuple[np.ndarray, float, float]:
        theta = 0.0 if self.nu1 == self.nu0 else min(max((nu - self.nu0) / (self.nu1 - self.nu0), 0.0), 1.0)
        t1 = math.expm1(self.s1) if self.s1 < 700 else math.inf
        s = math.log1p(theta * t1) if math.isfinite(t1) else (self.s1 + math.log(theta) if theta > 0 else 0.0)
        return (1 - theta) * self.w0 + theta * self.w1, s, self.r0 + theta * (self.r1 - self.r0)


def _log_expm1(s: float) -> float:
    """``ln(e^s - 1)`` for ``s > 0`` without forming ``e^s`` (``s = ln(1 + T)`` of T = 1e400)."""
    return s + math.log(-math.expm1(-s))


def _arc(a: np.ndarray, b: np.ndarray) -> float:
    d = np.asarray(b, float) - np.asarray(a, float)
    m = float(np.max(np.abs(d))) if d.size else 0.0
    return m * math.sqrt(float(np.dot(d / m, d / m))) if m > 0 else 0.0


class _Recorder:
    """Collects a segment's step ends and interpolants (and ticks the progress bar)."""

    def __init__(self, nu0: float, y0: np.ndarray, system: LogTimeSystem) -> None:
        self.system = system
        self.ts, self.interps = [nu0], []
        self.points = [system.unpack(y0)]
        self.stepper = None
        self.tick = None

    def __call__(self, t, y, dense) -> None:
        self.interps.append(dense if dense is not None else self.stepper.dense_output())
        self.ts.append(t)
        # (w, s, r) now: the events have just evaluated the field at y (memoised)
        self.points.append(self.system.unpack(y))
        if self.tick is not None and len(self.ts) % 20 == 0:
            self.tick(y)


class _Run:
    def __init__(self, problem, horizon, *, time, method, rtol, atol, field, events, max_steps, progress):
        self.problem = problem
        self.horizon = horizon
        self.time = time
        self.method = AUTO_METHOD if method == "auto" else method
        if method == "auto" and is_filippov(problem):
            # a Filippov evaluation costs several plain ones, so fewer, implicit steps pay:
            # BDF took 2-3x fewer steps than LSODA and 3-8x less time on random
            # asymmetric L = 2 problems (issue 10.1)
            self.method = AUTO_FALLBACK
        self.method_asked = method
        self.rtol = DEFAULT_RTOL if rtol is None else float(rtol)
        if field is None:
            # the engine integrates what symbolic/ derives (compiled once per shape and cached)
            from sambias.symbolic import GeneratedField
            field = GeneratedField(problem)
        self.field = field
        self.L, self.d = problem.depth, problem.dim
        self.N = self.L * self.d
        self.w0 = problem.initial_weights().ravel()
        self.w0_max = float(np.abs(self.w0).max()) if self.w0.size else 0.0
        scale = float(np.max(np.abs(self.w0))) if self.w0.size else 0.0
        # Relative accuracy per coordinate matters: a coordinate driven down to 1e-36 (l2-SAM)
        # can come back and lead, so the default absolute floor is far below any weight.
        self.atol_user = atol
        self.atol = float(atol) if atol is not None else ATOL_FLOOR * max(scale, 1e-6)
        self.atol_zero = 1e-3 * self.rtol * max(scale, 1e-6)
        # the clock's length unit (a zero initialisation has none of its own)
        self.w_scale = max(float(np.linalg.norm(self.w0)), 1e-3)
        # the clocks s = ln(1+t), r = ln(1+tau) need absolute accuracy (that is relative
        # accuracy of t and tau); a tiny atol there would make the first step ~atol
        self.atol_clock = 1e-3 * self.rtol if atol is None else max(self.atol, 1e-3 * self.rtol)
        self.user_events = events
        self.max_steps = DEFAULT_MAX_STEPS if max_steps is None else int(max_steps)
        self.progress = progress
        self.linf = is_filippov(problem)
        self.model = FilippovModel(problem, self.field) if self.linf else None
        self.collapse = CollapseWatch(self.field, self.w0) if CollapseWatch.applies(problem) else None
        # float64 range: keep the margins (~ d |x| |w|^L) and the clock's dphi/dtau = grad phi . f
        # (~ (n d |x| |w|^(L-1))^2) below ~1e298
        big = float(np.max(np.abs(problem.signed_data))) * problem.dim * problem.n
        log_w = min(150.0, (298.0 - math.log10(big)) / self.L)
        if self.L > 1:
            log_w = min(log_w, (298.0 - 2.0 * math.log10(big)) / (2.0 * (self.L - 1)))
        self.w_max = 10.0 ** log_w
        if time == "physical":
            self.s_target, self.r_target = ln1p_of_horizon(horizon), math.inf
        else:
            self.s_target, self.r_target = math.inf, ln1p_of_horizon(horizon)
        # nu (arc length + ln(1 + tau)) has no a-priori bound: the horizon and overflow
        # events end every run long before float64 could run out of nu.
        self.nu_end = 1e300
        self.steps = 0
        self.nfev = self.njev = self.nlu = 0
        self.event_log: list[dict[str, Any]] = []
        self.n_events = 0
        self.segments: list[_Segment] = []
        self.seg_of: list[int] = []   # forward segment of every saved point
        self.nu: list[float] = []
        self.W: list[np.ndarray] = []
        self.s: list[float] = []
        self.r: list[float] = []
        self.status = "ok"
        self.reached = False
        self.frozen_from = None
        self.stationary = None        # why a frozen run is no success (set by _frozen)
        self.stiff_seen = False       # "auto": the clock turned stiff, BDF from then on
        self._bar = None

    # --- event functions --------------------------------------------------------------
    def _make_events(self, system: LogTimeSystem, mode, method: str = "") -> list[Event]:
        m = system.m
        evs: list[Event] = []
        if SWITCH_TO_BDF and self.method_asked == "auto" and method == AUTO_METHOD:
            # LSODA stays in its Adams mode once the clock turns stiff (1700 stability-limited
            # steps to t = 1e400 on L = 2 GD, 309 for BDF): the segment ends there and the
            # next one starts stiff, hence with BDF
            evs.append(Event("stiff", lambda nu, y: STIFF_SWITCH - system.clock_stiffness(y), direction=-1))
        if self.time == "physical":
            def horizon(nu, y):
                return system.unpack(y)[1] - self.s_target
        else:
            def horizon(nu, y):
                return y[m + 1] - self.r_target
        evs.append(Event("horizon", horizon, direction=1))

        def overflow(nu, y):
            return self.w_max - (max(float(y[:m].max()), -float(y[:m].min())) if m else 0.0)
        evs.append(Event("overflow", overflow, direction=-1))

        log_rel = math.log(FREEZE_RTOL * self.rtol)

        def frozen(nu, y):
            left, _ = self._motion_left(lambda ww: system.evaluate(ww)[:2], system.weights(y), float(y[m + 1]))
            return float(np.clip(left - log_rel, -50.0, 50.0))
        evs.append(Event("frozen", frozen, direction=-1))

        if self.collapse is not None:
            evs.append(Event("collapse", lambda nu, y: self.collapse.value(system.weights(y)), direction=-1))

        if self.model is not None:
            model = self.model
            evs.append(Event("cross", lambda nu, y: model.cross_value(system.weights(y), mode), direction=-1))
            if model.g_varies:
                evs.append(Event("g", lambda nu, y: model.g_value(system.weights(y), mode), direction=-1))
            if mode.pinned.any() or mode.gslide.any():
                evs.append(Event("release", lambda nu, y: model.release_value(system.weights(y), mode),
                                 direction=-1))

        for k, ev in enumerate(self.user_events):
            def user(nu, y, ev=ev):
                return float(ev(tau_from_r(y[m + 1]), system.weights(y)))
            evs.append(Event(f"user:{getattr(ev, '__name__', k)}", user,
                             direction=int(np.sign(float(getattr(ev, "direction", 0.0)))),
                             terminal=bool(getattr(ev, "terminal", False))))
        return evs

    def _tick(self, s: float, r: float) -> None:
        self._bar.update(s if self.time == "physical" else r, log10_t_from_s(s))

    # --- saving -----------------------------------------------------------------------------
    def _save(self, seg_index: int, nu: float, w: np.ndarray, s: float, r: float) -> None:
        self.seg_of.append(seg_index)
        self.nu.append(float(nu))
        self.W.append(np.array(w, float))
        self.s.append(float(s))
        self.r.append(float(r))

    def _where(self) -> str:
        return where(self.s[-1], self.r[-1])

    # --- the loop -----------------------------------------------------------------------------
    def run(self) -> Trajectory:
        start = _time.perf_counter()
        if self.progress:
            self._bar = Progress(self.s_target if self.time == "physical" else self.r_target)
        try:
            with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
                self._integrate()
            if self.stationary is not None:
                self.status = self.stationary
        except _Stop as stop:
            self.status = stop.status
        except ProblemError:
            raise
        except FloatingPointError as exc:
            if self.collapse is None or not self.s:
                raise SimulationError(f"the vector field failed at the start: {exc}") from None
            self.status = collapse_status(log10_t_from_s(self.s[-1]), tau_from_r(self.r[-1]), self.W[-1], self.problem)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            # numerical failures outside the steppers (root brackets at a switch, ...): the run
            # still ends with a status and the trajectory computed so far
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.status = f"solver: {type(exc).__name__} ({msg})" + (f" at {self._where()}" if self.s else "")
        finally:
            if self._bar is not None:
                self._bar.close()
        return self._trajectory(_time.perf_counter() - start)

    def _integrate(self) -> None:
        w, s, r, nu = self.w0.copy(), 0.0, 0.0, 0.0
        mode = None
        underflow = False
        if self.collapse is not None and not self.collapse.collapsed_at_start:
            try:
                self.field.rescaled(w)
            except FloatingPointError:
                # F != 0 (a scaled norm sees it), but the field's own |F| underflowed
                underflow, self.collapse.norm0 = True, 0.0
        if self.collapse is not None and self.collapse.collapsed_at_start:
            self._save(-1, nu, w, s, r)
            if underflow:
                raise _Stop(f"underflow: the initial weights (largest {float(np.max(np.abs(w))):.3g}) are so small "
                            "that the normalised gradient F underflows to 0 in float64; use precision "
                            "mp:DIGITS or a larger initialisation")
            raise _Stop(collapse_status(-math.inf, 0.0).replace("w reached 0", "w starts at 0"))
        if self.model is not None:
            mode, decisions = self.model.start(w)
            if decisions is not None:
                self._log("start", 0.0, 0.0, decisions=decisions)
        if float(np.max(np.abs(w))) >= self.w_max:
            # the data's scale alone puts the margins or the clock's gradient past float64 at
            # t = 0 (e.g. an entry of X near 1e308): integrating would crawl or meet inf/NaN
            self._log("overflow", 0.0, 0.0)
            raise _Stop(f"overflow: at t = 0 the margins or the clock leave float64's range (max |x| = "
                        f"{float(np.max(np.abs(self.problem.signed_data))):.3g}, |w| = "
                        f"{float(np.max(np.abs(w))):.3g}); use precision mp:DIGITS")
        w, s, r, nu = self._skip_start(w, mode)
        if self.reached:
            return
        first_step = None
        chatter, last_event_nu = 0, None
        while True:
            if mode is not None:
                free = np.flatnonzero(~mode.pinned.ravel())
                flow = lambda ww, mode=mode: self.model.flow(ww, mode)
                grad = lambda ww, mode=mode: self.model.grad_log_speed(ww, mode)
                flow_jac = lambda ww, mode=mode: self.model.flow_jac(ww, mode)
                both = lambda ww, mode=mode: self.model.flow_and_grad(ww, mode)
            else:
                free = None
                flow = self.field.rescaled
                grad = self.field.rescaled_log_speed_grad
                flow_jac = self.field.rescaled_jac
                both = getattr(self.field, "rescaled_with_grad", None)
            system = LogTimeSystem(flow, grad, flow_jac, w, free, w_scale=self.w_scale, flow_and_grad=both,
                                   couple_clock=mode is None)
            y0 = system.pack(w, s, r)
            atol_w = np.full(system.m, self.atol)
            if self.atol_user is None:
                # a coordinate starting at exactly 0 (a crossing, a zero init) has no scale of
                # its own: implicit Newton iterations and the initial step would be measured
                # against the tiny floor, so it gets an absolute tolerance on the weight scale
                atol_w[y0[:system.m] == 0.0] = self.atol_zero
            method = self.method
            if self.method_asked == "auto" and (self.stiff_seen or system.clock_stiffness(y0) > AUTO_STIFF):
                # LSODA always restarts in its explicit Adams mode; a segment that starts with
                # the clock already stiff (after a linf-SAM event late in a run) would crawl
                method = AUTO_FALLBACK
            # s = phi + delta is only held to float64's resolution of s itself: once phi is
            # huge, asking delta (the stiff clock) for more makes the first step's predictor
            # (h times a rounding-noise derivative) fail every Newton test (issue 10.1)
            atol_delta = max(self.atol_clock, 4.0 * np.spacing(abs(s)))
            atol = np.r_[atol_w, atol_delta, self.atol_clock]
            if first_step is None:
                first_step = FIRST_STEP
            # a step below nu's rounding is a zero-length step: the dense output then
            # raises "`ts` must be strictly increasing" (issue 10.1, late restarts at nu ~ 1e24)
            first = max(system.first_step(y0, first_step), 64.0 * np.spacing(abs(nu)))
            seg_index = len(self.segments)
            if self._frozen(flow, w, s, r, nu, rel=FREEZE_RTOL * self.rtol):
                return
            rec = _Recorder(nu, y0, system)
            try:
                out, stepper = self._advance(method, system, nu, y0, atol, first, mode, rec)
                if out.kind == "failed" and self.method_asked == "auto" and method != AUTO_FALLBACK:
                    # LSODA gives up now and then ("unexpected istate"); BDF with the same
                    # Jacobian takes the segment again from its start
                    self._log("fallback", s, r, note=f"{method}: {out.message}; segment redone with {AUTO_FALLBACK}")
                    self.nfev += system.nfev
                    system.nfev = system.njev = 0
                    method = AUTO_FALLBACK
                    rec = _Recorder(nu, y0, system)
                    out, stepper = self._advance(method, system, nu, y0, atol, first, mode, rec)
            except FloatingPointError:
                # the l2-SAM perturbation hit F = 0 exactly inside a step
                self._save(-1, rec.ts[-1], *rec.points[-1])
                self.nfev += system.nfev
                raise _Stop(collapse_status(log10_t_from_s(self.s[-1]), tau_from_r(self.r[-1]), self.W[-1],
                                            self.problem))
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                # a solver's internal failure ends the run with a status, never a traceback
                # (the failed segment's steps are lost)
                self.nfev += system.nfev
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise _Stop(f"solver: {method} failed ({msg}) at {self._where()}")
            # (the lean loop's segment reads s = ln(1 + t) off its own quadrature, not phi + delta)
            self.segments.append(getattr(rec, "segment", None) or _Segment(system, rec.ts, rec.interps, rec.points[0]))
            self.nfev += system.nfev
            self.njev += system.njev
            self.nlu += stepper.nlu
            n_new = len(rec.ts) - 1
            self.steps += n_new
            if self.nu and seg_index > 0:
                # the previous segment's last point is this segment's (snapped) first point
                for lst in (self.seg_of, self.nu, self.W, self.s, self.r):
                    lst.pop()
            for ti, point in zip(rec.ts, rec.points):
                self._save(seg_index, ti, *point)
            self._thin_memory()
            w, s, r, nu = self.W[-1].copy(), self.s[-1], self.r[-1], self.nu[-1]
            # restart with the last full step (the final one is cut short by the event);
            # never a step below rounding of nu, which would end the next segment at once
            if n_new >= 2:
                first_step = float(rec.ts[-2] - rec.ts[-3])
            first_step = max(first_step or FIRST_STEP, 1e-10 * (1.0 + abs(nu)))

            for name, te, ye in out.passed:          # non-terminal user events
                _, ss, rr = system.unpack(ye)
                self._log(name[5:], ss, rr)

            if out.kind == "failed":
                if self.collapse is not None and self.collapse.near(w):
                    raise _Stop(collapse_status(log10_t_from_s(s), tau_from_r(r), w, self.problem))
                if self._frozen(flow, w, s, r, nu, rel=FREEZE_RTOL_FAILED):
                    return
                raise _Stop(f"failed: {out.message} at {self._where()}")
            if out.kind == "max_steps":
                raise _Stop(f"max_steps: {self.max_steps} steps taken, stopped at {self._where()}")
            fired = out.fired
            self.stiff_seen = self.stiff_seen or "stiff" in fired
            for name in ("collapse", "overflow", "horizon"):
                if name in fired:
                    return self._final(name, w, s, r)
            if "frozen" in fired and self._frozen(flow, w, s, r, nu, rel=2 * FREEZE_RTOL * self.rtol):
                return
            user_terminal = [n for n in fired if n.startswith("user:")]
            if user_terminal:
                raise _Stop(f"event: {user_terminal[0][5:]} at {self._where()}")
            if self.model is None or not any(n in fired for n in ("cross", "g", "release")):
                continue      # (a "frozen" alarm that did not hold up on a closer look)
            # a linf-SAM switching event: new mode
            mode, w = self._switch(mode, w, s, r, fired)
            self.W[-1] = w.copy()
            if last_event_nu is not None and nu - last_event_nu <= 1e-12 * (1.0 + abs(nu)):
                chatter += 1
                if chatter >= CHATTER_LIMIT:
                    raise _Stop(f"chattering: {chatter} linf-SAM switching events at one instant, {self._where()}")
            else:
                chatter = 0
            last_event_nu = nu
            if self.steps >= self.max_steps:
                raise _Stop(f"max_steps: {self.max_steps} steps taken, stopped at {self._where()}")

    def _advance(self, method, system, nu, y0, atol, first, mode, rec):
        """One segment: a stepper of ``method`` from ``(nu, y0)`` run by the shared loop."""
        # --- lean compiled loop (issue 11.2, flows/compiled_loop.py): a smooth segment of an
        # "auto" run without user events is stepped in machine code when the shape's kernels
        # are compiled; it returns None (scipy below takes the segment) for anything unusual
        if mode is None and self.method_asked == "auto" and not self.user_events:
            from .compiled_loop import lean_advance
            lean = lean_advance(self, system, nu, y0, atol, first, rec)
            if lean is not None:
                return lean
        # --- end of the lean hook
        stepper = Float64Stepper(method, system.fun, nu, y0, rtol=self.rtol, atol=atol,
                                 jac=system.jac, first_step=first, t_bound=self.nu_end)
        rec.stepper = stepper
        if self._bar is not None:
            rec.tick = lambda y: self._tick(*system.unpack(y)[1:])
        out = advance(stepper, self._make_events(system, mode, method), max_steps=self.max_steps - self.steps,
                      on_step=rec)
        return out, stepper

    def _skip_start(self, w: np.ndarray, mode) -> tuple[np.ndarray, float, float, float]:
        """Step over the first instant of a run that starts with a large margin, analytically.

        With ``phi(0) = log dt/dtau`` large, ``t(tau) = e^{phi(0)} tau (1 + ...)`` races ahead
        while ``W`` has not moved: in the log-time state ``delta = ln(e^{-phi} + tau)`` is a
        logarithmic singularity spanning ``phi(0)/ln 10`` decades of ``tau`` that would cost
        thousands of geometrically growing steps.  Up to ``tau_1 = 1e-3 / phi'(0)`` (``phi``
        changes by 1e-3 there) ``W`` is integrated on its own and ``t`` taken from
        ``int e^{phi} dtau`` with ``phi`` linear, exact to ``O(1e-6)`` relative in ``t``.
        Returns ``(w, s, r, nu)`` to start from (``t = 0`` itself when the margin is small).
        """
        from scipy.integrate import solve_ivp as _solve

        flow = (lambda ww: self.model.flow(ww, mode)) if mode is not None else self.field.rescaled
        both = (lambda ww: self.model.flow_and_grad(ww, mode)) if mode is not None else getattr(
            self.field, "rescaled_with_grad", lambda ww: (*self.field.rescaled(ww), self.field.rescaled_log_speed_grad(ww)))
        dw, log_S, gl = both(w)
        phi0 = -float(log_S)
        rate = -float(np.dot(np.asarray(gl, float), np.asarray(dw, float)))
        speed = float(np.max(np.abs(dw))) / max(float(np.max(np.abs(w))), 1e-300) if np.size(dw) else 0.0
        tau1 = 1e-3 / max(rate, speed, 1.0)
        if phi0 + math.log(tau1) < 20.0:       # e^{-phi} not negligible against tau_1: no skip
            return w, 0.0, 0.0, 0.0
        # a horizon inside the skipped stretch ends the run there (a large start margin and a
        # short horizon: W barely moves); the main loop would start past it and never stop
        if self.time == "physical" and self.s_target < phi0 + math.log(tau1):
            tau1 = min(tau1, math.exp(_log_expm1(self.s_target) - phi0))
            self.reached = True
        elif self.time == "rescaled" and self.r_target <= math.log1p(tau1):
            tau1 = math.expm1(self.r_target)
            self.reached = True
        if tau1 > 0.0:
            sol = _solve(lambda _t, ww: np.asarray(flow(ww)[0], float), (0.0, tau1), w, method="DOP853",
                         rtol=self.rtol, atol=self.atol)
            w1 = sol.y[:, -1]
            self.nfev += int(sol.nfev)
        else:                                   # tau at the horizon underflows: W cannot move
            w1 = np.array(w, float)
        x = max(rate, 0.0) * tau1
        log_t1 = phi0 + (math.log(math.expm1(x) / x) if x > 0 else 0.0) + (math.log(tau1) if tau1 > 0 else -math.inf)
        s1 = float(np.logaddexp(0.0, log_t1))
        if self.reached and self.time == "physical":
            s1 = self.s_target
            log_t1 = _log_expm1(s1) if s1 > 0 else -math.inf
        r1 = math.log1p(tau1)
        nu1 = r1 + _arc(w, w1) / self.w_scale
        self.segments.append(_LinearSegment(w, w1, 0.0, nu1, 0.0, s1, 0.0, r1))
        self._save(0, 0.0, w, 0.0, 0.0)
        self._save(0, nu1, w1, s1, r1)
        self._log("start", 0.0, 0.0, note=f"first tau = {tau1:.3g} (t = 1e{log_t1 / math.log(10):.6g}) "
                                             "integrated with the clock taken analytically")
        return w1.copy(), s1, r1, nu1

    def _motion_left(self, flow, w: np.ndarray, r: float) -> tuple[float, float]:
        """``(log(|dW/dtau| (1 + tau) / scale), log S)``: how much ``W`` still moves.

        ``|dW/dtau| (1 + tau)`` is the change still to come on an approach to an
        equilibrium like ``1/tau`` (an overestimate for exponential approaches).
        """
        dw, log_S = flow(w)
        scale = max(float(np.abs(w).max()) if w.size else 0.0, self.w0_max, 1e-300)
        nf = float(np.abs(dw).max()) if np.size(dw) else 0.0
        return (math.log(nf / scale) + r if nf > 0.0 else -math.inf), float(log_S)

    def _frozen(self, flow, w, s, r, nu, *, rel: float) -> bool:
        """Finish the run with ``W`` frozen if it moves by less than ``rel`` of its scale.

        Near an (asymptotic) equilibrium ``W`` stops moving while ``t`` still has to grow
        (linearly in ``tau``) to the horizon.  Two reasons to stop integrating there: it is
        wasted work, and at a *semi-stable* equilibrium the integration error alone can carry
        ``W`` across (odd-depth linf-SAM with ``a_j -> rho`` from below,
        ``rho - a_j ~ 1/(x tau)``: once past ``rho`` the coordinate blows up).  Both clocks
        are then advanced exactly with ``dt/dtau = exp(phi(W))``; ``stats`` records where.
        """
        left, log_S = self._motion_left(flow, w, r)
        tau = tau_from_r(r)
        if left > math.log(rel):
            return False
        s1, r1 = frozen_clocks(self.time, s, r, -float(log_S), self.s_target, self.r_target)
        nu1 = nu + (r1 - r)          # W fixed: nu advances with ln(1 + tau) only
        self.segments.append(_FrozenSegment(w, nu, s, r, nu1, s1, r1))
        if self.seg_of:
            self.seg_of[-1] = len(self.segments) - 1
        else:
            self._save(len(self.segments) - 1, nu, w, s, r)
        self._save(len(self.segments) - 1, nu1, w, s1, r1)
        self._log("frozen", s, r, note=f"|dW/dtau| (1 + tau) below {rel:.3g} of the weight scale: "
                                       "W held fixed, clocks advanced exactly")
        self.frozen_from = (log10_t_from_s(s), tau)
        self.stationary = stationary_status(self.problem, w, where(s, r))
        self.reached = True
        return True

    def _final(self, name: str, w, s, r) -> None:
        if name == "horizon":
            self.reached = True
            return
        if name == "collapse":
            self._log("collapse", s, r)
            raise _Stop(collapse_status(log10_t_from_s(s), tau_from_r(r), w, self.problem))
        self._log("overflow", s, r)
        raise _Stop(f"overflow: |w| reached {self.w_max:.3g} at {self._where()}; float64 cannot carry "
                    "the weights further (use precision mp:DIGITS)")

    def _switch(self, mode, w, s, r, fired):
        """Settle the linf-SAM mode at an event point (snapping coordinates onto 0)."""
        model = self.model
        w = np.array(w, float)
        # the weight scale of the run, not of this instant (all may be near 0 by now)
        W_scale = max(float(np.max(np.abs(w))), float(np.max(np.abs(self.w0))))
        snap = SNAP_FACTOR * self.atol + max(SNAP_RTOL, 10.0 * self.rtol) * W_scale
        dw, _ = model.flow(w, mode)
        near = (np.abs(w) <= snap) & ~mode.pinned.ravel()
        if model.coord_surfaces:
            # only coordinates heading to 0 (or the one that got there) are put on the surface
            signed = mode.pw.ravel() * w
            hit = np.zeros(self.N, bool)
            free = ~mode.pinned.ravel()
            if free.any() and "cross" in fired:
                idx = np.flatnonzero(free)
                hit[idx[np.argmin(signed[idx])]] = True
            # (or already just past it: the event root sits on the first of them to arrive)
            cand = (near & ((w * dw <= 0.0) | (signed <= 0.0))) | hit
        else:
            cand = np.zeros(self.N, bool)
        cand |= mode.pinned.ravel()
        w[cand] = 0.0
        gcand = np.zeros(self.d, bool)
        if model.g_varies:
            g = model.g(w)
            gcand = mode.gslide.copy()
            if "g" in fired:
                cols = ~mode.gslide & ~model.g_trivial
                if cols.any():
                    vals = np.where(cols, mode.pg * g, np.inf)
                    gcand[int(np.argmin(vals))] = True
            scale_g = float(np.max(np.abs(g))) if g.size else 0.0
            gcand |= (np.abs(g) <= 1e-12 * max(scale_g, 1e-300)) & ~model.g_trivial
        base = mode.copy()
        if "release" in fired:
            base = model.release(w, base)
            cand &= base.pinned.ravel() | ~mode.pinned.ravel()
            gcand &= base.gslide | ~mode.gslide
        # coordinates on a side: their frozen sign follows the state
        free = ~cand.reshape(self.L, self.d)
        W = w.reshape(self.L, self.d)
        base.pw = np.where(free & (W != 0.0), np.where(W < 0.0, -1.0, 1.0), base.pw)
        base.pinned &= cand.reshape(self.L, self.d)
        if model.g_varies:
            g = model.g(w)
            keep = ~gcand & ~model.g_trivial & (g != 0.0)
            base.pg = np.where(keep, np.where(g < 0, -1.0, 1.0), base.pg)
            base.gslide &= gcand
        new, decisions = model.settle(w, base, cand, gcand, tol=model.settle_tol(w, base))
        self._log("+".join(sorted(set(fired) - {"max_steps"})) or "switch", s, r, decisions=decisions,
                  mode=new.describe())
        return new, w

    def _log(self, kind: str, s: float, r: float, **extra) -> None:
        self.n_events += 1
        if len(self.event_log) < 200:
            rec = {"kind": kind, "log10_t": log10_t_from_s(s), "tau": tau_from_r(r)}
            rec.update(extra)
            self.event_log.append(rec)

    def _thin_memory(self) -> None:
        """Halve the saved points (keeping segment ends) once there are too many."""
        if len(self.nu) <= 2 * MAX_SAVED:
            return
        seg = np.array(self.seg_of)
        keep = np.zeros(len(seg), bool)
        keep[::2] = True
        keep[-1] = True
        keep[np.r_[np.diff(seg) != 0, True]] = True
        keep[np.r_[True, np.diff(seg) != 0]] = True
        idx = np.flatnonzero(keep)
        for name in ("seg_of", "nu", "W", "s", "r"):
            lst = getattr(self, name)
            setattr(self, name, [lst[i] for i in idx])

    # --- the result ---------------------------------------------------------------------------
    def _trajectory(self, wall: float) -> Trajectory:
        if not self.nu:
            self._save(-1, 0.0, self.w0, 0.0, 0.0)
        nu = np.array(self.nu)
        s = np.array(self.s)
        r = np.array(self.r)
        weights = np.array(self.W).reshape(-1, self.L, self.d)
        if self.reached:
            # the event root is exact to rounding; report the horizon itself
            if self.time == "physical":
                s[-1] = self.s_target
            else:
                r[-1] = self.r_target
        log10_t = log10_t_from_s(np.atleast_1d(s)).astype(float)
        tau = np.atleast_1d(tau_from_r(r)).astype(float)
        if self.reached:
            if self.time == "physical":
                log10_t[-1] = self.horizon.log10
            else:
                tau[-1] = self.horizon.as_float()
        log10_loss = log10_loss_rows(self.problem, weights)
        seg_of = np.array(self.seg_of)

        def dense(i, x):
            return self.segments[seg_of[i]].state(x)[0].reshape(self.L, self.d)

        def clock(i, x):
            _, ss, rr = self.segments[seg_of[i]].state(x)
            return float(tau_from_r(rr)), float(log10_t_from_s(ss))

        # dense output exists for every interval between saved points (the last point's
        # forward segment is never used), unless a run ended inside a failed step
        usable = bool(self.segments) and all(0 <= k < len(self.segments) for k in seg_of[:-1])
        dominant = dominant_switches(nu, weights, dense if usable else None, clock if usable else None,
                                     tau=None if usable else tau, log10_t=None if usable else log10_t)
        r_fin = float(r[-1])
        log10_tau_final = (r_fin / LN10 + math.log10(-math.expm1(-r_fin))) if r_fin > 50 else (
            math.log10(math.expm1(r_fin)) if r_fin > 0 else -math.inf)
        stats = {"steps": self.steps, "nfev": self.nfev, "njev": self.njev, "nlu": self.nlu,
                 "wall_s": round(wall, 6), "events": self.n_events, "event_log": self.event_log,
                 "segments": len(self.segments), "saved_points": int(nu.size),
                 "log10_tau_final": log10_tau_final}
        if self.frozen_from is not None:
            stats["frozen_from_log10_t"], stats["frozen_from_tau"] = self.frozen_from
        if self.model is not None and self.event_log:
            pinned = [i for i in range(self.N) if weights[-1].ravel()[i] == 0.0]
            stats["zero_final"] = pinned
        settings = {"time": self.time, "precision": "float64",
                    "method": self.method if self.method_asked != "auto" else f"auto:{self.method}",
                    "rtol": self.rtol, "atol": self.atol, "horizon": str(self.horizon),
                    "clock": "arc length of W + ln(1+tau); state (W, ln(1+t) - phi, ln(1+tau))", "max_steps": self.max_steps}
        return Trajectory(problem=self.problem, tau=tau, log10_t=log10_t, weights=weights,
                          log10_loss=log10_loss, status=self.status, dominant=tuple(dominant),
                          settings=settings, stats=stats)
