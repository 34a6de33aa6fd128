"""l2-SAM's collapse to ``w = 0``: detection and the status it ends a run with.

l2-SAM's perturbation ``rho F/|F|`` has fixed length, so a small initialisation can be
pulled to ``W = 0`` in finite time, where the normalised perturbation is ``0/0``
(THEORY.md, "Careful"; e.g. ``x = (3, 2, 1, 0.5)``, ``rho = 0.5``, ``u = v = 0.06``).  Near
``W = 0`` the field is homogeneous of degree 0 in ``W`` (for ``L = 2``), so any approach to
0 is reached in finite time, and the Jacobian grows like ``rho/|F|``.  A terminal event
fires when ``|F(W)|`` falls to ``COLLAPSE_RTOL * |F(W(0))|``; the run stops there with a
``"collapse: ..."`` status instead of dividing by zero.  ``L = 1`` never collapses
(``F = g != 0`` for separable data).

>>> from sambias import Problem, Init
>>> p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=0.1))
>>> CollapseWatch.applies(p)
True
"""

from __future__ import annotations

import numpy as np

COLLAPSE_RTOL = 1e-9


class CollapseWatch:
    """The ``|F(W)|`` threshold event of one run."""

    def __init__(self, field, w0: np.ndarray, rtol: float = COLLAPSE_RTOL) -> None:
        self.field = field
        self.rtol = rtol
        self.norm0 = float(np.linalg.norm(field.normalised_gradient(w0)))

    @staticmethod
    def applies(problem) -> bool:
        return problem.algorithm == "l2-sam" and problem.rho > 0 and problem.depth >= 2

    @property
    def collapsed_at_start(self) -> bool:
        return self.norm0 == 0.0

    def ratio(self, w: np.ndarray) -> float:
        """``|F(W)| / |F(W(0))|``."""
        return float(np.linalg.norm(self.field.normalised_gradient(w))) / self.norm0

    def value(self, w: np.ndarray) -> float:
        """Event function: crosses 0 downwards when ``|F|`` reaches the threshold."""
        return self.ratio(w) / self.rtol - 1.0

    def near(self, w: np.ndarray) -> bool:
        """Whether a solver failure at ``w`` is the collapse (``|F|`` already far down)."""
        return self.ratio(w) < 1e-4


def collapse_status(log10_t: float, tau: float) -> str:
    return (f"collapse: w reached 0 at log10 t = {log10_t:.6g} (tau = {tau:.6g}); "
            "the l2-SAM perturbation rho F/|F| is undefined there (0/0)")
