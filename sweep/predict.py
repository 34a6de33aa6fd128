"""Predicted limits recorded beside the observed ones (``predict = "NAME"`` in a sweep file).

A predictor maps a problem to the 0-based index of the predicted limit basis vector,
``-1`` for collapse (``beta -> 0``), or ``None`` when it makes no prediction there
(outside its hypotheses, or a limit that is no basis vector).

>>> from sambias import Problem, Init
>>> p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0, 1.0]], y=[1],
...             init=Init(layers=[[0.3, 0.6, 0.8], [0.3, 0.6, 0.8]]))
>>> linf_basin(p)   # u_j + v_j > 2 rho for j = 1, 2; the larger x_j of those wins
1
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def linf_basin(problem) -> int | None:
    """THEORY.md, one example, l-inf SAM.  L = 2 (any positive init): coordinate ``j``
    grows iff ``u_j + v_j > 2 rho``; the limit is ``e_k``, ``k`` the growing coordinate
    with the largest ``|x_j|``; ``-1`` when none grows.  L >= 3 (balanced init
    ``alpha_j``): ``j* = argmax_{alpha_j > rho} |x_j| (alpha_j - rho)^(L-2)``; no
    prediction when none grows (odd L: ``beta_j -> rho^L``, no basis vector).
    Ties (equal scores) give no prediction: the limit then depends on round-off.
    """
    if problem.algorithm != "linf-sam" or problem.n != 1 or problem.depth < 2:
        return None
    a = problem.signed_data[0]
    w = problem.initial_weights()
    if np.any(a <= 0) or np.any(w <= 0):
        return None
    rho, L = problem.rho, problem.depth
    if L == 2:
        grows = w[0] + w[1] > 2 * rho
        score = np.where(grows, a, -np.inf)
    else:
        if np.any(w != w[0]):
            return None
        alpha = w[0]
        grows = alpha > rho
        score = np.where(grows, a * np.maximum(alpha - rho, 0.0) ** (L - 2), -np.inf)
    if not np.any(grows):
        return -1 if L % 2 == 0 else None
    best = np.flatnonzero(score == score.max())
    return int(best[0]) if best.size == 1 else None


def major_coordinate(problem) -> int | None:
    """The coordinate with the largest ``|x_j|`` (one example): the limit GD and l2-SAM
    reach at L = 2 unless the run collapses."""
    if problem.n != 1:
        return None
    a = np.abs(problem.X[0])
    best = np.flatnonzero(a == a.max())
    return int(best[0]) if best.size == 1 else None


PREDICTORS: dict[str, Callable] = {"linf-basin": linf_basin, "major": major_coordinate}
