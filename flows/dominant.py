"""Changes of the leading coordinate ``argmax_j |beta_j|``, located on the dense output.

CONTRACT.md's ``dominant`` list: each change of the argmax in time order, with the index
that takes over and when.  Saved points only bracket a change; its time is the root of
``|beta_new| - |beta_old|`` found with ``brentq`` on the integrator's dense output between
the two saved points, and both clocks (``tau``, ``log10 t``) are read off at that root.

The first entry is the first leader, dated at the first saved instant *after* ``t = 0``
at which the argmax is unique (the first solver step for a leader that pulls ahead at
``t = 0+`` or leads from the start; the contract's consumers want a finite ``log10 t``,
and ``t = 0`` has none).  Later entries are dated at the roots.

>>> import numpy as np
>>> nu = np.array([0.0, 1.0, 2.0])
>>> W = np.array([[[1.0, 1.0]], [[2.0, 1.5]], [[2.0, 3.0]]])
>>> dense = lambda i, x: W[i] + (x - nu[i]) * (W[i + 1] - W[i])
>>> clock = lambda i, x: (x, x)            # (tau, log10 t) as functions of nu, for the example
>>> [(s.index, round(s.log10_t, 6)) for s in dominant_switches(nu, W, dense, clock)]
[(0, 1.0), (1, 1.333333)]
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import brentq

from .trajectory import DominantSwitch

TIE_RTOL = 1e-12


def _leader(b: np.ndarray, tie_rtol: float) -> int | None:
    """Index of the unique largest entry of ``b`` (``None`` on a tie within ``tie_rtol``)."""
    top = int(b.argmax())
    if b.size == 1:
        return top
    rest = b.copy()
    rest[top] = -np.inf
    second = float(rest.max())
    if b[top] - second > tie_rtol * max(float(b[top]), 1e-300):
        return top
    return None


def dominant_switches(nu: np.ndarray, weights: np.ndarray, dense: Callable | None = None,
                      clock: Callable | None = None, *, tau: np.ndarray | None = None,
                      log10_t: np.ndarray | None = None,
                      tie_rtol: float = TIE_RTOL) -> list[DominantSwitch]:
    """Leader changes along saved points ``weights[i]`` (shape ``(m, L, d)``) at clock ``nu[i]``.

    ``dense(i, x)`` gives the ``(L, d)`` weights at clock value ``x`` in
    ``[nu[i], nu[i+1]]`` and ``clock(i, x)`` the pair ``(tau, log10 t)`` there.  Without
    them (e.g. a discrete run) a change is dated at the saved point where it is seen,
    using the ``tau``/``log10_t`` arrays.
    """
    beta = np.abs(np.prod(weights, axis=1))
    out: list[DominantSwitch] = []
    leader = None

    def at_point(i):
        if tau is not None and log10_t is not None:
            return float(tau[i]), float(log10_t[i])
        return clock(i if i < len(nu) - 1 else i - 1, nu[i]) if clock is not None else (np.nan, np.nan)

    for i in range(beta.shape[0]):
        top = _leader(beta[i], tie_rtol)
        if top is None:
            continue
        if leader is None:
            t_tau, t_log = at_point(max(i, 1) if beta.shape[0] > 1 else i)
            out.append(DominantSwitch(top, float(t_log), float(t_tau)))
            leader = top
            continue
        if top == leader:
            continue
        t_tau, t_log = at_point(i)
        if dense is not None and clock is not None and i > 0:
            a, b = leader, top

            def gap(x, k=i - 1):
                Wx = dense(k, x)
                bx = np.abs(np.prod(Wx, axis=0))
                return float(bx[b] - bx[a])

            lo, hi = float(nu[i - 1]), float(nu[i])
            try:
                g_lo, g_hi = gap(lo), gap(hi)
                if g_lo == 0.0:
                    root = lo
                elif g_lo < 0.0 < g_hi:
                    root = brentq(gap, lo, hi, xtol=1e-15 * max(1.0, abs(hi)))
                else:
                    root = None   # passed through a third coordinate within one step: date it at the sample
                if root is not None:
                    t_tau, t_log = clock(i - 1, root)
            except (ValueError, FloatingPointError):
                pass
        if len(out) == 1 and t_log < out[0].log10_t:
            # the first leader was overtaken within the first step: date it no later
            out[0] = DominantSwitch(out[0].index, float(t_log), float(t_tau))
        out.append(DominantSwitch(top, float(t_log), float(t_tau)))
        leader = top
    return out
