"""The loss along a trajectory, as ``log10``, vectorised over saved points.

``log10 L(W) = log10 sum_i l(z_i)`` stays finite far past float64's underflow
(``e^{-z}`` underflows at ``z ~ 745``; here ``z`` may be ``1e300``).  Same formulas as
:func:`sambias.flows.field.log_loss`, applied to a whole ``(m, L, d)`` stack at once.

>>> import numpy as np
>>> from sambias import Problem, Init
>>> p = Problem(depth=1, algorithm="gd", X=[[1.0]], y=[1], init=Init(scale=0.0))
>>> log10_loss_rows(p, np.array([[[0.0]], [[2000.0]]])).round(3).tolist()
[0.0, -868.589]
"""

from __future__ import annotations

import math

import numpy as np

LN10 = math.log(10.0)


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    m = np.max(a, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return (m + np.log(np.sum(np.exp(a - m), axis=1, keepdims=True)))[:, 0]


def log_loss_rows(problem, weights: np.ndarray) -> np.ndarray:
    """Natural log of the loss at every row of ``weights`` (shape ``(m, L, d)``)."""
    beta = np.prod(np.asarray(weights, float), axis=1)
    z = beta @ np.asarray(problem.signed_data, float).T          # (m, n)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if problem.loss == "exp":
            terms = -z
        else:
            # log(log1p(e^-z)); for z > 30: -z + log1p(-e^-z / 2) (series of log1p)
            small = np.log(np.log1p(np.exp(-np.minimum(z, 30.0))))
            big = -z + np.log1p(-0.5 * np.exp(-np.maximum(z, 30.0)))
            terms = np.where(z > 30.0, big, small)
    return _logsumexp_rows(terms)


def log10_loss_rows(problem, weights: np.ndarray) -> np.ndarray:
    """``log10`` of the loss at every row of ``weights``."""
    return log_loss_rows(problem, weights) / LN10
