"""Reductions of the one-example flows, obtained by substitution and checked by SymPy.

THEORY.md's one-example derivations (``y = +1``, ``x_j > 0``, positive weights):

* **pq** (``L = 2``; GD and linf-SAM): ``p_j = u_j + v_j``, ``q_j = u_j - v_j`` decouple,
  ``dp_j/dtau = x_j (p_j - 2 rho)``, ``dq_j/dtau = -x_j q_j`` for linf-SAM (``rho = 0``: GD);
* **balanced** (``L >= 2``; every algorithm): on ``w^{(1)}_j = ... = w^{(L)}_j = a_j`` the flow
  stays balanced and reduces to one equation per coordinate -- for l2-SAM at ``L = 2``
  THEORY's ``da_j/dtau = x_j a_j (1 - rho x_j / N)``; for linf-SAM
  ``da_j/dtau = x_j (a_j - rho)^{L-1}`` (the ODE behind Thm 3.2 / Cor 3.5).

Each reduction is derived from the generic-coordinate form by substitution and
``cancel``/``factor`` (``xpos_j`` is the positive data value ``x_j``, printed ``x_j``); then (1) the invariance of the reduced manifold, (2) agreement with the
*full explicit* flow of the system (every coordinate when ``d <= 8``, else coordinates
``1, 2, d``) and (3) agreement with THEORY's stated form, where there is one, are each
checked by SymPy and recorded.

>>> r = symbolic_reductions(2, 3, "linf-sam", "exp")[0]
>>> r.name, r.equations[0][1], r.matches_flow, r.matches_claim
('pq', xpos_j*(p_j - 2*rho), True, True)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from .functions import loss_derivative
from .notation import NORM, RHO, SPEED, Z, coordinate_variable
from .text import text_expr


def _title(name: str, latex: bool = False) -> str:
    from .latex import algorithm_title
    return algorithm_title(name, latex)


@dataclass(frozen=True)
class Reduction:
    """A reduced form of the flow, valid under ``assumptions``.

    ``variables``: ``(new symbol, definition)`` pairs; ``equations``: ``(symbol, d symbol/dtau)``;
    ``auxiliary``: definitions the equations use (e.g. ``N``); ``claimed``: THEORY.md's form of
    the right-hand sides (or ``None``); ``matches_claim``, ``matches_flow``,
    ``manifold_invariant``: the SymPy checks; ``checked_coordinates``: the coordinates of the
    explicit system the reduction was compared on (1-based).
    """

    name: str
    title: str
    assumptions: str
    title_latex: str
    assumptions_latex: str
    variables: tuple
    equations: tuple
    auxiliary: tuple
    claimed: tuple | None
    matches_claim: bool | None
    matches_flow: bool
    manifold_invariant: bool
    checked_coordinates: tuple

    @property
    def verified(self) -> bool:
        """All the checks that apply passed."""
        return self.matches_flow and self.manifold_invariant and self.matches_claim is not False

    def to_text(self) -> str:
        lines = [f"{self.title} — {self.assumptions}"]
        for sym, expr in self.variables:
            lines.append(f"  {text_expr(sym)} = {text_expr(expr)}")
        for sym, rhs in self.equations:
            lines.append(f"  d{text_expr(sym)}/dτ = {text_expr(rhs)}")
        for sym, expr in self.auxiliary:
            lines.append(f"  where {text_expr(sym)} = {text_expr(expr)}")
        checks = [f"equals the full flow (SymPy; coordinates {', '.join(map(str, self.checked_coordinates))})"
                  if self.matches_flow else "DOES NOT match the full flow"]
        if self.claimed is not None:
            checks.append("matches THEORY.md" if self.matches_claim else "DOES NOT match THEORY.md")
        lines.append("  checked: " + "; ".join(checks))
        return "\n".join(lines)


def _zero(expr) -> bool:
    """Whether SymPy proves ``expr == 0`` (expand, then cancel as a rational function of
    its atoms -- ``sqrt``/``exp`` subtrees act as generators; ``simplify`` only when small)."""
    expr = sp.expand(expr)
    if expr == 0:
        return True
    if sp.cancel(sp.together(expr)) == 0:
        return True
    return sp.count_ops(expr) < 400 and sp.simplify(expr) == 0


def _coords(d: int) -> tuple:
    return tuple(range(1, d + 1)) if d <= 8 else tuple(sorted({1, 2, d}))


def _explicit_setting(system, xpos):
    """Substitution making the explicit symbolic system one example, ``y = 1``, ``x_j > 0``."""
    sub = {system.y[0]: sp.S.One}
    sub.update({system.X[0][j]: xpos[j] for j in range(system.dim)})
    return sub


def _explicit_rescaled_in_w(system) -> tuple:
    """``dw/dtau`` of the explicit system with ``w~`` replaced by ``w + eps(w)``."""
    sub = {system.perturbed[l][j]: system.perturbed_point[l][j]
           for l in range(system.depth) for j in range(system.dim)}
    return tuple(tuple(e.xreplace(sub) for e in row) for row in system.rescaled_flow)


def _pq(system) -> Reduction:
    L, d, cf = system.depth, system.dim, system.coordinate
    x = coordinate_variable("xpos")
    p, q = coordinate_variable("p"), coordinate_variable("q")
    u, v = sp.symbols("u_j v_j", positive=True)
    # generic coordinate, one example: g = g~ = -y x_j = -x_j; positive weights fix the signs
    sub = {cf.g: -x, cf.gt: -x, cf.w[0]: u, cf.w[1]: v}
    sub.update({s: sp.sign(f.xreplace(sub)) for s, f in zip(cf.sigma, cf.F)})
    du, dv = (sp.cancel(e.xreplace(sub)) for e in cf.flow_in_w())
    back = {u: (p + q) / 2, v: (p - q) / 2}
    dp = sp.factor(sp.expand((du + dv).xreplace(back)))
    dq = sp.factor(sp.expand((du - dv).xreplace(back)))
    shift = 2 * RHO if system.algorithm == "linf-sam" else 0
    claimed = (x * (p - shift), -x * q)
    matches_claim = _zero(dp - claimed[0]) and _zero(dq - claimed[1])
    # the full explicit flow, coordinate by coordinate
    xs = tuple(sp.Symbol(f"xpos_{j}", positive=True) for j in range(1, d + 1))
    U = tuple(sp.Symbol(f"u_{j}", positive=True) for j in range(1, d + 1))
    V = tuple(sp.Symbol(f"v_{j}", positive=True) for j in range(1, d + 1))
    esub = _explicit_setting(system, xs)
    esub.update({system.weights[0][j]: U[j] for j in range(d)})
    esub.update({system.weights[1][j]: V[j] for j in range(d)})
    full = _explicit_rescaled_in_w(system)
    coords = _coords(d)
    ok = True
    for j in coords:
        k = j - 1
        red = {x: xs[k], u: U[k], v: V[k]}
        ok &= _zero(full[0][k].xreplace(esub) - du.xreplace(red))
        ok &= _zero(full[1][k].xreplace(esub) - dv.xreplace(red))
    name = _title(system.algorithm)
    return Reduction(
        name="pq", title=f"{name}, L = 2, one example: p = u + v, q = u − v",
        assumptions="n = 1, y = +1, x_j > 0, u_j, v_j > 0 (positive orthant); u = w⁽¹⁾, v = w⁽²⁾",
        title_latex=rf"{_title(system.algorithm, True)}, $L = 2$, one example: $p = u + v$, $q = u - v$",
        assumptions_latex=r"$n = 1$, $y = +1$, $x_j > 0$, $u_j, v_j > 0$ (positive orthant); "
                          r"$u = w^{(1)}$, $v = w^{(2)}$",
        variables=((p, cf.w[0] + cf.w[1]), (q, cf.w[0] - cf.w[1])),
        equations=((p, dp), (q, dq)), auxiliary=(), claimed=claimed, matches_claim=matches_claim,
        matches_flow=bool(ok), manifold_invariant=True, checked_coordinates=coords)


def _balanced(system) -> Reduction:
    L, d, cf, alg = system.depth, system.dim, system.coordinate, system.algorithm
    x, a = coordinate_variable("xpos"), sp.Symbol("a_j", positive=True)
    sub = {cf.g: -x, cf.gt: -x}
    sub.update({wl: a for wl in cf.w})
    sub.update({s: sp.sign(f.xreplace(sub)) for s, f in zip(cf.sigma, cf.F)})
    rhs = [sp.cancel(e.xreplace(sub)) for e in cf.flow_in_w()]
    invariant = all(_zero(r - rhs[0]) for r in rhs[1:])
    da = sp.factor(rhs[0])
    # the couplings of the explicit system on the balanced manifold
    xs = tuple(sp.Symbol(f"xpos_{j}", positive=True) for j in range(1, d + 1))
    As = tuple(sp.Symbol(f"a_{j}", positive=True) for j in range(1, d + 1))
    esub = _explicit_setting(system, xs)
    esub.update({system.weights[l][j]: As[j] for l in range(L) for j in range(d)})
    aux, atoms, defs_ok = (), {}, True
    k_sym = sp.Symbol("k", integer=True, positive=True)
    d_sym = sp.Symbol("d", integer=True, positive=True)
    # display-only: the k-th coordinate's data and weight inside a sum over coordinates
    x_k, a_k = sp.Symbol("x_k", positive=True), sp.Symbol("a_k", positive=True)
    for (sym, power, total), gs in zip(system.global_exprs, cf.global_sums):
        # compare with each global sum as its symbol (the same subtree in every entry), and
        # check its value once: e.g. l2-SAM's (sum of squares)^(+-1/2) -> N^2 (N > 0)
        atoms[total] = sym**power
        share = sp.factor(gs.share.xreplace({cf.g: -x, **{wl: a for wl in cf.w}}))
        coeff, rest = share.as_coeff_Mul()
        value = coeff * sp.Sum(rest.xreplace({x: x_k, a: a_k}), (k_sym, 1, d_sym)) + gs.const
        aux += ((sym, value ** sp.Rational(1, power)),)
        explicit = sp.Add(*[share.xreplace({x: xs[k], a: As[k]}) for k in range(d)]) + gs.const
        defs_ok = defs_ok and _zero(total.xreplace(esub) - explicit)
    if SPEED in cf.globals:
        # USAM's explicit perturbation is rho grad L = -rho |l'(z_1)| y x_j P: S is |l'(z_1)|
        lam = -loss_derivative(system.loss, Z)
        e_atom = sp.exp(-system.margins[0])
        lam_z = lam.xreplace({Z: system.margins[0]})
        # |l'(z_1)| is a function of e^{-z_1} alone; map e^{-z_1} (and 1 + e^{-z_1}, which the
        # logistic loss carries whole) so that |l'(z_1)| collapses to S without any cancel
        T = sp.Dummy("T", positive=True)  # T = 1/(1 - S): then 1 + S T = T
        candidates = [{e_atom: SPEED * T, 1 + e_atom: T}]
        E = sp.Dummy("E", positive=True)
        candidates += [{e_atom: sol} for sol in sp.solve(sp.Eq(lam_z.xreplace({e_atom: E}), SPEED), E)]
        atoms.update(next((c for c in candidates if lam_z.xreplace(c) == SPEED), candidates[-1]))
        z1 = sp.Symbol("z_1", real=True)
        aux += ((SPEED, lam.xreplace({Z: z1})), (z1, sp.Sum(x_k * a_k**L, (k_sym, 1, d_sym))))
        defs_ok = defs_ok and _zero(system.margin_exprs[0].xreplace(esub) - sp.Add(*[xs[k] * As[k]**L for k in range(d)]))
    full = _explicit_rescaled_in_w(system)
    coords = _coords(d)
    ok = defs_ok
    for j in coords:
        k = j - 1
        target = da.xreplace({x: xs[k], a: As[k]})
        for l in range(L):
            explicit = full[l][k].xreplace(atoms).xreplace(esub)
            ok &= _zero(explicit - target)
    claimed = None
    if alg == "gd":
        claimed = (x * a ** (L - 1),)
    elif alg == "linf-sam":
        claimed = (x * (a - RHO) ** (L - 1),)
    elif alg == "l2-sam" and L == 2:
        claimed = (x * a * (1 - RHO * x / NORM),)
    matches = None if claimed is None else _zero(da - claimed[0])
    return Reduction(
        name="balanced", title=f"{_title(alg)}, one example, balanced layers w⁽ˡ⁾ⱼ = aⱼ",
        assumptions="n = 1, y = +1, x_j > 0, a_j > 0, every layer equal",
        title_latex=rf"{_title(alg, True)}, one example, balanced layers $w^{{(l)}}_j = a_j$",
        assumptions_latex=r"$n = 1$, $y = +1$, $x_j > 0$, $a_j > 0$, every layer equal",
        variables=((a, cf.w[0]),), equations=((a, da),), auxiliary=aux, claimed=claimed,
        matches_claim=matches, matches_flow=bool(ok), manifold_invariant=bool(invariant),
        checked_coordinates=coords)


@functools.lru_cache(maxsize=64)
def symbolic_reductions(depth: int, dim: int, algorithm: str, loss: str) -> tuple:
    """The one-example reductions of ``(depth, dim, algorithm, loss)`` (cached)."""
    from .cache import symbolic_flow

    if depth < 2:
        return ()
    system = symbolic_flow(depth, dim, 1, algorithm, loss)
    if system.coordinate.perturbation is None:  # general path: no generic coordinate to reduce
        return ()
    out = []
    if depth == 2 and algorithm in ("gd", "linf-sam"):
        out.append(_pq(system))
    out.append(_balanced(system))
    return tuple(out)


def reductions_for(system) -> tuple:
    """The reductions that apply to ``system``: one example, and (for numeric data)
    ``y x_j > 0`` for every coordinate."""
    if system.n != 1:
        return ()
    if not system.symbolic_data:
        if not all(float(system.y[0]) * float(v) > 0 for v in system.X[0]):
            return ()
    return symbolic_reductions(system.depth, system.dim, system.algorithm, system.loss)
