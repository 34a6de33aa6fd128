"""THEORY.md's reduction for one example at depth 2 with a balanced init ``u = v = a``,
integrated on its own (SciPy, in rescaled time ``tau``) as an *independent* prediction for
the full flows of :mod:`sambias.flows`:

* l2-SAM: ``da_j/dtau = x_j a_j (1 - rho x_j / N)``, ``N = sqrt(2) |x * a|_2``;
* USAM (exp or logistic loss): ``da_j/dtau = x_j a_j (1 - rho |l'(z)| x_j)``, ``z = sum_j x_j a_j^2``;
* GD: ``da_j/dtau = x_j a_j``.

Under ``a -> a / rho`` the l2-SAM system loses ``rho`` (``N`` is homogeneous), so its
collapse boundary is a ray ``alpha = c(x) rho``: :func:`collapse_ratio` finds ``c(x)`` by
bisection.  :func:`reduced_leaders` gives the whole sequence of leaders
``argmax_j a_j`` (``beta_j = a_j^2``).

>>> round(collapse_ratio((3.0, 2.0, 1.0, 0.5)), 3)          # THEORY.md: collapse below ~0.39
0.397
>>> reduced_leaders((3.0, 2.0, 1.0, 0.5), 0.2, 0.5)         # THEORY.md: 2 -> 3 -> 2 -> 1 -> 0
(2, 3, 2, 1, 0)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.integrate import solve_ivp

SQRT2 = math.sqrt(2.0)


def _rhs(x: np.ndarray, rho: float, algorithm: str, loss: str) -> Callable:
    if algorithm == "l2-sam":
        return lambda _t, a: x * a * (1.0 - rho * x / (SQRT2 * np.linalg.norm(x * a)))
    if algorithm == "usam":
        def rhs(_t, a):
            z = float(np.sum(x * a * a))
            g = math.exp(-z) if loss == "exp" else 1.0 / (1.0 + math.exp(min(z, 700.0)))
            return x * a * (1.0 - rho * g * x)
        return rhs
    if algorithm == "gd":
        return lambda _t, a: x * a
    raise ValueError(f"no reduction for {algorithm!r}")


def _positive(x) -> np.ndarray:
    x = np.abs(np.asarray(x, float))
    if x.ndim != 1 or x.size < 1 or not np.all(x > 0):
        raise ValueError("the reduction needs one example with every x_j != 0")
    return x


def reduced_collapses(x, ratio: float, *, tau_max: float = 1e4) -> bool:
    """Whether the l2-SAM reduction from ``a = ratio * rho`` collapses (``N`` falls below
    1e-6 of its start) rather than escapes (``N >= 2 rho max x``: every growth rate is then
    positive and ``N`` only grows).  ``ValueError`` when neither happens by ``tau_max``."""
    x = _positive(x)
    a0 = np.full(x.size, float(ratio))         # rho = 1 (the reduction is homogeneous)
    n0 = SQRT2 * float(np.linalg.norm(x * a0))

    def low(_t, a):
        return SQRT2 * float(np.linalg.norm(x * a)) - 1e-6 * n0
    low.terminal = True

    def high(_t, a):
        return SQRT2 * float(np.linalg.norm(x * a)) - 2.0 * float(x.max())
    high.terminal = True
    with np.errstate(all="ignore"):
        sol = solve_ivp(_rhs(x, 1.0, "l2-sam", "exp"), (0.0, tau_max), a0, method="LSODA", rtol=1e-10, atol=1e-14,
                        events=[low, high])
    if sol.t_events[0].size:
        return True
    if sol.t_events[1].size:
        return False
    raise ValueError(f"the reduction neither collapsed nor escaped by tau = {tau_max:g} (ratio {ratio:g})")


def collapse_ratio(x, *, rtol: float = 1e-4) -> float:
    """The collapse boundary of l2-SAM, L = 2, one example, uniform init ``alpha``:
    runs collapse iff ``alpha / rho < c(x)`` -- bisection on the reduction between the
    trivial bound ``min|x| / (sqrt 2 |x|)`` (every coordinate shrinks at t = 0) and
    ``2 max|x| / (sqrt 2 |x|)`` (none does and N grows)."""
    x = _positive(x)
    lo = float(x.min()) / (SQRT2 * float(np.linalg.norm(x)))
    hi = 2.0 * float(x.max()) / (SQRT2 * float(np.linalg.norm(x)))
    if not reduced_collapses(x, lo) or reduced_collapses(x, hi):
        raise ValueError("the bisection bracket does not bracket the boundary")
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if reduced_collapses(x, mid):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def trivial_collapse_ratio(x) -> float:
    """The sufficient condition ``N(0) < rho min|x|``: ``alpha / rho < min|x| / (sqrt 2 |x|)``."""
    x = _positive(x)
    return float(x.min()) / (SQRT2 * float(np.linalg.norm(x)))


def reduced_leaders(x, alpha: float, rho: float, *, algorithm: str = "l2-sam", loss: str = "exp",
                    tau_max: float = 1e4, points: int = 20001) -> tuple[int, ...]:
    """The leaders ``argmax_j a_j(tau)`` of the reduction from ``a = alpha``, in order
    (the first from the first moment the argmax is unique), until the major leads for
    good: it leads and every growth rate is increasing in ``x_j`` (l2-SAM: ``N >= 2 rho
    max x``; USAM: ``2 rho |l'(z)| max x <= 1``).  ``()`` for a run that collapses.
    Coordinates are those of ``x`` (any order; ``|x_j|`` distinct)."""
    x = _positive(x)
    major = int(np.argmax(x))
    rhs = _rhs(x, float(rho), algorithm, loss)

    def settled(a) -> bool:
        top = np.sort(a)[-2:]
        if int(np.argmax(a)) != major or (a.size > 1 and top[1] - top[0] <= 1e-12 * top[1]):
            return False
        if algorithm == "l2-sam":
            return SQRT2 * float(np.linalg.norm(x * a)) >= 2.0 * rho * float(x.max())
        if algorithm == "usam":
            z = float(np.sum(x * a * a))
            g = math.exp(-z) if loss == "exp" else 1.0 / (1.0 + math.exp(min(z, 700.0)))
            return 2.0 * rho * g * float(x.max()) <= 1.0
        return True

    # integrated in s = ln a: a minor-first run takes the major down to a ~ 1e-35 before it
    # takes over, far below any absolute tolerance on a (on THEORY.md's x, alpha 0.2, LSODA
    # with atol 1e-15 had the major's a 8 decades off at tau = 10 and its take-over at
    # tau = 49 instead of the full flow's 67)
    def log_rhs(t, s):
        a = np.exp(s)
        return rhs(t, a) / a

    def dead(_t, s):
        return float(np.max(s)) - math.log(1e-8 * alpha)
    dead.terminal = True
    a = np.full(x.size, float(alpha))
    # every a_j equals alpha at 0; who leads first is who grows fastest
    out: list[int] = [int(np.argmax(rhs(0.0, a)))]
    tau, step = 0.0, 0.05
    with np.errstate(all="ignore"):
        while not settled(a):
            if tau >= tau_max:
                raise ValueError(f"the reduction has not settled by tau = {tau_max:g}")
            sol = solve_ivp(log_rhs, (tau, tau + step), np.log(a), method="LSODA", rtol=1e-11, atol=1e-11,
                            events=[dead], dense_output=True)
            if sol.t_events[0].size or sol.status < 0:
                return ()
            A = np.exp(sol.sol(np.linspace(tau, sol.t[-1], points // 100 + 2)[1:]))
            for col in A.T:
                top = np.sort(col)[-2:]
                if col.size > 1 and top[1] - top[0] <= 1e-12 * top[1]:
                    continue
                i = int(np.argmax(col))
                if i != out[-1]:
                    out.append(i)
            tau, a = float(sol.t[-1]), np.exp(sol.y[:, -1])
            step = min(2.0 * step, 1.0)
    return tuple(out)
