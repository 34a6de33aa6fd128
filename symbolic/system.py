"""``FlowSystem``: the derived SAM flow of one (depth, d, n, algorithm, loss).

A frozen record of symbols and SymPy expressions (built by
:func:`sambias.symbolic.derive.derive_flow`), with renderings (:meth:`FlowSystem.to_latex`,
:meth:`FlowSystem.to_text`), the d-independent generic-coordinate form used for code
generation (:attr:`FlowSystem.coordinate`), reductions and invariants (computed on
first access), and :meth:`FlowSystem.compile` to a vector field.

Index conventions: layer ``l = 1..L``, coordinate ``j = 1..d``, example ``i = 1..n``
(1-based, as printed); ``weights[l-1][j-1]`` is ``w^{(l)}_j``, and a compiled field's flat
state has ``w^{(l)}_j`` at position ``(l-1)*d + (j-1)``.

>>> from sambias.symbolic import derive_flow
>>> s = derive_flow(2, 2, 1, "gd", "exp")
>>> s.rescaled_flow[0][0]          # dw^{(1)}_1/dtau = y_1 x_11 wt^{(2)}_1
wt_2_1*x_1_1*y_1
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from .coordinate import CoordinateForm
from .notation import NORM, RHO, Z


@dataclass(frozen=True, eq=False)
class FlowSystem:
    """The SAM flow ``dw/dt = -grad L(w + eps(w))`` of one problem shape, derived by SymPy.

    Fields (all SymPy objects unless said otherwise):

    * ``weights`` / ``perturbed``: ``L x d`` symbols ``w^{(l)}_j`` and ``w~^{(l)}_j``;
    * ``X`` (``n x d``), ``y`` (``n``): data symbols ``x_{ij}``, ``y_i`` -- or numbers;
    * ``margins`` / ``perturbed_margins``: symbols ``z_i``, ``z~_i``;
      ``margin_exprs``: ``z_i = y_i sum_j x_ij prod_l w^{(l)}_j``;
    * ``loss_function`` ``l(z)``, ``loss_derivative`` ``l'(z)``; ``loss``: ``L(w)`` explicit;
    * ``gradient``: ``dL/dw^{(l)}_j`` (SymPy chain rule through margins and ``beta``, in
      ``w`` and ``z``); ``normalised_gradient``: ``F = grad L / S`` in ``w`` and the
      softmax weights ``q_i`` (``= 1`` for one example);
    * ``perturbation``: ``eps^{(l)}_j`` (in ``w``, ``q`` and, for USAM, ``z``);
      ``perturbed_point``: ``w + eps``;
    * ``flow``: ``dw/dt = -dL/dw`` at ``w~`` (in ``w~``, ``z~``);
    * ``rescaled_flow``: ``dw/dtau`` with ``dtau = sum_i |l'(z~_i)| dt`` (in ``w~``, ``q~``;
      loss-free for one example); ``speed``: ``dtau/dt``; ``time_change``: ``dt/dtau``;
    * ``coordinate``: the :class:`~sambias.symbolic.coordinate.CoordinateForm`;
    * ``rho_value``, ``problem``: the numbers this system was derived for, if any.
    """

    depth: int
    dim: int
    n: int
    algorithm: str
    loss: str
    weights: tuple
    perturbed: tuple
    X: tuple
    y: tuple
    rho: sp.Symbol
    margins: tuple
    perturbed_margins: tuple
    margin_exprs: tuple
    softmax_weights: tuple
    perturbed_softmax_weights: tuple
    loss_function: sp.Expr
    loss_derivative: sp.Expr
    loss_expr: sp.Expr
    gradient: tuple
    normalised_gradient: tuple
    perturbation: tuple
    perturbed_point: tuple
    flow: tuple
    rescaled_flow: tuple
    speed: sp.Expr
    time_change: sp.Expr
    coordinate: CoordinateForm
    symbolic_data: bool = True
    #: ``(symbol, power, explicit sum)``: each global scalar of the perturbation (``symbol**power = sum``)
    global_exprs: tuple = ()
    rho_value: float | None = None
    problem: Any = field(default=None, repr=False)

    # --- small helpers ---------------------------------------------------------------------
    @property
    def key(self) -> tuple:
        """``(depth, dim, n, algorithm, loss)`` -- what the derivation depends on."""
        return (self.depth, self.dim, self.n, self.algorithm, self.loss)

    @property
    def state(self) -> tuple:
        """The state symbols, flat and layer-major (the order compiled fields use)."""
        return tuple(s for row in self.weights for s in row)

    @property
    def norm(self) -> sp.Expr | None:
        """The perturbation's norm ``N`` as an expression (l2-SAM: ``||F(w)||_2``; ASAM:
        ``||T F(w)||_2``; ``None`` when it has none)."""
        for sym, power, expr in self.global_exprs:
            if sym == NORM and power == 2:
                return sp.sqrt(expr)
        return None

    @property
    def definition(self):
        """The :class:`~sambias.symbolic.algorithms.Algorithm` this system was derived for."""
        return self.coordinate.definition

    def explicit_perturbed_margins(self) -> tuple:
        """``z~_i`` as expressions in ``w~``."""
        sub = dict(zip(self.state, (s for row in self.perturbed for s in row)))
        return tuple(z.xreplace(sub) for z in self.margin_exprs)

    def __repr__(self) -> str:
        data = "symbolic data" if self.symbolic_data else "numeric data"
        return (f"FlowSystem(L={self.depth}, d={self.dim}, n={self.n}, {self.algorithm}, "
                f"{self.loss} loss, {data})")

    # --- derived knowledge (computed on first use) ------------------------------------------
    @functools.cached_property
    def invariants(self) -> tuple:
        """Conserved / monotone quantities, each proved by SymPy (see :mod:`.invariants`)."""
        from .invariants import invariants_for
        return invariants_for(self)

    @functools.cached_property
    def reductions(self) -> tuple:
        """Reductions of the flow that apply to this system (see :mod:`.reductions`)."""
        from .reductions import reductions_for
        return reductions_for(self)

    # --- renderings ---------------------------------------------------------------------------
    def to_latex(self, standalone: bool = False) -> str:
        """An ``align`` block of the equations (``standalone``: a complete document).

        >>> from sambias.symbolic import derive_flow
        >>> "\\\\begin{align}" in derive_flow(1, 1, 1, "gd", "exp").to_latex()
        True
        """
        from .latex import standalone_document, system_latex
        return standalone_document([self]) if standalone else system_latex(self)

    def _repr_latex_(self) -> str:
        from .latex import system_latex
        return system_latex(self, jupyter=True)

    def to_text(self) -> str:
        """A plain-text (unicode) rendering for the terminal."""
        from .text import system_text
        return system_text(self)

    # --- code -----------------------------------------------------------------------------------
    def compile(self, backend: str = "float64", problem=None):
        """A :class:`~sambias.symbolic.generated.GeneratedField` for ``problem``.

        ``problem`` defaults to the one this system was derived from; its shape must
        match the system.  The kernels are generated from :attr:`coordinate` and
        cached per ``(depth, algorithm, loss, backend)``.
        """
        from .generated import GeneratedField
        problem = problem if problem is not None else self.problem
        if problem is None:
            raise ValueError("compile() needs a Problem: derive(problem), or pass problem=")
        got = (problem.depth, problem.dim, problem.n, problem.algorithm, problem.loss)
        if got != self.key:
            raise ValueError(f"problem shape {got} does not match the derived system {self.key}")
        return GeneratedField(problem, backend=backend)

    # --- evaluation of the symbolic expressions (for checks) -------------------------------------
    def evaluate(self, w, X=None, y=None, rho=None, sigma=None, dps: int = 30) -> dict:
        """Evaluate the *symbolic* expressions at a point, in SymPy arithmetic.

        An independent path to the numbers a compiled field computes (used by the tests):
        returns ``{"perturbation", "perturbed_point", "flow", "rescaled", "log_speed"}`` as
        flat lists of ``sympy.Float`` (``dps`` digits).  ``X``, ``y``, ``rho`` default to the
        system's numbers; ``sigma`` replaces linf-SAM's signs.
        """
        from .derive import to_number
        prec = dps
        num = lambda v: sp.Float(float(v), prec) if not isinstance(v, sp.Basic) else v  # noqa: E731
        sub: dict = {}
        if self.symbolic_data:
            if X is None or y is None:
                raise ValueError("this system has symbolic data: give X and y")
            for i in range(self.n):
                sub[self.y[i]] = to_number(y[i])
                for j in range(self.dim):
                    sub[self.X[i][j]] = to_number(X[i][j])
        r = rho if rho is not None else (self.rho_value if self.rho_value is not None else 0.0)
        sub[RHO] = num(r)
        flat = [num(v) for v in w]
        wsub = dict(zip(self.state, flat))

        def ev(expr, extra):
            return expr.xreplace({**sub, **extra}).evalf(prec)

        def softmax(z_vals, tilde):
            lam = [ev(-self.loss_derivative, {Z: z}) for z in z_vals]
            total = sp.Add(*lam)
            syms = self.perturbed_softmax_weights if tilde else self.softmax_weights
            return {s: l / total for s, l in zip(syms, lam) if isinstance(s, sp.Symbol)}, total

        z_vals = [ev(z, wsub) for z in self.margin_exprs]
        qsub, _ = softmax(z_vals, False)
        zsub = dict(zip(self.margins, z_vals))
        if self.coordinate.discontinuous and sigma is not None:
            # sigma stands for sign(F): the switching values replace the signs of the gradient
            F = [f for row in self.normalised_gradient for f in row]
            signs = {sp.sign(f): num(s) for f, s in zip(F, sigma)}
            eps = [ev(e.xreplace(signs), {**wsub, **qsub, **zsub}) for row in self.perturbation for e in row]
        else:
            eps = [ev(e, {**wsub, **qsub, **zsub}) for row in self.perturbation for e in row]
        wt = [a + b for a, b in zip(flat, eps)]
        wtsub = dict(zip((s for row in self.perturbed for s in row), wt))
        zt_vals = [ev(z, dict(zip(self.state, wt))) for z in self.margin_exprs]
        qtsub, S_t = softmax(zt_vals, True)
        ztsub = dict(zip(self.perturbed_margins, zt_vals))
        flow = [ev(e, {**wtsub, **ztsub}) for row in self.flow for e in row]
        resc = [ev(e, {**wtsub, **qtsub}) for row in self.rescaled_flow for e in row]
        return {"perturbation": eps, "perturbed_point": wt, "flow": flow, "rescaled": resc,
                "log_speed": sp.log(S_t).evalf(prec)}
