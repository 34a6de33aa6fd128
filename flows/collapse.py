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

from .logtime import _norm

COLLAPSE_RTOL = 1e-9


class CollapseWatch:
    """The ``|F(W)|`` threshold event of one run."""

    def __init__(self, field, w0: np.ndarray, rtol: float = COLLAPSE_RTOL) -> None:
        self.field = field
        self.rtol = rtol
        # (a scaled norm: at an init of 1e-300 the squares underflow and |F| would read 0)
        with np.errstate(over="ignore", under="ignore"):     # _norm falls back to a scaled sum
            self.norm0 = _norm(np.asarray(field.normalised_gradient(w0), float))

    @staticmethod
    def applies(problem) -> bool:
        return is_normalised(problem)

    @property
    def collapsed_at_start(self) -> bool:
        return self.norm0 == 0.0

    def ratio(self, w: np.ndarray) -> float:
        """``|F(W)| / |F(W(0))|``."""
        return _norm(np.asarray(self.field.normalised_gradient(w), float)) / self.norm0

    def value(self, w: np.ndarray) -> float:
        """Event function: crosses 0 downwards when ``|F|`` reaches the threshold."""
        return self.ratio(w) / self.rtol - 1.0

    def near(self, w: np.ndarray) -> bool:
        """Whether a solver failure at ``w`` is the collapse (``|F|`` already far down)."""
        return self.ratio(w) < 1e-4


def stationary_status(problem, w: np.ndarray, where: str) -> str | None:
    """The ``"stationary: ..."`` status of a run frozen at a point that misclassifies an
    example (USAM can stop there: issue 10.3); ``None`` when every margin is positive or
    ``beta = 0`` (linf-SAM's columns held at 0 -- reported by ``beta_collapsed``)."""
    beta = np.prod(np.asarray(w, float).reshape(problem.depth, problem.dim), axis=0)
    if not np.any(beta != 0.0):
        return None
    margins = np.asarray(problem.signed_data, float) @ beta
    bad = np.flatnonzero(margins <= 0.0)
    if bad.size == 0:
        return None
    i = int(bad[np.argmin(margins[bad])])
    return (f"stationary: W stopped moving at {where} at a point that misclassifies "
            f"{bad.size} example(s) (example {i}: margin {margins[i]:.6g}); held there to the horizon")


def is_filippov(problem) -> bool:
    """Whether the problem's algorithm is discontinuous (sign-type, as linf-SAM): its flow is
    integrated in the Filippov sense.  Read off the algorithm's one definition in symbolic/."""
    from sambias.symbolic.algorithms import get_algorithm

    return problem.rho > 0 and get_algorithm(problem.algorithm).discontinuous


def is_normalised(problem) -> bool:
    """Whether the perturbation has a fixed length (``eps(c g) = eps(g)``, as l2-SAM and ASAM):
    then ``w = 0`` (L >= 2) is reached in finite time and the flow is undefined there (0/0),
    so the run watches for the collapse.  GD's zero perturbation is trivially of degree 0."""
    from sambias.symbolic.algorithms import get_algorithm, perturbation_degree

    if problem.rho <= 0 or problem.depth < 2 or problem.algorithm == "gd":
        return False
    algorithm = get_algorithm(problem.algorithm)
    return not algorithm.discontinuous and perturbation_degree(algorithm, problem.depth) == 0


def collapse_status(log10_t: float, tau: float, w: np.ndarray | None = None, problem=None) -> str:
    """The ``"collapse: ..."`` status; with the weights and the problem it names the columns
    that reached 0 and those that never move (``x_j = 0`` for every example: ``F_j = 0``)."""
    where = f"at log10 t = {log10_t:.6g} (tau = {tau:.6g})"
    tail = "; the normalised perturbation (rho F/|F| for l2-SAM) is undefined there (0/0)"
    if w is not None and problem is not None:
        W = np.asarray(w, float).reshape(problem.depth, problem.dim)
        idle = np.flatnonzero(np.all(np.asarray(problem.signed_data) == 0.0, axis=0) & np.any(W != 0.0, axis=0))
        if idle.size:
            moving = [int(j) for j in range(problem.dim) if j not in idle]
            return (f"collapse: F reached 0 {where}: columns {moving} reached w = 0, columns "
                    f"{[int(j) for j in idle]} (x_j = 0 in every example) never move and keep their "
                    f"weights{tail}")
    return f"collapse: w reached 0 {where}{tail}"
