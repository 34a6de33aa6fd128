"""One-step integrators behind one small protocol, for the run driver (:mod:`.driver`).

The protocol is scipy's ``OdeSolver`` reduced to what a run needs:

* ``step()`` advances one *accepted* step (or sets ``status = "failed"`` and ``message``);
* ``t``, ``y`` (the state after it), ``t_old`` (before it);
* ``dense_output()`` -- a callable ``y(t)`` for ``t`` in ``[t_old, t]``;
* ``locate(fn, a, b, fa, fb)`` -- a root of ``fn(t, y(t))`` in ``[a, b]``, in this
  precision (float64: Brent on the interpolant; mp: regula falsi on re-taken steps);
* ``status`` (``"running"``/``"failed"``), ``message``, ``nfev``, ``njev``, ``nlu``.

Two families implement it:

* :class:`Float64Stepper` -- scipy's ``Radau``/``BDF``/``LSODA``/``RK45``/``DOP853`` classes
  used directly (no ``solve_ivp`` re-entry per segment: its argument checks, event
  bookkeeping and ``OdeSolution`` assembly were a third of a short run's time);
* :class:`MpStepper` -- the GBS/RKF78 integrators of :mod:`.mp_integrators` in mpmath.
  Its "dense output" re-takes the last step with a shorter length from the same start
  (``redo``), so a located event lands with the integrator's full accuracy.

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
        """``y(t)`` on the last step, by re-taking it from ``t_old`` with length ``t - t_old``."""
        t0, y0, f0 = self.t_old, self.y_old, self.f_old
        t1, y1 = self.t, self.y

        def at(t):
            if t == t1:
                return y1
            if t == t0:
                return y0
            y, nf = self.integrator.redo(self.fun, y0, f0, t - t0)
            self.nfev += nf
            return y
        return at

    def locate(self, fn: Callable, a, b, fa, fb, dense: Callable, ftol=None):
        """A root of ``fn(t, dense(t))`` in ``[a, b]`` by Illinois regula falsi.

        Stops when ``|fn| <= ftol`` or when the bracket is down to ``rtol`` of the step;
        then it lands on the far end ``b`` (past the root: a crossing has happened there).
        """
        mp = self.mpmath
        if fa == 0:
            return a
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
            if (fx > 0) == (fa > 0):
                a, fa = x, fx
                if side == -1:
                    fb /= 2
                side = -1
            else:
                b, fb = x, fx
                if side == 1:
                    fa /= 2
                side = 1
            if b - a <= self.rtol * span:
                return b
        return b

