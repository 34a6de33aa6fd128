"""An independent high-precision oracle: the SAM flow written by hand in heyoka.py's
expression system and integrated by its Taylor method in ``real`` (MPFR) arithmetic.

For the mp accuracy checks of issue 11.4 only (benchmarks/bench_mp.py and
tests/test_flows_mp_exact.py): nothing in sambias imports it.  It shares no code with
sambias' derivation, printer or integrators -- the equations are typed in from THEORY.md.

Scope: one example (``n = 1``), exponential loss, physical time, and

* ``gd``;
* ``l2-sam`` (``eps = rho F/|F|`` with ``F[l, j] = -y x_j prod_{k != l} w[k, j]``);
* ``linf-sam`` from a *positive* start, where ``sign(grad L) = -1`` and ``W~ = W - rho``.
  At depth 2 a balanced column (all layers equal) reaches 0 with every layer at once; the
  driver then pins the column (two or more pins: frozen, its clock keeps the sign pattern it
  arrived with, so ``W~ = -rho`` there).  A terminal event on layer 0 lands on the crossing,
  the column is set to exactly 0 and its velocity switched off through a runtime parameter.
  Other linf-SAM starts are refused (the oracle does not model Filippov sliding in general).

>>> from sambias import Problem, Init
>>> p = Problem(depth=2, algorithm="gd", X=[[1.0]], y=[1], init=Init(scale=1.0))
>>> w, info = heyoka_final(p, 1.0, prec=100)   # du/dt = v e^{-uv}, u = v: du/dt = u e^{-u^2}
>>> round(float(w[0]), 12) == round(float(w[1]), 12), info["events"]
(True, 0)
"""

from __future__ import annotations

import time

import mpmath
import numpy as np


def _build(problem):
    import heyoka as hy

    if problem.n != 1 or problem.loss != "exp":
        raise ValueError("heyoka oracle: one example, exponential loss only")
    L, d = problem.depth, problem.dim
    a = [float(v) for v in problem.signed_data[0]]          # y x_j
    W0 = np.asarray(problem.initial_weights(), float)
    rho = float(problem.rho) if problem.algorithm != "gd" else 0.0
    alg = problem.algorithm
    if alg == "linf-sam" and not np.all(W0 > 0):
        raise ValueError("heyoka oracle: linf-SAM from a positive start only")
    if alg not in ("gd", "l2-sam", "linf-sam"):
        raise ValueError(f"heyoka oracle: algorithm {alg!r} not modelled")
    if alg == "linf-sam" and L == 2 and not np.all(W0[0] == W0[1]):
        raise ValueError("heyoka oracle: depth-2 linf-SAM needs a balanced start (columns cross together)")
    w = [[hy.make_vars(f"w_{l}_{j}") for j in range(d)] for l in range(L)]

    def others(M, l, j):
        out = 1.0
        for k in range(L):
            if k != l:
                out = out * M[k][j]
        return out
    if alg == "gd" or rho == 0.0:
        wt = w
    elif alg == "l2-sam":
        F = [[-a[j] * others(w, l, j) for j in range(d)] for l in range(L)]
        N = hy.sqrt(hy.sum([F[l][j] * F[l][j] for l in range(L) for j in range(d)]))
        wt = [[w[l][j] + rho * F[l][j] / N for j in range(d)] for l in range(L)]
    else:
        wt = [[w[l][j] - rho for j in range(d)] for l in range(L)]
    z = hy.sum([a[j] * others(wt, -1, j) for j in range(d)])
    S = hy.exp(-z)
    mask = [hy.par[j] for j in range(d)]
    sys = [(w[l][j], mask[j] * S * a[j] * others(wt, l, j)) for l in range(L) for j in range(d)]
    return sys, W0, w


def heyoka_final(problem, t_end, *, prec: int = 200, compile_only: bool = False):
    """``W(t_end)`` (flat, layer-major, as mpmath ``mpf`` at ``prec`` bits) and timings;
    ``t_end`` is a number or decimal text (``"0.6"`` is read exactly, like sambias' horizons).

    ``info`` holds ``compile_s`` (building the Taylor integrator: JIT compilation),
    ``integrate_s`` (wall seconds; ``*_cpu_s``: CPU seconds of the process, all threads),
    ``events`` and ``nsteps``.
    """
    import heyoka as hy

    sys, W0, w = _build(problem)
    L, d = W0.shape
    R = lambda v: hy.real(v, prec)  # noqa: E731
    events = []
    if problem.algorithm == "linf-sam" and L == 2:
        events = [hy.t_event(w[0][j], fp_type=hy.real, direction=hy.event_direction.negative) for j in range(d)]
    t0, c0 = time.perf_counter(), time.process_time()
    ta = hy.taylor_adaptive(sys, np.array([R(float(v)) for v in W0.ravel()]),
                            pars=np.array([R(1.0)] * d), fp_type=hy.real, prec=prec,
                            t_events=events)
    info = {"compile_s": time.perf_counter() - t0, "compile_cpu_s": time.process_time() - c0,
            "events": 0, "nsteps": 0}
    if compile_only:
        return None, info
    t0, c0 = time.perf_counter(), time.process_time()
    # from decimal text, as sambias parses a horizon: float 0.6 is 2e-17 off 0.6
    T = hy.real(str(t_end), prec)
    while True:
        res = ta.propagate_until(T)
        info["nsteps"] += int(res[3])
        outcome = int(res[0])
        if ta.time >= T:
            break
        # a terminal event i without callback ends the call with outcome -(i + 1)
        if -d <= outcome < 0:
            j = -outcome - 1
            st = ta.state
            for l in range(L):
                st[l * d + j] = R(0.0)
            pars = ta.pars
            pars[j] = R(0.0)
            info["events"] += 1
            continue
        if ta.time < T:
            raise RuntimeError(f"heyoka oracle stopped at t = {ta.time} (outcome {outcome})")
    info["integrate_s"] = time.perf_counter() - t0
    info["integrate_cpu_s"] = time.process_time() - c0
    with mpmath.workprec(prec):
        out = [mpmath.mpf(str(v)) for v in ta.state]
    return out, info
