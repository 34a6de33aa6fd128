"""Simulation of SAM flows: vector fields, integrators and trajectories."""
from .field import NumpyField
from .trajectory import DominantSwitch, Trajectory
