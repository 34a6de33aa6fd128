"""The run loop, written once over the stepper protocol of :mod:`.steppers`.

:func:`advance` steps a stepper until a terminal event, a failure or the step budget, and
locates every event on the step it happens in.  Both precisions run through it: the
float64 driver (:mod:`.integrate`) with a scipy solver per segment, the mpmath driver
(:mod:`.mp`) with GBS/RKF78; what a run does *at* an event (Filippov switching, collapse,
the horizon) is the run's business, not the loop's.

Event semantics are ``solve_ivp``'s: an event ``fn(t, y)`` with ``direction = -1`` fires
when it goes from ``>= 0`` to ``<= 0`` over a step (``+1`` the other way, ``0`` either);
its root is located inside the step (:meth:`locate` of the stepper); the run stops at the
first root of a terminal event, and the events whose roots coincide with it fire with it.
An event's values at the step ends are computed once per step and reused as the root
bracket's end values.

>>> import numpy as np
>>> from sambias.flows.steppers import Float64Stepper
>>> st = Float64Stepper("RK45", lambda t, y: np.array([1.0]), 0.0, np.array([0.0]), rtol=1e-8, atol=1e-10)
>>> out = advance(st, [Event("half", lambda t, y: y[0] - 0.5, direction=1)], max_steps=100)
>>> out.kind, out.fired, round(float(out.t), 12)
('event', ['half'], 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Event:
    """A zero-crossing watched by :func:`advance`.

    ``ftol``: a located root within ``|fn| <= ftol`` is good enough (mp), and other events
    within their ``ftol`` of 0 at a root fire with it.
    """

    name: str
    fn: Callable[[Any, Any], Any]
    direction: int = 0
    terminal: bool = True
    ftol: Any = None


@dataclass
class Outcome:
    """How :func:`advance` stopped: ``kind`` is ``"event"``, ``"failed"`` or ``"max_steps"``."""

    kind: str
    t: Any
    y: Any
    fired: list[str] = field(default_factory=list)
    steps: int = 0
    message: str = ""
    passed: list[tuple[str, Any, Any]] = field(default_factory=list)   # non-terminal roots (name, t, y)


def _crossed(g0, g1, direction: int) -> bool:
    up = g0 <= 0 and g1 >= 0
    down = g0 >= 0 and g1 <= 0
    return (up and direction > 0) or (down and direction < 0) or ((up or down) and direction == 0)


def advance(stepper, events: list[Event], *, max_steps: int,
            on_step: Callable[[Any, Any, Callable | None], None] | None = None) -> Outcome:
    """Step ``stepper`` until a terminal event fires, it fails, or ``max_steps`` steps.

    ``on_step(t, y, dense)`` sees every accepted step's end (the last one cut at the event,
    ``dense`` its interpolant).  Returns an :class:`Outcome` (state at the stop).
    """
    t, y = stepper.t, stepper.y
    g = [ev.fn(t, y) for ev in events]
    steps = 0
    passed: list[tuple[str, Any, Any]] = []
    while True:
        if steps >= max_steps:
            return Outcome("max_steps", t, y, steps=steps, passed=passed)
        stepper.step()
        if stepper.status == "failed":
            return Outcome("failed", t, y, steps=steps, message=stepper.message, passed=passed)
        steps += 1
        t_old, t, y = t, stepper.t, stepper.y
        g_new = [ev.fn(t, y) for ev in events]
        active = [k for k, ev in enumerate(events) if _crossed(g[k], g_new[k], ev.direction)]
        if not active:
            g = g_new
            if on_step is not None:
                on_step(t, y, None)
            continue
        dense = stepper.dense_output()
        roots = []
        for k in active:
            ev = events[k]
            kw = {} if ev.ftol is None else {"ftol": ev.ftol}
            roots.append((stepper.locate(ev.fn, t_old, t, g[k], g_new[k], dense, **kw), k))
        roots.sort(key=lambda rk: rk[0])
        stop = next(((tr, k) for tr, k in roots if events[k].terminal), None)
        for tr, k in roots:
            if not events[k].terminal and (stop is None or tr <= stop[0]):
                passed.append((events[k].name, tr, dense(tr)))
        if stop is None:
            g = g_new
            if on_step is not None:
                on_step(t, y, dense)
            continue
        t_stop, k_stop = stop
        y_stop = dense(t_stop)
        fired = [events[k].name for tr, k in roots if events[k].terminal and tr == t_stop]
        for k, ev in enumerate(events):
            if (ev.terminal and ev.ftol is not None and ev.name not in fired
                    and k in active and abs(ev.fn(t_stop, y_stop)) <= ev.ftol):
                fired.append(ev.name)
        if on_step is not None:
            on_step(t_stop, y_stop, dense)
        return Outcome("event", t_stop, y_stop, fired=fired, steps=steps, passed=passed)


class Progress:
    """A tqdm bar (per mille of the way to the horizon's clock value), for either precision.

    ``update(done, log10_t)``: ``done`` is the current value of the clock the horizon is in
    (``ln(1 + t)`` or ``ln(1 + tau)``), compared with ``target``.
    """

    def __init__(self, target: float) -> None:
        from tqdm import tqdm

        self.target = float(target)
        self.bar = tqdm(total=1000, desc="simulate", unit="‰", leave=False)

    def update(self, done: float, log10_t: float) -> None:
        self.bar.n = int(1000 * min(max(float(done) / self.target, 0.0), 1.0)) if self.target > 0 else 1000
        self.bar.set_postfix_str(f"log10 t={float(log10_t):.4g}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
