"""The discrete algorithms: GD and SAM with a step size ``eta``.

``w_{k+1} = w_k - eta grad L(w_k + eps(w_k))`` with the perturbation of the problem's
algorithm (THEORY.md's table); physical time is ``t = k eta``.  The flows integrated by
:func:`~sambias.flows.simulate` are the ``eta -> 0`` limits of these iterations (first
order: the error at a fixed ``t`` is ``O(eta)``).  ``grad L = S F`` is evaluated as
``-field.physical(w)``, so the loss factor ``S = e^{log S}`` underflows to 0 once the
margins pass ~745 -- that is what a naive float64 loop does, and why long horizons need
the log-time flow.

>>> from sambias import Problem, Init
>>> p = Problem(depth=2, algorithm="gd", X=[[3.0, 2.0]], y=[1], init=Init(scale=0.2))
>>> tr = iterate(p, 0.01, 1000, record_every=100)
>>> tr.weights.shape, round(float(tr.log10_t_final), 6)
((11, 2, 2), 1.0)
"""

from __future__ import annotations

import math
import time as _time

import numpy as np

from sambias.errors import ProblemError
from sambias.problem import Problem

from .dominant import dominant_switches
from .losses import log10_loss_rows
from .trajectory import Trajectory


def iterate(problem: Problem, eta: float, steps: int, *, record_every: int = 1, field=None,
            progress: bool = False) -> Trajectory:
    """Run ``steps`` iterations of the problem's algorithm with step size ``eta``.

    Every ``record_every``-th iterate (and the last) is saved, with ``log10_t = log10(k eta)``,
    ``log10_loss``, and ``tau`` the rescaled clock's Riemann sum ``sum_k eta S(w~_k)``.
    The status is ``"ok"``, ``"collapse: ..."`` (l2-SAM reached ``F = 0`` exactly, where
    its perturbation is undefined) or ``"overflow: ..."`` (weights left float64's range).

    >>> from sambias import Problem, Init
    >>> p = Problem(depth=1, algorithm="l2-sam", rho=0.1, X=[[1.0, 0.0]], y=[1], init=Init(scale=0.0))
    >>> iterate(p, 0.5, 4).weights[-1].round(6).tolist()
    [[1.285531, 0.0]]
    """
    if not isinstance(problem, Problem):
        raise ProblemError(f"problem: expected a sambias Problem, got {type(problem).__name__}")
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(eta) and eta > 0):
        raise ProblemError(f"eta: must be a positive finite number, got {eta!r}")
    for name, value in (("steps", steps), ("record_every", record_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if name == "steps" else 1):
            raise ProblemError(f"{name}: expected a {'non-negative' if name == 'steps' else 'positive'} integer, "
                               f"got {value!r}")
    if field is None:
        from sambias.symbolic import GeneratedField
        field = GeneratedField(problem)
    L, d = problem.depth, problem.dim
    eta = float(eta)
    w = problem.initial_weights().ravel().copy()
    start = _time.perf_counter()
    ks, ws, taus = [0], [w.copy()], [0.0]
    tau = 0.0
    status = "ok"
    k = 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=int(steps), desc="iterate", leave=False)
    with np.errstate(over="ignore", under="ignore"):
        for k in range(1, int(steps) + 1):
            try:
                dw, log_S = field.rescaled(w)
            except FloatingPointError:
                status = (f"collapse: F(w) = 0 at step {k - 1} (log10 t = {math.log10((k - 1) * eta) if k > 1 else -math.inf:.6g}); "
                          "the l2-SAM perturbation is undefined there")
                k -= 1
                break
            S = math.exp(log_S) if log_S < 709.0 else math.inf
            w = w + eta * S * np.asarray(dw, float)
            tau += eta * S
            if not np.all(np.isfinite(w)):
                status = f"overflow: the weights left float64's range at step {k}"
                break
            if k % record_every == 0 or k == steps:
                ks.append(k)
                ws.append(w.copy())
                taus.append(tau)
            if bar is not None and k % 1000 == 0:
                bar.update(1000)
    if bar is not None:
        bar.close()
    if status.startswith("overflow"):
        pass   # the last finite iterate is the last recorded one
    elif ks[-1] != k:
        ks.append(k)
        ws.append(w.copy())
        taus.append(tau)
    kk = np.array(ks, float)
    with np.errstate(divide="ignore"):
        log10_t = np.log10(kk * eta)
    weights = np.array(ws).reshape(-1, L, d)
    tau_arr = np.array(taus)
    log10_loss = log10_loss_rows(problem, weights)
    dominant = dominant_switches(kk, weights, tau=tau_arr, log10_t=log10_t)
    settings = {"time": "physical", "precision": "float64", "method": "discrete", "eta": eta,
                "steps": int(steps), "record_every": int(record_every), "horizon": repr(int(steps) * eta)}
    stats = {"steps": int(k), "nfev": int(k), "njev": 0, "wall_s": round(_time.perf_counter() - start, 6),
             "events": 0}
    return Trajectory(problem=problem, tau=tau_arr, log10_t=log10_t, weights=weights, log10_loss=log10_loss,
                      status=status, dominant=tuple(dominant), settings=settings, stats=stats)
