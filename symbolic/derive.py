"""Derivation of the SAM flows with SymPy: loss -> gradient -> perturbation -> flow.

Following THEORY.md: ``beta_j = prod_l w^{(l)}_j``, margins ``z_i = y_i sum_j x_ij beta_j``,
``L(w) = sum_i l(z_i)``.  The gradient is obtained by SymPy differentiation along the
chain ``L(z) -> z(beta) -> beta(w)``: ``dL/dz_i``, ``dz_i/dbeta_j`` and ``dbeta_j/dw^{(l)}_j``
are each ``sympy.diff`` of the corresponding expression, so nothing is typed in
(:meth:`FlowSystem`-level checks against ``sympy.diff`` of the fully explicit ``L(w)``
are in :func:`check_gradient`).  Differentiating along the chain keeps the margins as
symbols, which is both how a paper writes the result and far cheaper than
differentiating the expanded loss (seconds instead of minutes at ``L = 8, d = 16, n = 8``).

The perturbation is written with the normalised gradient ``F = grad L / S``,
``S = sum_i |l'(z_i)| > 0``: ``rho grad L/||grad L|| = rho F/||F||`` and
``sign(grad L) = sign(F)`` because ``S > 0``, and USAM's ``rho grad L = rho S F``.

>>> s = derive_flow(2, 2, 1, "linf-sam", "exp")
>>> s.perturbation[0][0]
-rho*sign(w_2_1*x_1_1*y_1)
>>> s.flow[0][0]
wt_2_1*x_1_1*y_1*exp(-zt_1)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import sympy as sp

from .algorithms import coordinate_structure, get_algorithm, perturbation_degree
from .coordinate import coordinate_form
from .functions import LOSSES, loss_derivative, loss_function
from .notation import (RHO, Z, data_x, data_y, margin, perturbed, softmax_weight, weight)
from .system import FlowSystem


def _check_shape(depth, dim, n, algorithm, loss) -> tuple:
    for name, value in (("depth", depth), ("dim", dim), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    get_algorithm(algorithm)  # unknown names: one clear error (AlgorithmError is a ValueError)
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    return int(depth), int(dim), int(n), algorithm, loss


def to_number(value: Any) -> sp.Expr:
    """A finite real number as a SymPy number (Integer when integral, else an exact Float).

    Only numbers are accepted -- strings are refused, so user text never reaches SymPy.
    """
    if isinstance(value, (sp.Integer, sp.Float, sp.Rational)):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {v}")
    if v.is_integer() and abs(v) < 2**53:
        return sp.Integer(int(v))
    return sp.Float(v)


def derive_symbolic(depth: int, dim: int, n: int, algorithm: str, loss: str) -> FlowSystem:
    """The flow with symbolic data ``x_{ij}``, ``y_i`` (uncached; use :func:`derive_flow`)."""
    L, d, n, algorithm, loss = _check_shape(depth, dim, n, algorithm, loss)
    W = tuple(tuple(weight(l, j) for j in range(1, d + 1)) for l in range(1, L + 1))
    Wt = tuple(tuple(perturbed(l, j) for j in range(1, d + 1)) for l in range(1, L + 1))
    X = tuple(tuple(data_x(i, j) for j in range(1, d + 1)) for i in range(1, n + 1))
    y = tuple(data_y(i) for i in range(1, n + 1))
    z = tuple(margin(i) for i in range(1, n + 1))
    zt = tuple(margin(i, tilde=True) for i in range(1, n + 1))
    if n == 1:
        # one example: its softmax weight is exactly 1 (q = softmax of one number)
        q, qt = (sp.S.One,), (sp.S.One,)
    else:
        q = tuple(softmax_weight(i) for i in range(1, n + 1))
        qt = tuple(softmax_weight(i, tilde=True) for i in range(1, n + 1))

    # the chain L(z) -> z(beta) -> beta(w), each link differentiated by SymPy
    b = tuple(sp.Symbol(f"b_{j}", real=True) for j in range(1, d + 1))
    beta_w = tuple(sp.Mul(*[W[l][j] for l in range(L)]) for j in range(d))
    z_of_b = tuple(y[i] * sp.Add(*[X[i][j] * b[j] for j in range(d)]) for i in range(n))
    ell = loss_function(loss)
    loss_of_z = sp.Add(*[ell.xreplace({Z: zi}) for zi in z])
    dL_dz = tuple(sp.diff(loss_of_z, zi) for zi in z)                         # l'(z_i)
    dz_db = tuple(tuple(sp.diff(z_of_b[i], b[j]) for j in range(d)) for i in range(n))
    dbeta_dw = tuple(tuple(sp.diff(beta_w[j], W[l][j]) for j in range(d)) for l in range(L))
    # dL/dbeta_j factors out of every layer's gradient (the per-coordinate structure)
    dL_db = tuple(sp.Add(*[dL_dz[i] * dz_db[i][j] for i in range(n)]) for j in range(d))
    gradient = tuple(tuple(dL_db[j] * dbeta_dw[l][j] for j in range(d)) for l in range(L))
    # F = grad L / S: each l'(z_i) = -|l'(z_i)| becomes -q_i
    g_of_q = tuple(-sp.Add(*[q[i] * dz_db[i][j] for i in range(n)]) for j in range(d))
    F = tuple(tuple(g_of_q[j] * dbeta_dw[l][j] for j in range(d)) for l in range(L))

    # the algorithm's one definition, applied to the flat gradient: F = grad L / S where
    # eps is scale-free in the gradient (S cancels exactly), the gradient itself otherwise
    definition = get_algorithm(algorithm)
    G = F if perturbation_degree(definition, L) == 0 else gradient
    flat = definition.evaluate(sp.Matrix([e for row in G for e in row]),
                               sp.Matrix([s for row in W for s in row]), RHO)
    eps = tuple(tuple(flat[l * d + j] for j in range(d)) for l in range(L))
    global_exprs = _explicit_globals(coordinate_structure(definition, L), W, g_of_q)
    wtilde = tuple(tuple(W[l][j] + eps[l][j] for j in range(d)) for l in range(L))

    at_tilde = {**{W[l][j]: Wt[l][j] for l in range(L) for j in range(d)}, **dict(zip(z, zt))}
    flow = tuple(tuple(-gr.xreplace(at_tilde) for gr in row) for row in gradient)
    q_tilde = {**{W[l][j]: Wt[l][j] for l in range(L) for j in range(d)},
               **{a: c for a, c in zip(q, qt) if isinstance(a, sp.Symbol)}}
    rescaled = tuple(tuple(-f.xreplace(q_tilde) for f in row) for row in F)
    speed = sp.Add(*[-loss_derivative(loss, zi) for zi in zt])
    time_change = 1 / speed
    if n == 1:
        time_change = sp.simplify(time_change)
    margin_exprs = tuple(zb.xreplace(dict(zip(b, beta_w))) for zb in z_of_b)
    loss_w = sp.Add(*[ell.xreplace({Z: m}) for m in margin_exprs])
    return FlowSystem(
        depth=L, dim=d, n=n, algorithm=algorithm, loss=loss, weights=W, perturbed=Wt, X=X, y=y,
        rho=RHO, margins=z, perturbed_margins=zt, margin_exprs=margin_exprs, softmax_weights=q,
        perturbed_softmax_weights=qt, loss_function=ell, loss_derivative=loss_derivative(loss),
        loss_expr=loss_w, gradient=gradient, normalised_gradient=F, perturbation=eps,
        perturbed_point=wtilde, flow=flow, rescaled_flow=rescaled, speed=speed,
        time_change=time_change, coordinate=coordinate_form(L, algorithm, loss),
        symbolic_data=True, global_exprs=global_exprs)


def _explicit_globals(structure, W, g_of_q) -> tuple:
    """``(symbol, power, const + sum_j share_j)`` of each global sum, in the explicit system."""
    if structure is None:
        return ()
    from .notation import coupling
    L, d, g = len(W), len(W[0]), coupling(False)
    out = []
    for gs in structure.globals:
        terms = [gs.share.xreplace({g: g_of_q[j], **{weight(l + 1, "j"): W[l][j] for l in range(L)}})
                 for j in range(d)]
        out.append((gs.symbol, gs.power, gs.const + sp.Add(*terms)))
    return tuple(out)


def _replace(expr: sp.Basic, sub: dict, memo: dict) -> sp.Basic:
    """``expr.xreplace(sub)`` remembering shared subtrees.

    The perturbation repeats one large subtree (l2-SAM's norm) in every entry; plain
    ``xreplace`` would rebuild it once per entry, ``L*d`` times.
    """
    hit = memo.get(expr)
    if hit is not None:
        return hit
    if expr in sub:
        out = sub[expr]
    elif not expr.args:
        out = expr
    else:
        args = [_replace(a, sub, memo) for a in expr.args]
        out = expr.func(*args) if any(a is not b for a, b in zip(args, expr.args)) else expr
    memo[expr] = out
    return out


def _substitute(obj, sub, memo):
    if isinstance(obj, tuple):
        return tuple(_substitute(o, sub, memo) for o in obj)
    if isinstance(obj, sp.Basic):
        return _replace(obj, sub, memo)
    return obj


def with_data(system: FlowSystem, X, y, rho: float | None = None) -> FlowSystem:
    """``system`` with its data symbols replaced by the numbers ``X`` (n x d) and ``y``."""
    if not system.symbolic_data:
        raise ValueError("this system already has numeric data")
    raw_X, raw_y = np.asarray(X), np.asarray(y)
    for name, arr in (("X", raw_X), ("y", raw_y)):
        # numbers only: text (even "1.5") is refused rather than parsed
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"data {name}: expected real numbers, got dtype {arr.dtype}")
    Xa = raw_X.astype(float)
    ya = raw_y.astype(float).reshape(-1)
    if Xa.shape != (system.n, system.dim) or ya.shape != (system.n,):
        raise ValueError(f"data shape X {Xa.shape}, y {ya.shape} does not match n={system.n}, d={system.dim}")
    if not (np.all(np.isfinite(Xa)) and np.all(np.isfinite(ya))):
        raise ValueError("data contain NaN or Inf")
    sub = {system.y[i]: to_number(ya[i]) for i in range(system.n)}
    sub.update({system.X[i][j]: to_number(Xa[i, j]) for i in range(system.n) for j in range(system.dim)})
    memo: dict = {}
    changes = {f.name: _substitute(getattr(system, f.name), sub, memo) for f in dataclasses.fields(system)
               if f.name not in ("coordinate", "problem", "rho", "rho_value", "symbolic_data")}
    rho_value = None if rho is None else float(rho)
    if rho_value is not None and not (math.isfinite(rho_value) and rho_value >= 0):
        raise ValueError(f"rho must be a finite number >= 0, got {rho}")
    return dataclasses.replace(system, **changes, symbolic_data=False, rho_value=rho_value)


def derive_flow(depth: int, dim: int, n: int, algorithm: str, loss: str = "exp",
                data=None, rho: float | None = None) -> FlowSystem:
    """Derive the flow of an ``L``-layer diagonal network with ``d`` coordinates, ``n`` examples.

    ``data=None`` keeps symbolic data ``x_{ij}``, ``y_i``; ``data=(X, y)`` substitutes
    numbers (``X`` is ``n x d``).  ``rho`` (a number) is recorded for display and
    compilation; the expressions keep the symbol ``rho``.  The symbolic derivation is
    cached in memory per ``(depth, dim, n, algorithm, loss)`` -- never per data set.

    >>> derive_flow(2, 3, 1, "gd", "exp", data=([[3.0, 2.0, 1.0]], [1])).rescaled_flow[1][0]
    3*wt_1_1
    """
    from .cache import symbolic_flow

    key = _check_shape(depth, dim, n, algorithm, loss)
    system = symbolic_flow(*key)
    if data is None:
        if rho is None:
            return system
        return dataclasses.replace(system, rho_value=float(rho))
    X, y = data
    return with_data(system, X, y, rho=rho)


def derive(problem) -> FlowSystem:
    """The derived flow of a :class:`~sambias.problem.Problem` (its data and ``rho`` as numbers).

    >>> from sambias import Problem, Init
    >>> p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[3.0, 2.0]], y=[1], init=Init(scale=0.2))
    >>> derive(p)
    FlowSystem(L=2, d=2, n=1, l2-sam, exp loss, numeric data)
    """
    rho = float(problem.rho) if problem.algorithm != "gd" else None
    system = derive_flow(problem.depth, problem.dim, problem.n, problem.algorithm, problem.loss,
                         data=(problem.X, problem.y), rho=rho)
    return dataclasses.replace(system, problem=problem)


def check_gradient(system: FlowSystem) -> bool:
    """Whether ``system.gradient`` equals ``sympy.diff`` of the explicit loss ``L(w)``.

    Differentiates the expanded loss directly (slow for large systems: meant for tests)
    and compares after substituting the margins back.
    """
    sub = dict(zip(system.margins, system.margin_exprs))
    for l, row in enumerate(system.gradient):
        for j, gr in enumerate(row):
            direct = sp.diff(system.loss_expr, system.weights[l][j])
            if sp.expand(direct - gr.xreplace(sub)) != 0:
                return False
    return True
