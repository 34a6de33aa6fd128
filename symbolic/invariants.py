"""Conserved and monotone quantities of the flows, each settled by SymPy.

Every candidate ``Phi`` is a function of one coordinate's weights (or the loss), and its
time derivative ``dPhi/dt = S~ sum_l dPhi/dw^{(l)}_j (dw^{(l)}_j/dtau)`` is computed from
the generic-coordinate form with ``w~`` replaced by ``w + eps(w)``.  Then:

* ``dPhi/dt`` expands to 0 -> **conserved**;
* ``dPhi/dt = R Phi`` with ``R`` polynomial in the weights (SymPy's ``factor``) and ``R``
  of one sign -> ``Phi^2`` is **monotone** (``d Phi^2/dt = 2 R Phi^2``); the sign is
  decided from SymPy's assumptions (``rho >= 0``, ``N, S, S~ > 0``), if need be under a
  stated condition: one example (``g~_j = g_j``), one example with ``y x_j > 0``
  (``g_j = -gamma_j < 0``), and factors ``w^{(m)}_j w~^{(m)}_j`` required to be ``>= 0``;
* otherwise **not conserved**, with a witness: an exact point of a ``d = n = 1`` problem
  (consistent couplings) where ``dPhi/dt != 0``, evaluated to 50 digits.

>>> [(i.name, i.status) for i in coordinate_invariants(2, "gd", "exp")][:2]
[('layer balance (1,2)', 'conserved'), ('layer difference (1,2), squared', 'monotone')]
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

import sympy as sp

from .coordinate import CoordinateForm, coordinate_form
from .functions import loss_derivative
from .notation import GAMMA, LOSS, NORM, RHO, SPEED, SPEED_T, Z

STATUSES = ("conserved", "monotone", "not conserved")


@dataclass(frozen=True)
class Invariant:
    """A quantity of the flow and what SymPy proved about it.

    ``expression``: the quantity (generic coordinate ``j``; ``Loss`` is ``L(w)``);
    ``status``: ``"conserved"``, ``"monotone"`` or ``"not conserved"``;
    ``proof_expr``: ``d expression / dt`` as SymPy simplified it (0 when conserved; for a
    monotone quantity the factored, sign-definite form under ``condition``);
    ``direction``: ``"non-increasing"``/``"non-decreasing"`` for monotone quantities;
    ``condition``/``condition_latex``: when the statement holds (``""``: always); ``requires``: machine tags of
    the condition (``"n=1"``, ``"yx>0"``, ``"sigma-fixed"``, ``"sigma-equal"``, ``"ww~>=0"``);
    ``witness``: for a quantity that is not conserved, a ``d = n = 1`` point where its
    derivative is non-zero.

    >>> inv = coordinate_invariants(2, "l2-sam", "exp")[0]
    >>> inv.name, inv.status, inv.direction, inv.condition
    ('layer balance (1,2), squared', 'monotone', 'non-increasing', 'one example (n = 1)')
    """

    name: str
    expression: sp.Expr
    status: str
    proof_expr: sp.Expr
    direction: str = ""
    condition: str = ""
    condition_latex: str = ""
    requires: tuple = ()
    witness: dict | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def statement(self) -> str:
        """One line: the quantity and what holds for it."""
        what = {"conserved": "is conserved", "monotone": f"is {self.direction}",
                "not conserved": "is not conserved"}[self.status]
        cond = f" ({self.condition})" if self.condition else ""
        return f"{self.name}: {_text(self.expression)} {what}{cond}"


def _text(expr) -> str:
    from .text import text_expr
    return text_expr(expr)


# --- time derivatives ------------------------------------------------------------------------------
def _time_derivative(cf: CoordinateForm, phi: sp.Expr, sigma_sub: dict | None = None) -> sp.Expr:
    """``dPhi/dt`` for a function of coordinate ``j``'s weights.

    Only the perturbed weights of the layers ``Phi`` involves are written out as
    ``w + eps(w)``; the others stay symbols ``w~^{(m)}_j`` (an exact identity -- they
    stand for their expressions), which keeps the expansion small at depth 10 and lets
    the sign analysis see factors ``w~^{(m)}_j`` directly.
    """
    own = {wt: p for w, wt, p in zip(cf.w, cf.wt, cf.perturbed_point) if w in phi.free_symbols}
    flow = [r.xreplace(own) for r in cf.rescaled]
    if sigma_sub:
        flow = [f.xreplace(sigma_sub) for f in flow]
    return sp.expand(SPEED_T * sp.Add(*[sp.diff(phi, wl) * f for wl, f in zip(cf.w, flow)]))


_LEVELS = (
    ((), "", ""),
    (("n=1",), "one example (n = 1)", r"one example ($n = 1$)"),                 # g~ -> g
    (("n=1", "yx>0"), "one example with y x_j > 0", r"one example with $y x_j > 0$"),
)


def _level_sub(cf: CoordinateForm, tags: tuple) -> dict:
    sub = {}
    if "n=1" in tags:
        sub[cf.gt] = cf.g        # one example: q = 1, so g~_j = g_j = -y x_j
    if "yx>0" in tags:
        sub[cf.g] = -GAMMA
        sub[cf.gt] = -GAMMA
    return sub


def _sign(expr: sp.Expr) -> int | None:
    if expr.is_nonnegative:
        return 1
    if expr.is_nonpositive:
        return -1
    return None


def _pair_factors(cf: CoordinateForm, unknown: list) -> tuple[list[int], bool]:
    """Recognise factors ``w_m`` and (positive multiples of) ``w~_m(w)``; return the
    layers ``m`` for which both appear, and whether every unknown factor was paired."""
    seen_w, seen_wt, rest = [], [], []
    for f in unknown:
        base, expo = f.as_base_exp()
        if expo != 1:
            rest.append(f)
            continue
        hit = False
        if base in cf.wt:
            seen_wt.append(cf.wt.index(base))
            continue
        for m, (wm, wtm) in enumerate(zip(cf.w, cf.perturbed_point)):
            if sp.expand(base - wm) == 0:
                seen_w.append(m)
                hit = True
                break
            ratio = sp.cancel(base / wtm)
            if not ratio.free_symbols & set(cf.w) and ratio.is_positive:
                seen_wt.append(m)
                hit = True
                break
        if not hit:
            rest.append(f)
    paired = sorted(set(seen_w) & set(seen_wt))
    ok = not rest and sorted(seen_w) == paired and sorted(seen_wt) == paired
    return paired, ok


def _definite_sign(cf: CoordinateForm, R: sp.Expr):
    """``(R', sign, tags, conditions)`` for the weakest condition under which ``R`` has one
    sign (``R'`` is ``R`` under that condition), or ``None``."""
    for tags, text, tex in _LEVELS:
        Rl = sp.factor(R.xreplace(_level_sub(cf, tags)))
        known, unknown = [], []
        for f in sp.Mul.make_args(Rl):
            (known if _sign(f) is not None else unknown).append(f)
        paired, ok = _pair_factors(cf, unknown) if unknown else ([], True)
        if not ok:
            continue
        s = _sign(sp.Mul(*known))
        if s is None:
            continue
        conds = [(text, tex)] if text else []
        extra = tuple(tags)
        if paired:
            layers = ", ".join(str(m + 1) for m in paired)
            conds.append((f"w⁽ᵐ⁾ⱼ·w̃⁽ᵐ⁾ⱼ ≥ 0 for m ∈ {{{layers}}}",
                          rf"$w^{{(m)}}_j \tilde{{w}}^{{(m)}}_j \ge 0$ for $m \in \{{{layers}\}}$"))
            extra += ("ww~>=0",)
        return Rl, s, extra, conds
    return None


def _join(conds) -> tuple[str, str]:
    conds = [c for c in conds if c and c[0]]
    return "; ".join(c[0] for c in conds), "; ".join(c[1] for c in conds)


def _analyse(cf: CoordinateForm, name: str, phi: sp.Expr, base_tags: tuple = (),
             base_condition: tuple = ("", ""), sigma_sub: dict | None = None) -> Invariant:
    D = _time_derivative(cf, phi, sigma_sub)
    text, tex = _join([base_condition])
    if D == 0:
        return Invariant(name, phi, "conserved", sp.S.Zero, condition=text, condition_latex=tex,
                         requires=base_tags)
    R = sp.factor(sp.cancel(D / phi))
    _, den = sp.fraction(sp.together(R))
    if not den.free_symbols & set(cf.w):
        found = _definite_sign(cf, R)
        if found is not None:
            Rl, sign, tags, conds = found
            text, tex = _join([base_condition, *conds])
            return Invariant(f"{name}, squared", phi**2, "monotone", 2 * Rl * phi**2,
                             direction="non-increasing" if sign < 0 else "non-decreasing",
                             condition=text, condition_latex=tex, requires=tuple(base_tags) + tags)
    return Invariant(name, phi, "not conserved", D, condition=text, condition_latex=tex,
                     requires=base_tags, witness=_witness(cf, D, sigma_sub))


# --- witnesses -----------------------------------------------------------------------------------------
def _lam(loss: str, z):
    """``|l'(z)|`` as an exact SymPy number."""
    return -loss_derivative(loss, Z).xreplace({Z: z})


def _consistent_point(cf: CoordinateForm, w_vals, x0, rho, sigma_sub) -> dict:
    """Coupling values of the ``d = n = 1`` problem ``x = x0``, ``y = 1`` at weights ``w_vals``."""
    sub = {RHO: rho, cf.g: -x0, cf.gt: -x0}
    sub.update(dict(zip(cf.w, w_vals)))
    P = [p.xreplace(sub) for p in cf.P]
    F = [-x0 * p for p in P]
    sub[NORM] = sp.sqrt(sp.Add(*[f**2 for f in F]))
    sub[SPEED] = _lam(cf.loss, x0 * cf.beta.xreplace(sub))
    for gs in cf.global_sums:  # d = 1: each global sum is its one share
        sub[gs.symbol] = (gs.const + gs.share.xreplace(sub)) ** sp.Rational(1, gs.power)
    for s, f in zip(cf.sigma, F):
        sub[s] = sp.sign(f)
    if sigma_sub:
        sub.update({k: sub[v] for k, v in sigma_sub.items()})
    wt = [e.xreplace(sub) for e in cf.perturbed_point]
    sub.update(dict(zip(cf.wt, wt)))
    sub[SPEED_T] = _lam(cf.loss, x0 * sp.Mul(*wt))
    return sub


def _witness(cf: CoordinateForm, D: sp.Expr, sigma_sub: dict | None, want_sign: int = 0) -> dict | None:
    """A point of a ``d = n = 1`` problem where ``D`` is non-zero (or has sign ``want_sign``)."""
    rng = random.Random(20260308)
    for _ in range(60):
        w_vals = [sp.Rational(rng.choice([-1, 1]) * rng.randint(1, 12), rng.randint(1, 6)) for _ in cf.w]
        x0 = sp.Rational(rng.randint(1, 8), rng.randint(1, 4))
        rho = sp.Rational(rng.randint(1, 6), rng.randint(2, 8))
        sub = _consistent_point(cf, w_vals, x0, rho, sigma_sub)
        if any(gs.divides and sub[gs.symbol] == 0 for gs in cf.global_sums):
            continue
        # 50-digit floats from here on: exact arithmetic with sqrt/exp terms is needlessly slow
        fsub = {k: sp.Float(v.evalf(60), 50) for k, v in sub.items()}
        terms = [t.xreplace(fsub).evalf(50) for t in sp.Add.make_args(D)]
        if not all(t.is_number and t.is_finite for t in terms):
            continue
        value = sp.Add(*terms)
        scale = sp.Add(*[abs(t) for t in terms])
        # non-zero beyond doubt: far above the rounding of the terms it sums
        ok = value != 0 and abs(value) > sp.Float("1e-30") * scale and (want_sign == 0 or value * want_sign > 0)
        if ok:
            return {"w": [str(v) for v in w_vals], "x": str(x0), "y": 1, "rho": str(rho),
                    "value": float(value)}
    return None


# --- the candidates ---------------------------------------------------------------------------------
def _loss_invariant(cf: CoordinateForm) -> Invariant:
    """``L(w)``: ``dL/dt = sum_j sum_l (S F^{(l)}_j) dw^{(l)}_j/dt``; the proof term is
    coordinate ``j``'s summand, so a sign-definite summand settles the sum."""
    # w~ stays symbolic (it stands for w + eps(w)); GD substitutes w~ = w below
    unperturbed = all(e == 0 for e in cf.perturbation)
    flow = cf.rescaled if not unperturbed else cf.flow_in_w()
    term = sp.expand(SPEED * SPEED_T * sp.Add(*[f * r for f, r in zip(cf.F, flow)]))
    summed = ("dL/dt is the sum over j of the proof term",
              r"$d\mathcal{L}/dt$ is the sum over $j$ of this term")
    increase = None
    if unperturbed:
        # GD evaluates at w itself: w~ = w, hence g~_j = g_j and S~ = S
        term = sp.factor(term.xreplace({cf.gt: cf.g, SPEED_T: SPEED}))
    else:
        # a point where the loss grows settles it; factoring the (large) term is then wasted
        increase = _witness(cf, term, None, want_sign=+1)
    found = None if increase else _definite_sign(cf, term)
    if found is not None:
        Rl, sign, tags, conds = found
        text, tex = _join([*conds, summed])
        return Invariant("loss", LOSS, "monotone", Rl,
                         direction="non-increasing" if sign < 0 else "non-decreasing",
                         condition=text, condition_latex=tex, requires=tags)
    wit = increase
    text, tex = ("can increase (witness: dL/dt > 0)", r"can increase (witness: $d\mathcal{L}/dt > 0$)") \
        if wit else ("", "")
    return Invariant("loss", LOSS, "not conserved", term, condition=text, condition_latex=tex,
                     witness=wit or _witness(cf, term, None))


@functools.lru_cache(maxsize=None)
def coordinate_invariants(depth: int, algorithm: str, loss: str) -> tuple:
    """The invariants of ``(depth, algorithm, loss)``, for a generic coordinate (cached)."""
    cf = coordinate_form(depth, algorithm, loss)
    if cf.perturbation is None:  # general path: no generic coordinate to analyse
        return ()
    # linf-SAM's form eps = rho sigma (the shifted balances hold between switching events)
    sign_shift = cf.perturbation == tuple(RHO * s for s in cf.sigma)
    w, out = cf.w, []
    for l in range(depth - 1):
        a, b = w[l], w[l + 1]
        pair = f"({l + 1},{l + 2})"
        out.append(_analyse(cf, f"layer balance {pair}", a**2 - b**2))
        if sign_shift:
            sa, sb = cf.sigma[l], cf.sigma[l + 1]
            out.append(_analyse(cf, f"shifted layer balance {pair}", (a + RHO * sa)**2 - (b + RHO * sb)**2,
                                base_tags=("sigma-fixed",),
                                base_condition=("between switching events (σ constant)",
                                                r"between switching events ($\sigma$ constant)")))
        if depth == 2:
            if sign_shift:
                out.append(_analyse(cf, f"layer difference {pair}", a - b, base_tags=("sigma-equal",),
                                    base_condition=("σ⁽¹⁾ⱼ = σ⁽²⁾ⱼ",
                                                    r"$\sigma^{(1)}_j = \sigma^{(2)}_j$"),
                                    sigma_sub={cf.sigma[1]: cf.sigma[0]}))
            else:
                out.append(_analyse(cf, f"layer difference {pair}", a - b))
    out.append(_loss_invariant(cf))
    return tuple(out)


def invariants_for(system) -> tuple:
    """The invariants that apply to ``system`` (conditions needing one example, or
    ``y x_j > 0``, are dropped when the system's data rule them out)."""
    out = []
    for inv in coordinate_invariants(system.depth, system.algorithm, system.loss):
        if "n=1" in inv.requires and system.n != 1:
            continue
        if "yx>0" in inv.requires and not system.symbolic_data:
            yx = [float(system.y[0]) * float(v) for v in system.X[0]]
            if not all(v > 0 for v in yx):
                continue
        out.append(inv)
    return tuple(out)


__all__ = ["Invariant", "coordinate_invariants", "invariants_for"]
