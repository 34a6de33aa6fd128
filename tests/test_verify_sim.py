"""A tiny private fallback integrator for the verify tests, plus a test of it.

``sambias.flows.simulate`` is written in parallel; until it exists the verify tests run
their claims through :func:`fallback_simulate` (rescaled clock ``tau``, ``ln(1 + t)``
carried as a state, ``solve_ivp``).  It lives here, not in ``verify/``, on purpose: the
verifier must never check trajectories of its own making.  :func:`simulator` returns the
real integrator as soon as it is there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import sambias.flows
from sambias import Init, Problem
from sambias.flows import DominantSwitch, Trajectory
from tests.oracles.field import NumpyField, log_loss
from sambias.horizon import parse_horizon

LN10 = math.log(10.0)


def simulator():
    """The real ``sambias.flows.simulate`` when present, else the fallback."""
    return getattr(sambias.flows, "simulate", None) or fallback_simulate


def _linf_sigma(field: NumpyField, w: np.ndarray) -> np.ndarray:
    # Filippov sliding approximated by a steep saturation: a coordinate pushed towards 0
    # from both sides sits at 0 instead of chattering.
    F = field.normalised_gradient(w)
    return np.clip(F / 1e-9, -1.0, 1.0)


def fallback_simulate(problem: Problem, horizon, *, time: str = "physical", precision: str = "float64",
                      method: str = "auto", rtol: float = 1e-9, atol=None, max_points: int = 3000) -> Trajectory:
    """Integrate the rescaled flow to a physical (log) or rescaled horizon.

    ``ln t`` is accumulated after each chunk from ``dt/dtau = 1/S`` (log-linear
    interpolation of ``1/S`` between saved points): carrying it as a state is stiff.
    """
    h = parse_horizon(horizon)
    field = NumpyField(problem)
    L, d = problem.depth, problem.dim
    w0 = problem.initial_weights().ravel()
    scale0 = float(np.max(np.abs(w0)))
    target_ln_t = h.ln if time == "physical" else math.inf
    tau_end = h.as_float() if time == "rescaled" else math.inf

    def rhs(_tau, w):
        sigma = _linf_sigma(field, w) if problem.algorithm == "linf-sam" else None
        return field.rescaled(w, sigma)[0]

    def log_dt_dtau(w):
        sigma = _linf_sigma(field, w) if problem.algorithm == "linf-sam" else None
        return -field.rescaled(w, sigma)[1]

    def collapse(_tau, w):
        return float(np.max(np.abs(w))) - 1e-7 * scale0
    collapse.terminal = True

    def blowup(_tau, w):
        return 100.0 / problem.depth - math.log10(max(float(np.max(np.abs(w))), 1e-300))
    blowup.terminal = True

    events = [blowup] + ([collapse] if problem.algorithm == "l2-sam" and scale0 > 0 else [])
    status = "ok"
    taus, ws, ln_t = [0.0], [w0], [-math.inf]
    tau, w, a = 0.0, w0, log_dt_dtau(w0)
    step = 1e-3
    # The tau-flow of several examples is stiff (its Jacobian grows with |beta|): implicit.
    solver = "LSODA" if problem.algorithm == "linf-sam" else "Radau"
    jac = None if problem.algorithm == "linf-sam" else (lambda _tau, w: field.rescaled_jac(w))
    while tau < tau_end and ln_t[-1] < target_ln_t and len(taus) < max_points:
        t_next = min(tau_end, max(tau * 1.05, tau + step))
        step = t_next - tau
        try:
            sol = solve_ivp(rhs, (tau, t_next), w, method=solver, rtol=rtol,
                            atol=1e-13 * max(scale0, 1e-2), events=events,
                            **({"jac": jac} if jac else {}))
        except FloatingPointError:
            status = "collapse: l2-SAM perturbation undefined at w = 0"
            break
        dtau = float(sol.t[-1]) - tau
        tau, w = float(sol.t[-1]), sol.y[:, -1]
        b = log_dt_dtau(w)
        # log of the integral of exp(linear from a to b) over dtau
        if dtau > 0:
            diff = b - a
            piece = (max(a, b) + math.log(dtau) + math.log(-math.expm1(-abs(diff)) / abs(diff))
                     if abs(diff) > 1e-12 else a + math.log(dtau))
            ln_t.append(float(np.logaddexp(ln_t[-1], piece)))
            taus.append(tau)
            ws.append(w)
        a = b
        if sol.status == 1:
            if sol.t_events[0].size:
                status = "stopped: weights overflow"
            else:
                status = "collapse: w reached 0 (l2-SAM perturbation undefined)"
            break
        if not sol.success:
            status = f"failed: {sol.message}"
            break
    W = np.array(ws).reshape(-1, L, d)
    if status.startswith("collapse"):
        W[-1] = 0.0
    log10_t = np.array(ln_t) / LN10
    beta = np.prod(W, axis=1)
    z = beta @ problem.signed_data.T
    log10_loss = np.array([log_loss(zz, problem.loss) / LN10 for zz in z])
    switches = []
    lead = None
    for i in range(len(taus)):
        bb = np.abs(beta[i])
        top = np.sort(bb)[-2:]
        if bb.size > 1 and top[1] - top[0] <= 1e-12 * max(top[1], 1e-300):
            continue
        k = int(np.argmax(bb))
        if k != lead and bb[k] > 0:
            switches.append(DominantSwitch(k, float(log10_t[i]), float(taus[i])))
            lead = k
    return Trajectory(problem=problem, tau=np.array(taus), log10_t=log10_t, weights=W, log10_loss=log10_loss,
                      status=status, dominant=tuple(switches),
                      settings={"time": time, "horizon": str(horizon), "precision": precision,
                                "method": f"fallback-{solver}", "rtol": rtol, "atol": atol})


def test_fallback_gd_depth1_matches_closed_form():
    # L = 1, one example, zero init: beta(tau) = tau * x exactly.
    p = Problem(depth=1, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=0.0))
    tr = fallback_simulate(p, "5", time="rescaled")
    assert tr.tau_final == pytest.approx(5.0)
    assert np.allclose(tr.beta_final, 5.0 * np.array([2.0, 1.0]), rtol=1e-7)
