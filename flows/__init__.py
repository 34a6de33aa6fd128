"""Simulation of SAM flows: vector fields, integrators and trajectories.

* :func:`simulate` -- the flow to a (possibly astronomically long) horizon, float64 in log
  time or mpmath (``precision="mp:DIGITS"``);
* :func:`simulate_ensemble` -- many instances of one shape as one batch (sweeps);
* :func:`iterate` -- the discrete algorithm ``w <- w - eta grad L(w + eps(w))``;
* :class:`Trajectory` -- the result.  The vector fields are derived and compiled by
  :mod:`sambias.symbolic` (``GeneratedField``); flows/ integrates them.
"""
from .trajectory import DominantSwitch, Trajectory
from .integrate import simulate
from .discrete import iterate
from .ensemble import simulate_ensemble

__all__ = ["DominantSwitch", "Trajectory", "simulate", "iterate", "simulate_ensemble"]
