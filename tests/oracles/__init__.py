"""Independent oracles for the tests: hand-written implementations the toolkit's derived
engine is checked against (they are no part of the package).

* :mod:`tests.oracles.field` -- :class:`NumpyField`, the SAM vector fields written out in
  numpy from THEORY.md (the float64 engine before issue 9 derived its kernels).
"""
