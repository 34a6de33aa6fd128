"""Simulation of SAM flows: vector fields, integrators and trajectories.

* :func:`simulate` -- the flow to a (possibly astronomically long) horizon, float64 in log
  time or mpmath (``precision="mp:DIGITS"``);
* :func:`iterate` -- the discrete algorithm ``w <- w - eta grad L(w + eps(w))``;
* :class:`NumpyField` -- the reference vector fields; :class:`Trajectory` -- the result.
"""
from .field import NumpyField
from .trajectory import DominantSwitch, Trajectory
from .integrate import simulate
from .discrete import iterate

__all__ = ["NumpyField", "DominantSwitch", "Trajectory", "simulate", "iterate"]
