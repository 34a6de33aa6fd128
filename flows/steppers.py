"""One-step integrators behind one small protocol, for the run driver (:mod:`.driver`).

The protocol is scipy's ``OdeSolver`` reduced to what a run needs:

* ``step()`` advances one *accepted* step (or sets ``status = "failed"`` and ``message``);
* ``t``, ``y`` (the state after it), ``t_old`` (before it);
* ``dense_output()`` -- a callable ``y(t)`` for ``t`` in ``[t_old, t]``;
* ``locate(fn, a, b, fa, fb)`` -- a root of ``fn(t, y(t))`` in ``[a, b]``, in this
  precision (float64: Brent on the interpolant; mp: safeguarded Newton on the step's own
  states);
* ``status`` (``"running"``/``"failed"``), ``message``, ``nfev``, ``njev``, ``nlu``.

Two families implement it:

* :class:`Float64Stepper` -- scipy's ``Radau``/``BDF``/``LSODA``/``RK45``/``DOP853`` classes
  used directly (no ``solve_ivp`` re-entry per segment: its argument checks, event
  bookkeeping and ``OdeSolution`` assembly were a third of a short run's time);
* :class:`MpStepper` -- the GBS/RKF78 integrators of :mod:`.mp_integrators` in mpmath.
  Its "dense output" re-takes the last step with a shorter length from the same start
  (``redo``), or takes a short controlled step from a state already known on it (the step's
  ends, earlier Newton iterates), so a located event lands with the integrator's full
  accuracy.

>>> import numpy as np
>>> st = Float64Stepper("DOP853", lambda t, y: -y, 0.0, np.array([1.0]), rtol=1e-10, atol=1e-12)
>>> while st.t < 1.0:
...     st.step()
>>> bool(abs(st.dense_output()(1.0)[0] - np.exp(-1.0)) < 1e-9)
True
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy import integrate as _ivp
from scipy.optimize import brentq

FLOAT64_METHODS = ("Radau", "BDF", "LSODA", "DOP853", "RK45")
IMPLICIT = ("Radau", "BDF", "LSODA")
_EPS = float(np.finfo(float).eps)
# MpStepper.locate: safeguarded Newton on re-taken steps (issue 11.4); False = Illinois as before
# (read at construction; benchmarks/bench_mp.py times both)
NEWTON_LOCATE = True
# MpStepper.dense_output: a point within SHORT_HOP of the step from a state known with its
# derivative is reached by a short controlled step from it, not by re-taking the step
SHORT_HOPS = True
SHORT_HOP = 0.1
MEMO_DENSE = True     # memoise dense-output states by t (False: as before 11.4, for the benchmark)


class Float64Stepper:
    """A scipy ``OdeSolver`` of the named method, stepping ``dy/dt = fun(t, y)`` from ``t0``.

    ``jac`` is passed to the implicit methods only; ``t_bound`` is the far end (runs end on
    events, long before it).  Everything else is the solver's own state.
    """

    def __init__(self, method: str, fun: Callable, t0: float, y0: np.ndarray, *, rtol: float, atol,
                 jac: Callable | None = None, first_step: float | None = None,
                 t_bound: float = 1e300) -> None:
        if method not in FLOAT64_METHODS:
            raise ValueError(f"unknown float64 method {method!r}; expected one of {', '.join(FLOAT64_METHODS)}")
        options: dict[str, Any] = {"rtol": rtol, "atol": atol}
        if first_step is not None:
            options["first_step"] = first_step
        if jac is not None and method in IMPLICIT:
            options["jac"] = jac
        self.method = method
        self.solver = getattr(_ivp, method)(fun, t0, np.asarray(y0, float), t_bound, **options)
        self.message = ""

    # the protocol's attributes are the solver's own
    t = property(lambda self: self.solver.t)
    y = property(lambda self: self.solver.y)
    t_old = property(lambda self: self.solver.t_old)
    nfev = property(lambda self: int(self.solver.nfev))
    njev = property(lambda self: int(getattr(self.solver, "njev", 0) or 0))
    nlu = property(lambda self: int(getattr(self.solver, "nlu", 0) or 0))

    @property
    def status(self) -> str:
        return "failed" if self.solver.status == "failed" else "running"

    def step(self) -> None:
        if self.solver.status == "finished":
            self.solver.status = "failed"
            self.message = f"the clock reached its bound {self.solver.t_bound:.6g}"
            return
        msg = self.solver.step()
        if self.solver.status == "failed":
            self.message = msg or "step failed"

    def dense_output(self) -> Callable:
        return self.solver.dense_output()

    @staticmethod
    def locate(fn: Callable, a: float, b: float, fa: float, fb: float, dense: Callable) -> float:
        """A root of ``fn(t, dense(t))`` bracketed by ``[a, b]`` (values ``fa``, ``fb`` there).

        The bracket's ends keep the values measured at the step ends: an interpolant need
        not reproduce the step's end state to the last bit (LSODA's does not), and on a
        switching surface the two could differ in sign.
        """
        if fa == 0.0:
            return a
        if fb == 0.0:
            return b

        def f(t):
            if t == a:
                return fa
            if t == b:
                return fb
            return float(fn(t, dense(t)))
        return brentq(f, a, b, xtol=4 * _EPS, rtol=4 * _EPS)



def _illinois_shrink(a, fa, b, fb, x, fx, side: int):
    """One Illinois update of the bracket ``[a, b]`` by the iterate ``(x, fx)``.

    The end kept twice in a row has its value halved, so regula falsi cannot stall on one side.
    """
    if (fx > 0) == (fa > 0):
        return x, fx, b, (fb / 2 if side == -1 else fb), -1
    return a, (fa / 2 if side == 1 else fa), x, fx, 1

class MpStepper:
    """A GBS/RKF78 integrator of :mod:`.mp_integrators` stepping ``dy/dt = fun(y)`` in mpmath.

    Runs inside the caller's ``mpmath.workdps``.  ``y`` is a list of ``mpf``; ``h`` the
    first step; ``min_step(t)`` the smallest step that is not rounding noise at ``t``
    (below it the stepper fails with ``"step size underflow"``).
    """

    def __init__(self, method: str, fun: Callable, t0, y0: list, h, *, rtol, atol, digits: int,
                 f0: list | None = None) -> None:
        import mpmath
        from .mp_integrators import make_stepper

        self.mpmath = mpmath
        self.method = method
        self.integrator = make_stepper(method, rtol=rtol, atol=atol, digits=digits)
        self.fun = fun
        self.digits = digits
        self.rtol = rtol
        self.t, self.y = t0, list(y0)
        self.f = list(f0) if f0 is not None else fun(self.y)
        self.t_old, self.y_old, self.f_old = None, None, None
        self.h = h
        self.h_last = None
        self.status, self.message = "running", ""
        self.nfev = 1 if f0 is None else 0
        self.njev = self.nlu = 0
        self.rejected = 0
        self.retakes = 0        # steps re-taken for event location (each costs a whole step)
        self.newton = NEWTON_LOCATE   # safeguarded Newton (False: Illinois, as before 11.4)
        self.short_hops = SHORT_HOPS   # dense output by short steps from known states (see dense_output)
        self.hops = 0

    @property
    def atol(self) -> list:
        """The integrator's absolute tolerances (per component; the run may raise them)."""
        return self.integrator.atol

    def step(self) -> None:
        mp = self.mpmath
        while True:
            h = self.h
            if h <= abs(self.t) * mp.mpf(10) ** (3 - self.digits) or h < mp.mpf(10) ** (-self.digits):
                self.status, self.message = "failed", "step size underflow"
                return
            try:
                res = self.integrator.attempt(self.fun, self.y, self.f, h)
            except (ZeroDivisionError, ValueError, OverflowError):
                res = None
            if res is None or not res.accepted:
                self.nfev += res.nfev if res is not None else 0
                self.rejected += 1
                self.h = res.h_next if res is not None else h / 4
                continue
            self.nfev += res.nfev
            self.t_old, self.y_old, self.f_old = self.t, self.y, self.f
            self.t, self.y = self.t + h, res.y
            self.f = self.fun(self.y)
            self.nfev += 1
            self.h_last, self.h = h, res.h_next
            return

    def restart(self, t, y: list, f: list | None = None, h=None) -> None:
        """Continue from ``(t, y)`` (a located event, possibly changed by the run)."""
        self.t, self.y = t, list(y)
        self.f = list(f) if f is not None else self.fun(self.y)
        if h is not None:
            self.h = h

    def dense_output(self) -> Callable:
        """``y(t)`` on the last step, to the integrator's accuracy.

        Within ``SHORT_HOP`` of the step from a state known with its derivative (the step's
        ends, and each Newton iterate of :meth:`locate`, registered by ``at.anchor``): one
        short controlled step from it (``integrator.short_step``: tens of evaluations, the
        low columns converge on a short hop).  Otherwise, or if that step's estimate fails:
        the step re-taken from ``t_old`` with length ``t - t_old`` (its full column:
        hundreds).  States are memoised by ``t`` (the driver asks again for the located
        root's state).  The step's end data ride along as attributes (``t0 y0 f0 t1 y1 f1``)
        for :meth:`locate`'s first guess.
        """
        t0, y0, f0 = self.t_old, self.y_old, self.f_old
        t1, y1 = self.t, self.y
        memo: dict = {}
        # states known with their derivative: the step's ends and every Newton iterate of
        # locate (which computes f there anyway); a point within SHORT_HOP of the step from
        # one is reached by a short controlled step from it (integrator.short_step)
        anchors = [(t0, y0, f0), (t1, y1, self.f)]
        span = abs(t1 - t0)
        short = getattr(self.integrator, "short_step", None) if self.short_hops else None

        def at(t):
            if t == t1:
                return y1
            if t == t0:
                return y0
            y = memo.get(t) if MEMO_DENSE else None
            if y is not None:
                return y
            if short is not None:
                ta, ya, fa = min(anchors, key=lambda an: abs(t - an[0]))
                if abs(t - ta) <= SHORT_HOP * span:
                    y, nf = short(self.fun, ya, fa, t - ta)
                    self.nfev += nf
                    if y is not None:
                        self.hops += 1
                        memo[t] = y
                        return y
            y, nf = self.integrator.redo(self.fun, y0, f0, t - t0)
            self.nfev += nf
            self.retakes += 1
            memo[t] = y
            return y

        def anchor(t, y, f):
            anchors.append((t, y, f))
        at.anchor = anchor
        at.t0, at.y0, at.f0, at.t1, at.y1, at.f1 = t0, y0, f0, t1, y1, self.f
        return at

    def locate(self, fn: Callable, a, b, fa, fb, dense: Callable, ftol=None):
        """A root of ``fn(t, dense(t))`` in ``[a, b]``: safeguarded Newton on re-taken steps.

        A state inside the step costs a re-take of the whole step (hundreds of right-hand
        sides for GBS at 50 digits) or, near a known state, a short step (tens), so the
        iteration is chosen to need few (issue 11.4): the first guess is the root on the
        step's cubic Hermite interpolant (no evaluation; ~1e-5 of the step off), then Newton,
        whose slope ``d fn/dt`` costs one right-hand side at the new state (a directional
        difference of ``fn`` along it), which also makes that state an anchor for the next
        iterate's short step; converging quadratically (1e-5, 1e-10, 1e-20, 1e-40 of the
        step) it lands within ``ftol`` after one re-take and 3-4 short steps, where Illinois
        regula falsi re-took the step ~10 times (measured on linf-SAM L = 2, d = 4).  The bracket
        ``[a, b]`` is kept: a Newton iterate outside it is replaced by a regula falsi one.
        Stops when ``|fn| <= ftol``; without ``ftol`` (or if the bracket shrinks to ``rtol``
        of the step first) it is Illinois as before and lands on the far end ``b`` (past the
        root: a crossing has happened there).  ``newton=False`` on the instance restores the
        plain Illinois iteration (benchmarks/bench_mp.py times both).
        """
        if fa == 0:
            return a
        if ftol is None or not self.newton:
            return self._illinois(fn, a, b, fa, fb, dense, ftol)
        mp = self.mpmath
        span = b - a
        x = self._hermite_guess(fn, a, b, fa, fb, dense)
        side = 0
        for _ in range(80):
            if x is None or not (a < x < b):
                x = (a * fb - b * fa) / (fb - fa) if (mp.isfinite(fa) and mp.isfinite(fb) and fa != fb) else (a + b) / 2
                if not (a < x < b):
                    x = (a + b) / 2
            y = dense(x)
            fx = fn(x, y)
            if fx == 0 or abs(fx) <= ftol:
                return x
            a, fa, b, fb, side = _illinois_shrink(a, fa, b, fb, x, fx, side)
            if b - a <= self.rtol * span:
                return b
            x = self._newton(fn, x, y, fx, span, dense)
        return b

    def _newton(self, fn: Callable, x, y: list, fx, span, dense=None):
        """``x - fx / g'(x)`` with ``g(t) = fn(t, y(t))``; ``g'`` by a difference along the
        flow, step ``10^-(digits/2)`` of the span: exact for the usual linear event functions,
        and relative error ~1e-25 otherwise -- ample for Newton.  ``None`` when the slope is
        unavailable (0, not finite, the field refusing the state): the caller then takes a
        regula falsi step."""
        mp = self.mpmath
        try:
            fy = self.fun(y)
            self.nfev += 1
            if hasattr(dense, "anchor"):
                dense.anchor(x, y, fy)
            dlt = span * mp.mpf(10) ** (-(self.digits // 2))
            slope = (fn(x + dlt, [u + dlt * v for u, v in zip(y, fy)]) - fx) / dlt
        except Exception:   # noqa: BLE001 - the slope only accelerates; any failure -> bracket step
            return None
        if not slope or not mp.isfinite(slope):
            return None
        return x - fx / slope

    def _hermite_guess(self, fn: Callable, a, b, fa, fb, dense: Callable):
        """The root of ``fn`` on the cubic Hermite interpolant of the step (regula falsi on
        it, to ~1e-12 of the span: its own accuracy is far coarser), or ``None``."""
        if getattr(dense, "t0", None) != a or getattr(dense, "t1", None) != b or dense.f0 is None:
            return None
        mp = self.mpmath
        h = b - a
        y0, f0, y1, f1 = dense.y0, dense.f0, dense.y1, dense.f1

        def g(x):
            th = (x - a) / h
            t2 = th * th
            t3 = t2 * th
            c0, c1, c2, c3 = 2 * t3 - 3 * t2 + 1, (t3 - 2 * t2 + th) * h, 3 * t2 - 2 * t3, (t3 - t2) * h
            return fn(x, [c0 * p + c1 * q + c2 * r + c3 * s for p, q, r, s in zip(y0, f0, y1, f1)])
        try:
            lo, hi, glo, ghi = a, b, fa, fb
            side = 0
            x = None
            for _ in range(60):
                x = (lo * ghi - hi * glo) / (ghi - glo)
                if not (lo < x < hi):
                    return None
                gx = g(x)
                if gx == 0 or hi - lo <= mp.mpf("1e-12") * h:
                    return x
                lo, glo, hi, ghi, side = _illinois_shrink(lo, glo, hi, ghi, x, gx, side)
            return x
        except Exception:   # noqa: BLE001 - a guess only; the caller falls back to the bracket
            return None

    def _illinois(self, fn: Callable, a, b, fa, fb, dense: Callable, ftol=None):
        """Illinois regula falsi on re-taken steps (the iteration before issue 11.4)."""
        mp = self.mpmath
        span = b - a
        side = 0
        x = b
        for _ in range(80):
            if not (mp.isfinite(fa) and mp.isfinite(fb)) or fa == fb:
                x = (a + b) / 2
            else:
                x = (a * fb - b * fa) / (fb - fa)
            if not (a < x < b):
                x = (a + b) / 2
            fx = fn(x, dense(x))
            if fx == 0 or (ftol is not None and abs(fx) <= ftol):
                return x
            a, fa, b, fb, side = _illinois_shrink(a, fa, b, fb, x, fx, side)
            if b - a <= self.rtol * span:
                return b
        return b
