"""The flow of one generic coordinate ``j`` -- the same formula for every coordinate.

For a diagonal network the loss depends on coordinate ``j``'s weights only through
``beta_j = prod_l w^{(l)}_j``, and every example enters coordinate ``j`` through
``y_i x_ij``.  So

    dL/dw^{(l)}_j = (sum_i l'(z_i) y_i x_ij) * d beta_j / d w^{(l)}_j = S g_j P^{(l)}_j

with ``S = sum_i |l'(z_i)|``, ``g_j = -sum_i q_i y_i x_ij`` and ``q = softmax(log|l'(z)|)``.
:func:`coordinate_form` derives this factorisation with SymPy (differentiating one
example's loss ``l(r + a beta_j)`` and showing the quotient by ``a l'`` is free of the
data), then builds the perturbation, the perturbed point and the loss-free flow of a
generic coordinate in terms of the *couplings*: the per-coordinate ``g_j`` (at ``w``
and at ``w~``) and the global scalars of the algorithm's perturbation (``N = ||F(w)||``
for l2-SAM, ``N = ||T F(w)||`` for ASAM, ``S`` for USAM), all read off the algorithm's one
definition (:mod:`~sambias.symbolic.algorithms`).  A perturbation without that structure
has ``perturbation = None`` here and runs on the general flat path.
Everything here is independent of ``d`` and ``n``; the data enter only through the
couplings.  This is what :mod:`~sambias.symbolic.codegen` turns into code vectorised
over coordinates.

>>> cf = coordinate_form(2, "linf-sam", "exp")
>>> cf.perturbed_point
(rho*sigma_1_j + w_1_j, rho*sigma_2_j + w_2_j)
>>> cf.rescaled
(-gt_j*wt_2_j, -gt_j*wt_1_j)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sympy as sp

from .algorithms import coordinate_structure, get_algorithm
from .functions import dlog_abs_loss_derivative, log_abs_loss_derivative, loss_function
from .notation import SPEED, Z, coupling, perturbed, switching, weight

#: the built-in algorithms' names (user algorithms: :func:`~sambias.symbolic.algorithms.register_algorithm`)
ALGORITHMS = ("gd", "l2-sam", "linf-sam", "usam", "asam")


@dataclass(frozen=True, eq=False)
class CoordinateForm:
    """Symbolic flow of a generic coordinate ``j`` (see the module docstring).

    ``w``/``wt``: the coordinate's weights at ``w`` and at the perturbed point;
    ``g``/``gt``: couplings ``g_j`` at ``w`` and ``w~``; ``sigma``: linf-SAM's signs.
    ``beta``, ``P`` (``d beta/d w^{(l)}``), ``F`` (normalised gradient ``g P``),
    ``norm_share`` (this coordinate's ``sum_l F_l^2``, whose sum over ``j`` is ``N^2``),
    ``perturbation`` and ``perturbed_point`` are expressions in ``w, g, sigma, rho`` and the
    global scalars (``None`` when the perturbation is not coordinate-wise: general path);
    ``rescaled`` (``dw/dtau = -gt P(wt)``) is an expression in ``wt, gt``.
    ``phi``/``dphi`` are ``log|l'(z)|`` and its derivative, in ``z``; ``definition`` is the
    :class:`~sambias.symbolic.algorithms.Algorithm`, ``structure`` its coordinate structure.
    """

    depth: int
    algorithm: str
    loss: str
    w: tuple
    wt: tuple
    g: sp.Symbol
    gt: sp.Symbol
    sigma: tuple
    beta: sp.Expr
    P: tuple
    F: tuple
    norm_share: sp.Expr
    perturbation: tuple
    perturbed_point: tuple
    beta_t: sp.Expr
    rescaled: tuple
    phi: sp.Expr
    dphi: sp.Expr
    definition: Any = None
    structure: Any = None

    @property
    def coordinatewise(self) -> bool:
        """Whether the perturbation has the generic-coordinate structure (fast kernels)."""
        return self.perturbation is not None

    @property
    def discontinuous(self) -> bool:
        """Whether the perturbation uses ``sign`` of the gradient (switching functions ``F``)."""
        return bool(self.definition is not None and self.definition.discontinuous)

    @property
    def global_sums(self) -> tuple:
        """The :class:`~sambias.symbolic.algorithms.GlobalSum` scalars of the perturbation."""
        return self.structure.globals if self.structure is not None else ()

    @property
    def globals(self) -> tuple:
        """The global scalar couplings the perturbation depends on (its sums, then ``S``)."""
        if self.perturbation is None:
            return ()
        free = set().union(*(e.free_symbols for e in self.perturbation),
                           *(gs.share.free_symbols for gs in self.global_sums))
        return tuple(gs.symbol for gs in self.global_sums) + ((SPEED,) if SPEED in free else ())

    def flow_in_w(self) -> tuple:
        """``dw/dtau`` with ``w~`` replaced by ``w + eps(w)`` (``gt`` kept as a coupling)."""
        if self.perturbed_point is None:
            raise ValueError(f"{self.algorithm}: the perturbation is not coordinate-wise")
        sub = dict(zip(self.wt, self.perturbed_point))
        return tuple(e.xreplace(sub) for e in self.rescaled)


def gradient_factor(depth: int, loss: str) -> tuple:
    """``P^{(l)} = dL/dw^{(l)}_j / (l'(z) y x_j)`` for one example, by SymPy.

    Differentiates ``l(r + a beta_j(w))`` (``a = y x_j``, ``r`` the rest of the margin)
    and divides by ``a dl/dr``; raises if the quotient still depends on ``a`` or ``r``
    -- that would break the per-coordinate structure everything else relies on.
    """
    w = tuple(weight(l, "j") for l in range(1, depth + 1))
    a, r = sp.symbols("a r", real=True)
    beta = sp.Mul(*w)
    one_example = loss_function(loss).xreplace({Z: r + a * beta})
    dl_dr = sp.diff(one_example, r)
    out = []
    for wl in w:
        quotient = sp.cancel(sp.diff(one_example, wl) / (a * dl_dr))
        if quotient.has(a) or quotient.has(r):
            raise AssertionError(f"gradient of coordinate j does not factor: {quotient}")
        if sp.expand(quotient - sp.diff(beta, wl)) != 0:
            raise AssertionError("gradient factor is not d beta / d w")
        out.append(quotient)
    return tuple(out)


@functools.lru_cache(maxsize=None)
def coordinate_form(depth: int, algorithm: str, loss: str) -> CoordinateForm:
    """Derive the :class:`CoordinateForm` of ``(depth, algorithm, loss)`` (cached)."""
    if isinstance(depth, bool) or int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    definition = get_algorithm(algorithm)
    L = int(depth)
    w = tuple(weight(l, "j") for l in range(1, L + 1))
    wt = tuple(perturbed(l, "j") for l in range(1, L + 1))
    sigma = tuple(switching(l, "j") for l in range(1, L + 1))
    g, gt = coupling(False), coupling(True)
    beta = sp.Mul(*w)
    P = gradient_factor(L, loss)
    F = tuple(g * p for p in P)
    norm_share = sp.Add(*[f**2 for f in F])
    structure = coordinate_structure(definition, L)
    if structure is None:
        eps = wtilde = None
    else:
        eps = structure.perturbation
        wtilde = tuple(wl + e for wl, e in zip(w, eps))
    beta_t = beta.xreplace(dict(zip(w, wt)))
    rescaled = tuple(-gt * p.xreplace(dict(zip(w, wt))) for p in P)
    return CoordinateForm(depth=L, algorithm=algorithm, loss=loss, w=w, wt=wt, g=g, gt=gt,
                          sigma=sigma, beta=beta, P=P, F=F, norm_share=norm_share,
                          perturbation=eps, perturbed_point=wtilde, beta_t=beta_t,
                          rescaled=rescaled, phi=log_abs_loss_derivative(loss),
                          dphi=dlog_abs_loss_derivative(loss), definition=definition, structure=structure)
