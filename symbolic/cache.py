"""In-memory caches of derived systems (no pickle, no disk).

Derivations are keyed on the problem *shape* ``(depth, dim, n, algorithm, loss)`` --
never on the data, so every data set of one shape shares one symbolic derivation (and
the generated kernels are shared further still, per ``(depth, algorithm, loss)``).

>>> symbolic_flow(1, 1, 1, "gd", "exp") is symbolic_flow(1, 1, 1, "gd", "exp")
True
"""

from __future__ import annotations

import functools

from .system import FlowSystem


@functools.lru_cache(maxsize=128)
def symbolic_flow(depth: int, dim: int, n: int, algorithm: str, loss: str) -> FlowSystem:
    """The symbolic-data derivation of one shape (cached)."""
    from .derive import derive_symbolic
    return derive_symbolic(depth, dim, n, algorithm, loss)


def clear_caches() -> None:
    """Forget every cached derivation, coordinate form and generated kernel set."""
    from .algorithms import coordinate_structure, perturbation_degree
    from .codegen import generate_flat_kernels, generate_kernels
    from .coordinate import coordinate_form
    from .invariants import coordinate_invariants
    from .reductions import symbolic_reductions

    for cached in (symbolic_flow, coordinate_form, generate_kernels, coordinate_invariants,
                   symbolic_reductions, generate_flat_kernels, coordinate_structure, perturbation_degree):
        cached.cache_clear()
