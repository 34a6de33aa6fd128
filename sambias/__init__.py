"""sambias: check theorems about the implicit bias of SAM numerically.

>>> from sambias import load_problem
>>> load_problem("example:gd-depth2").depth
2
"""

from pathlib import Path as _Path

# In a source checkout the subpackages live beside this folder (setup.cfg maps them with
# package_dir).  When Python imports this folder straight from the checkout -- `python -c`
# or `python -m pytest` run in the repository root -- let `sambias.flows` etc. resolve to
# those folders too, so the checkout behaves like the installed package.
_root = _Path(__file__).resolve().parent.parent
if (_root / "setup.cfg").is_file() and (_root / "flows" / "__init__.py").is_file():
    __path__.append(str(_root))  # noqa: F821 - __path__ is defined for packages
del _Path, _root

from .errors import ProblemError, SambiasError, SimulationError  # noqa: E402
from .problem import Init, Problem, load_problem  # noqa: E402


def register_algorithm(algorithm):
    """Register a :class:`sambias.symbolic.Algorithm` so problems can name it (see its docs).

    >>> import sympy as sp
    >>> from sambias.symbolic import Algorithm
    >>> _ = register_algorithm(Algorithm("doc-half-l2", lambda g, w, rho: (rho / 2) * g / sp.sqrt((g.T * g)[0, 0])))
    >>> Problem(depth=2, algorithm="doc-half-l2", rho=0.5, X=[[3.0, 1.0]], y=[1], init=Init(scale=0.2)).algorithm
    'doc-half-l2'
    >>> from sambias.symbolic import unregister_algorithm; unregister_algorithm("doc-half-l2")
    """
    from .symbolic.algorithms import register_algorithm as _register
    return _register(algorithm)


__all__ = ["Init", "Problem", "ProblemError", "SambiasError", "SimulationError", "load_problem",
           "register_algorithm"]
