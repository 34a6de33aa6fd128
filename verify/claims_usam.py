"""USAM (the unnormalised perturbation ``eps = rho grad L``) as claims of its own.

THEORY.md names the normalisation of l2-SAM's perturbation as the cause of sequential
feature amplification; USAM keeps the perturbation but drops the normalisation, so its
perturbation dies with the loss (``rho |l'(z)| -> 0``) and its dynamics turn into GD's.
The reduction ``u = v = a`` of one example at depth 2 (:mod:`sambias.verify.reduced`)
predicts USAM's whole leader sequence: a short minor phase while ``rho |l'(z)| x_j`` is
of order 1, then the major -- different from l2-SAM's and from GD's.

>>> [c.id for c in USAM_CLAIMS]
['usam-depth2-leader-sequence']
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from sambias.problem import Init, Problem

from .claims import Claim, Instance, NegativeControl, Rival, SimSettings
from .claims_reduced import LeaderSequence, _predict_leaders, check_leader_sequence
from .reduced import reduced_leaders


def _generate(rng: np.random.Generator, n: int) -> Iterable[Instance]:
    def make(x, a, rho, loss="exp"):
        return (Problem(depth=2, algorithm="usam", rho=rho, loss=loss, X=[list(map(float, x))], y=[1],
                        init=Init(scale=a)),)
    # USAM 1 > 0 where l2-SAM goes 2 > 1 > 0; USAM 2 > 1 > 0 where l2-SAM collapses
    yield Instance(make((3.0, 2.0, 1.0, 0.5), 0.2, 0.4), label="THEORY.md x, rho 0.4, scale 0.2")
    yield Instance(make((3.0, 2.0, 1.0, 0.5), 0.2, 0.9, "logistic"), label="THEORY.md x, rho 0.9, scale 0.2, logistic")
    while True:
        d = int(rng.integers(3, 6))
        x = rng.permutation(np.geomspace(3.0, 3.0 / rng.uniform(3.0, 8.0), d))
        loss = "logistic" if rng.random() < 0.5 else "exp"
        a = float(rng.uniform(0.05, 0.3))
        # rho with rho |l'(z0)| max x in (1/2, 1): the major is not the fastest at t = 0
        g0 = 1.0 if loss == "exp" else 0.5
        rho = float(rng.uniform(0.5, 0.95)) / (g0 * float(x.max()))
        ps = make(x, a, rho, loss)
        try:
            seq = reduced_leaders(x, a, rho, algorithm="usam", loss=loss)
        except ValueError:
            continue
        if len(seq) < 2:
            continue   # planted: a minor phase
        yield Instance(ps, label=f"random d={d} {loss} rho={rho:.3g} scale={a:.3g}")


USAM_LEADERS = Claim(
    id="usam-depth2-leader-sequence",
    statement="L = 2 USAM, one example, uniform init: the leaders follow USAM's own reduction "
              "da_j/dtau = x_j a_j (1 - rho |l'(z)| x_j) -- a minor phase while rho |l'| x_j ~ 1, then the major "
              "(not l2-SAM's sequence: the normalisation is what prolongs amplification)",
    latex=r"L=2,\ \text{USAM},\ n=1:\ (\arg\max_j|\beta_j|)=(\arg\max_j a_j),\ "
          r"\dot a_j=x_ja_j(1-\rho|\ell'(z)|x_j),\ z=\textstyle\sum_j x_ja_j^2",
    hypotheses="one example, y x_j > 0 with distinct |x_j|, uniform init; rho |l'(z0)| max|x| in (1/2, 1) so a minor "
               "coordinate grows fastest at t = 0 (no USAM stationary point); exp or logistic loss; rescaled horizon "
               "tau = 12 (the major leads by tau ~ 3)",
    source="derivation in THEORY.md",
    generate=_generate, predict=_predict_leaders("usam"),
    check=lambda trs, pred: check_leader_sequence(trs[0], pred),
    settings=SimSettings(horizon="12", quick_horizon="12", time="rescaled", instances=4, quick_instances=2),
    negative_controls=(
        NegativeControl("l2sam-run", "l2-SAM from the same init follows USAM's leaders",
                        lambda inst: Instance((inst.problems[0].replace(algorithm="l2-sam"),), inst.prediction,
                                              inst.label + " [l2-SAM run]")
                        if _predict_leaders("l2-sam")((inst.problems[0].replace(algorithm="l2-sam"),))
                        != inst.prediction else None),
        NegativeControl("gd-run", "GD from the same init follows USAM's leaders",
                        lambda inst: Instance((inst.problems[0].replace(algorithm="gd"),), inst.prediction,
                                              inst.label + " [GD run]")),
    ),
    rivals=(Rival("gd", _predict_leaders("gd"), "GD's sequence: the major throughout (the perturbation is small)"),
            Rival("l2-sam", _predict_leaders("l2-sam"), "l2-SAM's sequence (the normalisation does not matter)")))

USAM_CLAIMS = (USAM_LEADERS,)
