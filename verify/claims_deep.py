"""Depth L >= 3 limits: GD and l2-SAM tend to a first-order KKT point of
``min |beta|_{2/L} s.t. y_i <beta, x_i> >= 1`` (GD: Gunasekar et al. 2018, Yun et al.
2021 -- known results cited in THEORY.md; l2-SAM: Thm 4.2, via secondary sources).

For ``L >= 3`` the problem is not convex and has many KKT points, so the claim is that
the run ends at *one* of them -- and the evidence names which (support, value, whether it
is the global minimiser).  Its rivals are the convex answers of the shallower networks
(the l2 and l1 max-margins) and the global minimiser itself: a run that settles at a KKT
point off the global one rejects "the limit is the global minimiser".

>>> c = kkt_claim("gd")
>>> c.id, [r.name for r in c.rivals]
('gd-deep-kkt', ['l2-max-margin', 'l1-max-margin', 'global-minimiser'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from sambias.problem import Init, Problem

from . import checks as C
from .claims import Claim, Instance, NegativeControl, Rival, SimSettings
from .references import l1_max_margin, l2_max_margin, quasi_norm_argmin
from .verdict import Verdict

# KKT residuals (relative, weighted by |beta_j|) decay like a power of log t: 1e-2 is
# what t = 1e400..1e1000 reaches on the catalogue's problems
KKT_TOL = 1e-2


@dataclass(frozen=True)
class KKTTarget:
    """The prediction "beta/|beta| tends to a first-order KKT point of
    ``min |beta|_{2/depth}`` under unit margins" (any one of them: for ``depth >= 3``
    there are several).

    >>> KKTTarget(3).describe()
    'a KKT point of min |beta|_{2/3}'
    """

    depth: int
    label: str = field(default="", compare=False)

    def describe(self) -> str:
        return self.label or f"a KKT point of min |beta|_{{2/{self.depth}}}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "kkt", "depth": self.depth, "describe": self.describe()}


def positive_separable(rng: np.random.Generator, n: int, d: int, min_margin: float = 0.3):
    """``n`` examples separated by a direction with positive entries: the limits of a
    balanced positive init (``beta_j = alpha_j^L``-like, never changing sign) can then
    separate the data."""
    w = rng.uniform(0.3, 1.0, size=d)
    w /= np.linalg.norm(w)
    rows = []
    while len(rows) < n:
        x = rng.normal(size=d) * 1.5
        if abs(x @ w) >= min_margin:
            rows.append(x)
    X = np.array(rows)
    return X, np.sign(X @ w)


# Found by a seeded search (positive_separable, n = 3, d = 3): at t = 1e1000 GD and l2-SAM
# (rho = 0.05, scale 0.45) end (A) at the global minimiser, 0.74 rad from the l1 and 0.76
# from the l2 max-margin, and (B) at the l1 max-margin's vertex, a KKT point of
# |beta|_(2/3) 0.14 rad from its global minimiser -- between them every rival is separated.
PLANTED = (
    ([[0.33, -2.25, 0.672], [1.139, 0.753, -0.821], [-0.882, 2.616, -0.152]], [-1, 1, 1],
     "the limit is the global minimiser, away from the l1 and l2 max-margins"),
    ([[-0.894, 1.245, 0.166], [-0.485, 0.923, 2.464], [-2.137, 2.422, 2.924]], [1, 1, 1],
     "the limit is a KKT point off the global minimiser (the l1 max-margin's vertex)"),
)


def _global_limit(ps) -> C.Limit:
    p = ps[0]
    got = quasi_norm_argmin(p.X, p.y, p.depth)
    if got is None:
        raise ValueError("problem too large for the vertex enumeration")
    return C.Limit.direction(got[0], label=f"global minimiser of |beta|_(2/{p.depth})")


def _l2_limit(ps) -> C.Limit:
    p = ps[0]
    return C.Limit.direction(l2_max_margin(p.X, p.y).direction, label="l2 max-margin", norm=2.0)


def _l1_limit(ps) -> C.Limit:
    p = ps[0]
    ref = l1_max_margin(p.X, p.y)
    if not ref.unique:
        raise ValueError("the l1 max-margin is not unique here")
    return C.Limit.direction(ref.direction, label="l1 max-margin", norm=1.0)


def _apart(a: np.ndarray, b: np.ndarray, angle: float = 0.1) -> bool:
    return float(C.angle_between(a, b)[0]) > angle


def _kkt_generate(algorithm: str):
    def generate(rng: np.random.Generator, n: int) -> Iterable[Instance]:
        rho = 0.0 if algorithm == "gd" else 0.05
        for X, y, what in PLANTED:
            yield Instance((Problem(depth=3, algorithm=algorithm, rho=rho, X=X, y=y, init=Init(scale=0.45)),),
                           label=f"planted L=3: {what}")
        k = 0
        while True:
            X, y = positive_separable(rng, int(rng.integers(3, 6)), 3)
            l2, l1 = l2_max_margin(X, y), l1_max_margin(X, y)
            got = quasi_norm_argmin(X, y, 3)
            if not l1.unique or got is None:
                continue
            g = got[0]
            # the rivals must say something else than "a KKT point": three distinct targets
            if not (_apart(l2.direction, l1.direction) and _apart(g, l1.direction) and _apart(g, l2.direction)):
                continue
            L = 3 if k % 3 != 2 else 4
            k += 1
            a = float(rng.uniform(0.3, 0.6))
            rho = 0.0 if algorithm == "gd" else float(rng.uniform(0.02, 0.1))
            loss = "logistic" if k % 2 == 0 else "exp"
            yield Instance((Problem(depth=L, algorithm=algorithm, rho=rho, loss=loss, X=X, y=y,
                                    init=Init(scale=a)),),
                           label=f"random n={X.shape[0]} d=3 L={L} {loss} scale={a:.3g}")
    return generate


def _check(trajs, prediction) -> Verdict:
    tr = trajs[0]
    if isinstance(prediction, KKTTarget):
        return C.check_kkt(tr, tol=KKT_TOL, depth=prediction.depth)
    return C.check_limit(tr, prediction, tol=1e-2)


def _shallow_control(inst: Instance) -> Instance:
    """The same data at L = 1 (its limit is the l2 max-margin) claimed to be a KKT point
    of ``min |beta|_{2/L}`` for the instance's L."""
    p = inst.problems[0]
    return Instance((p.replace(depth=1),), inst.prediction, inst.label + " [L = 1 run]")


def _gd_at_depth2_control(inst: Instance) -> Instance | None:
    """A direction that is no KKT point: the first gradient step ``sum_i y_i x_i`` --
    checked as the limit (the run must not end there)."""
    p = inst.problems[0]
    g = (np.asarray(p.y, float)[:, None] * np.asarray(p.X, float)).sum(axis=0)
    if not np.any(g) or not _apart(g, _global_limit(inst.problems).target()):
        return None
    return Instance(inst.problems, C.Limit.direction(g, label="sum_i y_i x_i"), inst.label + " [first step]")


def _kkt_mutants(prediction, inst: Instance) -> list[tuple[str, Any]]:
    """Wrong predictions every instance must reject: the minimiser negated, collapse to 0,
    and the first gradient step where it is apart from the minimiser."""
    v = _global_limit(inst.problems).target()
    out = [("negated-minimiser", C.Limit.direction(-v)), ("zero", C.Limit.zero(len(v)))]
    first = _gd_at_depth2_control(inst)
    if first is not None:
        out.append(("first-step", first.prediction))
    return out


def kkt_claim(algorithm: str) -> Claim:
    """The L >= 3 KKT claim for ``"gd"`` (known result) or ``"l2-sam"`` (Thm 4.2)."""
    name = "GD" if algorithm == "gd" else "l2-SAM"
    return Claim(
        id=f"{'gd' if algorithm == 'gd' else 'l2sam'}-deep-kkt",
        statement=f"L >= 3 {name}, several examples: beta/|beta| -> a first-order KKT point of "
                  f"min |beta|_(2/L) s.t. y_i <beta, x_i> >= 1 (which one: named in the evidence)",
        latex=r"L\ge3,\ \text{" + name + r"}:\ \frac{\beta(t)}{\lVert\beta(t)\rVert}\to\bar\beta/\lVert\bar\beta\rVert,"
              r"\ \bar\beta\ \text{a KKT point of}\ \min\lVert\beta\rVert_{2/L}\ \text{s.t.}\ y_i\langle\beta,x_i\rangle\ge1",
        hypotheses="separable data with a positive separator (a balanced positive init keeps every beta_j >= 0), "
                   "balanced init alpha 1, exp or logistic loss; KKT in parameter space (stationarity times "
                   "|beta_j|, so coordinates on their way to 0 need no support guess); l2-SAM: small rho"
                   + ("; Thm 4.2 assumes directional convergence of the layers" if algorithm != "gd" else ""),
        source="known result cited in THEORY.md" if algorithm == "gd" else "secondary source",
        generate=_kkt_generate(algorithm), predict=lambda ps: KKTTarget(ps[0].depth), check=_check,
        mutants=_kkt_mutants,
        settings=SimSettings(horizon="1e1000", quick_horizon="1e1000", instances=5, quick_instances=2,
                             max_steps=40000),
        negative_controls=(
            NegativeControl("shallow-run", "an L = 1 run (-> the l2 max-margin) is a KKT point of "
                                           "min |beta|_(2/L) too", _shallow_control),
            NegativeControl("first-step", "the run ends along the first gradient step sum_i y_i x_i",
                            _gd_at_depth2_control),
        ),
        rivals=(Rival("l2-max-margin", _l2_limit, "the L = 1 answer (hard-margin SVM)"),
                Rival("l1-max-margin", _l1_limit, "the L = 2 answer (l1 max-margin; convex, unique here)"),
                Rival("global-minimiser", _global_limit, "the global minimiser of |beta|_(2/L) (the limit is the "
                                                         "best KKT point, not just some KKT point)")))
