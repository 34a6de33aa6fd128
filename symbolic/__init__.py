"""Symbolic derivation of the SAM flows on L-layer linear diagonal networks (SymPy).

* :class:`Algorithm` / :func:`register_algorithm`: each algorithm is one definition, its
  perturbation ``eps(g, w, rho)`` as SymPy (built in: gd, l2-sam, linf-sam, usam, asam; user
  ones from Python or the entry-point group ``sambias.algorithms``);

* :func:`derive` / :func:`derive_flow` -> :class:`FlowSystem` (loss, gradient, perturbation,
  perturbed point, physical and rescaled-time flow; reductions and invariants);
* :meth:`FlowSystem.to_latex` / :meth:`FlowSystem.to_text` render it;
* :meth:`FlowSystem.compile` turns it into a :class:`GeneratedField` (float64 or mpmath),
  a drop-in replacement for :class:`sambias.flows.field.NumpyField`.

>>> from sambias import Problem, Init
>>> p = Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=1.0))
>>> system = derive(p)
>>> [r.name for r in system.reductions]
['pq', 'balanced']
>>> system.compile().rescaled([1.0, 1.0, 1.0, 1.0])[0]
array([1.5, 1. , 1.5, 1. ])
"""

from .algorithms import (Algorithm, AlgorithmError, algorithm_names, get_algorithm, register_algorithm,
                         unregister_algorithm)
from .cache import clear_caches
from .codegen import generate_kernels
from .coordinate import CoordinateForm, coordinate_form
from .derive import check_gradient, derive, derive_flow
from .generated import CollapseError, GeneratedField
from .invariants import Invariant
from .latex import standalone_document
from .reductions import Reduction
from .system import FlowSystem

__all__ = ["Algorithm", "AlgorithmError", "algorithm_names", "get_algorithm", "register_algorithm",
           "unregister_algorithm", "CollapseError", "CoordinateForm", "FlowSystem", "GeneratedField", "Invariant", "Reduction",
           "check_gradient", "clear_caches", "coordinate_form", "derive", "derive_flow",
           "generate_kernels", "standalone_document"]
