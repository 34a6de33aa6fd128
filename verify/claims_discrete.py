"""The discrete algorithm tends to its flow as ``eta -> 0``, with order 1.

THEORY.md defines the flows as the ``eta -> 0`` limits of ``w_{k+1} = w_k - eta grad
L(w_k + eps(w_k))``; that iteration is the explicit Euler method of the flow, so at a
fixed time ``T`` the gap ``|w_{T/eta} - w(T)|`` should shrink like ``eta^1``: halving
``eta`` halves it.  The check measures the observed order ``log2(e(eta)/e(eta/2))`` on a
ladder of step sizes (iterates of :func:`sambias.flows.iterate` against the flow of
:func:`sambias.flows.simulate`, integrated at ``rtol = 1e-12``); its rivals are order 2
(a second-order scheme) and order 1/2 (a diffusion-like error).

>>> DiscreteOrder(1.0, (0.02, 0.01, 0.005)).describe()
'|w_eta(T) - w(T)| ~ eta^1 (eta = 0.02, 0.01, 0.005)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from sambias.problem import Init, Problem

from .checks import run_info
from .claims import Claim, Instance, NegativeControl, Rival, SimSettings
from .verdict import Verdict

ETAS = (0.02, 0.01, 0.005, 0.0025)
ORDER_TOL = 0.2       # observed orders on these ladders sit within 0.01 of 1 (measured: 2.00-2.01 ratios)
HORIZON = 1.0


@dataclass(frozen=True)
class DiscreteOrder:
    """The prediction: the discrete iterates at step sizes ``etas`` approach the flow at
    ``t = HORIZON`` with order ``order``; ``algorithm`` is the algorithm iterated (``None``:
    the flow's own -- a control iterates another algorithm than the flow's)."""

    order: float
    etas: tuple[float, ...] = ETAS
    algorithm: str | None = field(default=None)

    def describe(self) -> str:
        return (f"|w_eta(T) - w(T)| ~ eta^{self.order:g} (eta = {', '.join(f'{e:g}' for e in self.etas)})"
                + (f" iterating {self.algorithm}" if self.algorithm else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"order": self.order, "etas": list(self.etas), "algorithm": self.algorithm,
                "describe": self.describe()}


def discrete_errors(problem: Problem, flow_weights: np.ndarray, etas, horizon: float = HORIZON,
                    algorithm: str | None = None) -> list[float]:
    """Relative gaps ``|w_{T/eta} - w(T)| / |w(T)|`` of the discrete iterates at each
    step size (``algorithm`` iterated instead of the problem's own, if given)."""
    from sambias.flows import iterate

    q = problem if algorithm is None else problem.replace(algorithm=algorithm)
    ref = np.asarray(flow_weights, float).ravel()
    out = []
    for eta in etas:
        steps = int(round(horizon / eta))
        tr = iterate(q, float(eta), steps, record_every=max(steps, 1))
        if tr.status != "ok":
            raise ValueError(f"the discrete run at eta = {eta:g} stopped: {tr.status}")
        out.append(float(np.linalg.norm(tr.weights[-1].ravel() - ref) / np.linalg.norm(ref)))
    return out


def check_discrete_order(traj, prediction: DiscreteOrder, *, tol: float = ORDER_TOL) -> Verdict:
    """Observed orders ``log2(e(eta_k) / e(eta_{k+1}))`` on the ladder (each step halves
    eta) against the predicted order: ``holds`` when every one is within ``tol``;
    ``fails`` when the last one (the smallest steps, where the asymptotic order shows
    best) is off by more than ``tol`` and the orders have settled (consecutive ones within
    ``tol / 2``) -- or when the gap does not shrink at all; else ``inconclusive``.
    ``traj`` is the flow, run to ``t = HORIZON`` exactly."""
    info = run_info(traj)
    if traj.status != "ok" or abs(10 ** traj.log10_t_final - HORIZON) > 1e-9 * HORIZON:
        return Verdict("inconclusive", f"the flow did not reach t = {HORIZON:g} ({traj.status})", math.nan, info)
    etas = prediction.etas
    if any(abs(b / a - 0.5) > 1e-12 for a, b in zip(etas, etas[1:])):
        raise ValueError("the step sizes must halve from one to the next")
    errs = discrete_errors(traj.problem, traj.weights[-1], etas, algorithm=prediction.algorithm)
    with np.errstate(divide="ignore", invalid="ignore"):
        orders = [math.log2(a / b) if a > 0 and b > 0 else math.nan for a, b in zip(errs, errs[1:])]
    ev = {"etas": list(etas), "relative_errors": errs, "observed_orders": orders, "predicted_order": prediction.order,
          "order_tol": tol, "flow_rtol": info.get("rtol"), "iterated": prediction.algorithm or traj.problem.algorithm,
          "margin_units": "order units of slack (tol - |observed - predicted|, worst pair)", **info}
    if not all(math.isfinite(o) for o in orders):
        return Verdict("inconclusive", "a gap is 0 or undefined", math.nan, ev)
    off = [abs(o - prediction.order) for o in orders]
    margin = tol - max(off)
    line = ", ".join(f"{o:.3f}" for o in orders)
    if max(off) <= tol:
        return Verdict("holds", f"observed orders {line} (predicted {prediction.order:g} +- {tol:g}); gap "
                                f"{errs[-1]:.2g} at eta = {etas[-1]:g}", margin, {**ev, "decided_by": "observed orders"})
    if errs[-1] >= 0.9 * errs[0]:
        return Verdict("fails", f"the gap does not shrink with eta ({errs[0]:.3g} -> {errs[-1]:.3g}): the iterates "
                                f"do not tend to this flow", -tol, {**ev, "decided_by": "gap not shrinking"})
    settled = len(orders) < 2 or abs(orders[-1] - orders[-2]) <= tol / 2
    if off[-1] > tol and settled:
        return Verdict("fails", f"observed orders {line}: settled at {orders[-1]:.3f}, not {prediction.order:g} "
                                f"+- {tol:g}", tol - off[-1], {**ev, "decided_by": "settled order"})
    return Verdict("inconclusive", f"observed orders {line} still drifting (predicted {prediction.order:g})",
                   math.nan, {**ev, "decided_by": "orders not settled"})


def _generate(rng: np.random.Generator, n: int) -> Iterable[Instance]:
    # positive data and init: no gradient coordinate changes sign before t = 1, so the
    # linf-SAM iteration meets no Filippov surface (where a step can cross and chatter)
    yield Instance((Problem(depth=2, algorithm="l2-sam", rho=0.3, loss="logistic", X=[[3.0, 2.0, 1.0], [1.0, -1.0, 2.0]],
                            y=[1, 1], init=Init(scale=0.5)),), label="L = 2 l2-SAM, two examples, logistic")
    yield Instance((Problem(depth=3, algorithm="linf-sam", rho=0.1, X=[[3.0, 2.0, 1.0]], y=[1],
                            init=Init(scale=0.5)),), label="L = 3 linf-SAM, one example")
    algs = ("usam", "l2-sam", "linf-sam", "gd")
    k = 0
    while True:
        alg = algs[k % len(algs)]
        k += 1
        d = int(rng.integers(2, 5))
        L = int(rng.integers(1, 4))
        x = rng.uniform(0.5, 3.0, size=d)
        rho = 0.0 if alg == "gd" else float(rng.uniform(0.05, 0.3))
        loss = "logistic" if rng.random() < 0.5 else "exp"
        yield Instance((Problem(depth=L, algorithm=alg, rho=rho, loss=loss, X=[x.tolist()], y=[1],
                                init=Init(scale=float(rng.uniform(0.3, 0.7)))),),
                       label=f"random {alg} L={L} d={d} {loss}")


def _other_flow_control(inst: Instance) -> Instance | None:
    """The iterates of the instance's algorithm checked against *GD's* flow (or, for GD,
    against l2-SAM's with rho = 0.3): they must not converge to it."""
    p = inst.problems[0]
    if p.algorithm == "gd":
        flow, it = p.replace(algorithm="l2-sam", rho=0.3), "gd"
    else:
        flow, it = p.replace(algorithm="gd"), p.algorithm
    return Instance((flow,), DiscreteOrder(1.0, inst.prediction.etas, it), inst.label + f" [{it} iterates vs {flow.algorithm} flow]")


DISCRETE = Claim(
    id="discrete-sam-flow-order1",
    statement="the discrete algorithm w <- w - eta grad L(w + eps(w)) tends to its flow as eta -> 0 with order 1: "
              "halving eta halves |w_{T/eta} - w(T)|",
    latex=r"\lVert w_{T/\eta}-w(T)\rVert=C\eta+O(\eta^2):\ \log_2\frac{e(\eta)}{e(\eta/2)}\to1",
    hypotheses="smooth flow on [0, T] (no Filippov surface met: positive data and init for linf-SAM), T = 1, "
               "eta = 0.02 .. 0.0025; GD, l2-SAM, linf-SAM, USAM; exp and logistic loss; L = 1..3",
    source="derivation in THEORY.md",
    generate=_generate, predict=lambda ps: DiscreteOrder(1.0),
    check=lambda trs, pred: check_discrete_order(trs[0], pred),
    settings=SimSettings(horizon=repr(HORIZON), quick_horizon=repr(HORIZON), rtol=1e-12, instances=6,
                         quick_instances=2),
    negative_controls=(
        NegativeControl("order-2", "the gap shrinks like eta^2",
                        lambda inst: Instance(inst.problems, DiscreteOrder(2.0, inst.prediction.etas),
                                              inst.label + " [order 2]")),
        NegativeControl("other-flow", "the iterates tend to another algorithm's flow", _other_flow_control),
    ),
    rivals=(Rival("order-2", lambda ps: DiscreteOrder(2.0), "second order (a midpoint-like scheme)"),
            Rival("order-0.5", lambda ps: DiscreteOrder(0.5), "order 1/2 (a diffusion-like error)")))
